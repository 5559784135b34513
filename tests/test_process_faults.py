"""Process faults and their owners (real node processes on loopback): the stop step
(SIGTERM, and SIGKILL during the shutdown), steps that overlap in time, one owner
per node restart, exits no fault step caused, and the pause guard that frees a
SIGSTOPped node when the harness dies (issue 10, items 2, 6 and 7)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster import Cluster, ClusterConfig
from harness.history import HistoryWriter, read_history
from harness.nemesis import NemesisContext
from harness.nemesis.failpoint import FailpointNemesis
from harness.nemesis.process import KillNemesis
from harness.nemesis.stop import StopNemesis
from harness.schedule import ScheduleError, generate, validate_steps
from harness.scheduler import ScheduleRunner
from nodes.common.channels import insecure_channel
from nodes.pb import sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order
from tests.conftest import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def _ctx(tmp_path: Path, **nodes) -> NemesisContext:
    cluster = Cluster(ClusterConfig(proxies=False), tmp_path / "cluster")
    cluster.run_dir.mkdir(parents=True, exist_ok=True)
    cluster.nodes.update(nodes)
    return NemesisContext(cluster, HistoryWriter(tmp_path / "nemesis.jsonl", "nemesis"))


async def _upsert(address: str, order_id: str) -> None:
    async with insecure_channel(address) as ch:
        await sink_pb2_grpc.SinkStub(ch).Upsert(
            sink_pb2.WriteRequest(orders=[Order(order_id=order_id, account="a1", amount_cents=5)]), timeout=5)


def test_stop_faults_expand_to_stop_steps():
    sched = generate(3, 1000, ["stop-broker", "stop-processor", "stop-sink", "stop-producer"])
    assert [(s["f"], s["node"]) for s in sched["steps"]] == [
        ("stop", "broker"), ("stop", "processor"), ("stop", "sink"), ("stop", "producer")]
    validate_steps([{"at": 5, "f": "stop", "node": "sink", "kill_after_ms": 0, "after_ms": 10}], "x")
    with pytest.raises(ScheduleError, match="kill_after_ms"):
        validate_steps([{"at": 5, "f": "stop", "node": "sink", "kill_after_ms": -1}], "x")


@pytest.mark.timeout(60)
async def test_stop_step_graceful_then_killed_mid_shutdown(spawn, tmp_path):
    sink = await spawn("sink")
    ctx = _ctx(tmp_path, sink=sink)
    stop = StopNemesis(ctx)
    pid = sink.pid
    r = await stop.invoke({"node": "sink", "down_ms": 0})
    assert r["stopped_pid"] == pid and r["graceful"] and not r["killed"] and r["exit_code"] == 0
    assert sink.running and sink.pid == r["new_pid"] != pid and not pid_alive(pid)
    pid = sink.pid
    r = await stop.invoke({"node": "sink", "down_ms": 0, "kill_after_ms": 0})  # no grace at all
    assert r["killed"] and not r["graceful"] and r["exit_code"] == -signal.SIGKILL
    assert sink.running and sink.pid != pid and not pid_alive(pid)
    assert sink.incarnation == 3


@pytest.mark.timeout(60)
async def test_steps_overlap_and_the_heal_cancels_cleanly(spawn, tmp_path):
    sink, broker = await spawn("sink"), await spawn("broker")
    ctx = _ctx(tmp_path, sink=sink, broker=broker)
    steps = [{"at": 0, "f": "pause", "node": "sink", "for_ms": 1500},
             {"at": 0, "after_ms": 100, "f": "kill", "node": "broker", "down_ms": 0}]
    runner = ScheduleRunner(ctx.cluster, {"steps": steps}, ctx.history)
    await asyncio.wait_for(runner.run(), 30)
    ops = [(op["type"], op["f"]) for op in read_history(tmp_path / "nemesis.jsonl")]
    # The broker was killed while the sink was paused (the kill step did not wait for the
    # pause step to end); its restart may end before or after the pause, with the load.
    assert ops[:2] == [("invoke", "pause"), ("invoke", "kill")], ops
    assert sorted(ops[2:]) == [("ok", "kill"), ("ok", "pause")], ops

    runner = ScheduleRunner(ctx.cluster, {"steps": [{"at": 0, "f": "pause", "node": "sink",
                                                     "for_ms": 600_000}]}, ctx.history)
    run = asyncio.ensure_future(runner.run())
    deadline = time.monotonic() + 10
    while not sink.paused and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert sink.paused and sink.guard_pid and pid_alive(sink.guard_pid)
    guard = sink.guard_pid
    await asyncio.wait_for(runner.heal(), 20)  # finishes (cancels) the step, then heals
    await asyncio.wait_for(run, 5)
    assert not sink.paused and not pid_alive(guard)
    last = [(op["type"], op["f"], op.get("error")) for op in read_history(tmp_path / "nemesis.jsonl")][-4:]
    assert ("info", "pause", "cancelled") in last and last[-1] == ("ok", "heal", None), last
    await _upsert(sink.address, "o1")  # it answers again


@pytest.mark.timeout(60)
async def test_a_kill_of_a_node_already_dead_is_recorded_and_it_restarts_once(spawn, tmp_path):
    sink = await spawn("sink")
    ctx = _ctx(tmp_path, sink=sink)
    fp, kill = FailpointNemesis(ctx), KillNemesis(ctx)
    await fp.invoke({"node": "sink", "name": "sink.after-upsert-before-reply", "action": "crash",
                     "nth": 1, "down_ms": 1500})
    first = sink.proc
    with pytest.raises(Exception):
        await _upsert(sink.address, "o1")  # the crash failpoint kills the sink
    assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
    r = await kill.invoke({"node": "sink", "down_ms": 0})  # aimed at a node already dead
    assert r["already_dead"] is True and r["exit_code"] == -signal.SIGKILL
    assert not sink.running  # the kill step did not restart it: the watcher owns that restart
    (_, watcher), = fp.watchers
    await asyncio.wait_for(watcher, 20)
    assert sink.running and sink.incarnation == 2
    crash = [op for op in read_history(tmp_path / "nemesis.jsonl") if op["f"] == "failpoint-crash"]
    assert crash and crash[0]["value"]["failpoint"] == "sink.after-upsert-before-reply"
    # Two owners asking at once: one starts the node, the other finds it running.
    sink.kill("test")
    await sink.wait(10)
    assert sorted(await asyncio.gather(sink.start_if_down(), sink.start_if_down())) == [False, True]
    assert sink.incarnation == 3


@pytest.mark.timeout(60)
async def test_an_exit_no_fault_caused_is_reported_not_restarted_as_the_crash(spawn, tmp_path):
    sink = await spawn("sink")
    ctx = _ctx(tmp_path, sink=sink)
    fp = FailpointNemesis(ctx)
    await fp.invoke({"node": "sink", "name": "sink.after-upsert-before-reply", "action": "crash",
                     "nth": 1000, "down_ms": 0})
    pid = sink.pid
    os.kill(pid, signal.SIGKILL)  # not the harness, not the failpoint: an exit of its own
    (_, watcher), = fp.watchers
    await asyncio.wait_for(watcher, 20)
    assert not sink.running  # left down, not absorbed as the armed crash
    ops = read_history(tmp_path / "nemesis.jsonl")
    assert not [op for op in ops if op["f"] in ("failpoint-crash", "failpoint-restart")]
    (exited,) = [op for op in ops if op["f"] == "node-exited"]
    assert exited["type"] == "info" and exited["value"]["pid"] == pid
    await KillNemesis(ctx).heal()  # the final heal restarts it, without a second report
    assert sink.running
    ops = read_history(tmp_path / "nemesis.jsonl")
    assert len([op for op in ops if op["f"] == "node-exited"]) == 1


HARNESS = """
import asyncio, json, sys
from pathlib import Path
from harness.process import NodeProcess

async def main():
    p = NodeProcess("sink", Path(sys.argv[1]))
    await p.start()
    p.pause()
    print(json.dumps({"node": p.pid, "guard": p.guard_pid}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait for a process that is not our child to end (pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
def test_a_paused_node_is_resumed_and_stopped_when_the_harness_dies(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path / "sink")], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, text=True)
    node = None
    try:
        line = harness.stdout.readline()
        info = json.loads(line)
        node = info["node"]
        deadline = time.monotonic() + 10  # SIGSTOP is delivered asynchronously
        while _state(node) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(node) == "T"  # stopped
        harness.kill()  # kill -9 of the harness while it holds the node stopped
        harness.wait(10)
        assert _wait_gone(node, 20), f"paused node {node} outlived its harness"
        assert _wait_gone(info["guard"], 10)
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)
        if node is not None and pid_alive(node):
            os.kill(node, signal.SIGKILL)


@pytest.mark.timeout(120)
async def test_graceful_and_killed_stops_of_the_processor_lose_nothing_at_least_once(tmp_path):
    from harness import scenarios
    from harness.scenarios.runner import run_scenario
    result = await run_scenario(scenarios.get("s15-graceful-stop-loses-buffer"), tmp_path, modes=["at-least-once"])
    (entry,) = result["modes"]
    stops = [op["value"] for op in read_history(tmp_path / "at-least-once" / "nemesis.jsonl")
             if op["f"] == "stop" and op["type"] == "ok"]
    assert [(s["graceful"], s["killed"], s["exit_code"]) for s in stops] == [(True, False, 0),
                                                                           (False, True, -signal.SIGKILL)]
    assert entry["faults"].get("stop-processor") == 2
    assert entry["lost"] == 0 and entry["as_expected"], entry["mismatches"]
    # logical stops: each SIGTERM came with the processor paused at its Nth step, between the
    # sink's ACK and the offset commit, so each re-delivers exactly one group of 25
    assert [s["pause_at"]["paused"] for s in stops] == [True, True]
    assert entry["duplicated"] == 50, entry["anomalies"]


@pytest.mark.timeout(120)
async def test_a_broker_restart_during_a_producer_pause_keeps_exactly_once(tmp_path):
    from harness import scenarios
    from harness.scenarios.runner import run_scenario
    result = await run_scenario(scenarios.get("s16-idle-producer-broker-restart"), tmp_path,
                                modes=["exactly-once/idempotent"])
    (entry,) = result["modes"]
    ops = [(op["type"], op["f"]) for op in read_history(tmp_path / "exactly-once-idempotent" / "nemesis.jsonl")
           if op["f"] != "failpoint"]  # the arming of the producer's logical pause
    # the stop began while the producer was paused; which ends first depends on the load
    assert ops[:2] == [("invoke", "pause"), ("invoke", "stop")], ops
    assert sorted(ops[2:4]) == [("ok", "pause"), ("ok", "stop")], ops
    assert entry["verdict"] == "held" and entry["as_expected"], entry["mismatches"]
    (pause,) = [op["value"] for op in read_history(tmp_path / "exactly-once-idempotent" / "nemesis.jsonl")
                if op["f"] == "pause" and op["type"] == "ok"]
    assert pause["quiesce"]["paused"] and pause["quiesce"]["released"]  # held at its 5th batch, then let go


def test_an_unexpected_exit_note_quotes_the_nodes_last_log_line(tmp_path):
    from harness.campaign import unexpected_exits
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "stderr.log").write_text(
        "broker listening\nbroker: refusing to start: partition 2 log ends at 40 before committed offset 75\n\n")
    (tmp_path / "nemesis.jsonl").write_text(json.dumps(
        {"type": "info", "f": "node-exited", "process": "nemesis", "time": 1.0,
         "value": {"node": "broker", "pid": 123, "exit_code": 2}}) + "\n")
    (note,) = unexpected_exits(tmp_path)
    assert "exited on its own (code 2)" in note
    assert "refusing to start: partition 2 log ends at 40 before committed offset 75" in note
