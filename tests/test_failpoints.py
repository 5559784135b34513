"""Failpoints: the spec syntax and actions (plain class), then the NodeControl RPCs,
the --failpoint flag and a real crash on a sink process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import grpc
import pytest

from harness.nemesis.failpoint import arm_failpoint, disarm_failpoint, fired_in_logs, list_failpoints
from nodes.common.channels import insecure_channel
from nodes.common.failpoints import (REGISTRY, Failpoints, FailpointError, FailpointSpecError,
                                     parse_spec)
from nodes.pb import sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order
from tests.conftest import pid_alive

REQUIRED = ("broker.after-append-before-fsync", "broker.after-fsync-before-ack",
            "broker.after-dedupe-record-before-append", "processor.after-sink-ack-before-offset-commit",
            "processor.before-checkpoint", "processor.after-checkpoint-before-commit",
            "sink.after-pre-commit", "sink.after-commit-before-reply")


def test_registry_has_the_required_failpoints_with_descriptions():
    for name in REQUIRED:
        assert REGISTRY.get(name), name
    assert all(len(d) > 20 for d in REGISTRY.values())


@pytest.mark.parametrize("spec,expect", [
    ("sink.after-pre-commit=crash", ("crash", 1, 1, 0)),
    ("sink.after-pre-commit=error@3x2", ("error", 3, 2, 0)),
    ("sink.after-pre-commit=delay(250)@2x0", ("delay", 2, 0, 250)),
    ("sink.after-pre-commit = pause(100)", ("pause", 1, 1, 0)),
])
def test_parse_spec(spec, expect):
    a = parse_spec(spec)
    assert (a.action, a.nth, a.count, a.delay_ms) == expect
    assert parse_spec(a.spec()).spec() == a.spec()


@pytest.mark.parametrize("spec,needle", [
    ("nope.nothing=crash", "unknown failpoint"),
    ("sink.after-pre-commit=explode", "unknown action"),
    ("sink.after-pre-commit=delay", "needs a duration"),
    ("sink.after-pre-commit", "bad failpoint spec"),
    ("sink.after-pre-commit=crash@0", "nth must be"),
])
def test_bad_specs_are_refused(spec, needle):
    with pytest.raises(FailpointSpecError, match=needle):
        parse_spec(spec)


async def test_error_fires_on_the_nth_hit_count_times_then_disarms():
    fp = Failpoints()
    fp.arm(parse_spec("sink.after-pre-commit=error@3x2"))
    outcomes = []
    for _ in range(6):
        try:
            await fp.hit("sink.after-pre-commit")
            outcomes.append("ok")
        except FailpointError:
            outcomes.append("err")
    assert outcomes == ["ok", "ok", "err", "err", "ok", "ok"]
    assert not fp.armed  # disarmed itself after count firings: unarmed cost is `if fp.armed`
    assert fp.total_fired["sink.after-pre-commit"] == 2
    with pytest.raises(FailpointError):  # the sync call site too
        fp.arm(parse_spec("sink.after-pre-commit=error"))
        fp.hit_sync("sink.after-pre-commit")


async def test_count_action_only_counts_and_pause_waits_for_disarm():
    fp = Failpoints()
    fp.arm(parse_spec("processor.before-checkpoint=count"))
    for _ in range(5):
        await fp.hit("processor.before-checkpoint")
    (row,) = [r for r in fp.listing() if r["name"] == "processor.before-checkpoint"]
    assert row["hits"] == 5 and row["fired"] == 0
    fp.arm(parse_spec("sink.after-pre-commit=pause"))
    paused = asyncio.ensure_future(fp.hit("sink.after-pre-commit"))
    await asyncio.wait({paused}, timeout=0.2)
    assert not paused.done()  # blocked at the failpoint
    fp.disarm("sink.after-pre-commit")
    await asyncio.wait_for(paused, 2)
    fp.arm(parse_spec("sink.after-pre-commit=pause(50)"))  # released by its timeout
    await asyncio.wait_for(fp.hit("sink.after-pre-commit"), 2)


async def _upsert(address: str, order_id: str) -> None:
    async with insecure_channel(address) as ch:
        await sink_pb2_grpc.SinkStub(ch).Upsert(
            sink_pb2.WriteRequest(orders=[Order(order_id=order_id, account="a1", amount_cents=5)]), timeout=5)


async def test_rpcs_arm_error_and_crash_on_a_sink_process(spawn):
    sink = await spawn("sink", ["--failpoint", "sink.after-upsert-before-reply=error"])
    # Armed by the flag: the Upsert is applied but its reply is an error (a lost ACK).
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await _upsert(sink.address, "o1")
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    rows = {r["name"]: r for r in await list_failpoints(sink.address)}
    assert rows["sink.after-upsert-before-reply"]["total_fired"] == 1
    assert rows["sink.after-upsert-before-reply"]["armed"] == ""  # count 1: disarmed itself
    await _upsert(sink.address, "o2")  # next call answers normally

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await arm_failpoint(sink.address, "no.such-point", "crash")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await arm_failpoint(sink.address, "sink.after-pre-commit", "explode")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await arm_failpoint(sink.address, "sink.after-pre-commit", "error", nth=5) == \
        "sink.after-pre-commit=error@5x1"
    assert await disarm_failpoint(sink.address, "sink.after-pre-commit") is True

    pid = sink.pid
    await arm_failpoint(sink.address, "sink.after-upsert-before-reply", "crash", nth=2)
    await _upsert(sink.address, "o3")  # hit 1: no firing
    with pytest.raises(grpc.aio.AioRpcError):
        await _upsert(sink.address, "o4")  # hit 2: the process kills itself
    assert await sink.wait(10) == -9 and not pid_alive(pid)
    fired = fired_in_logs(sink.data_dir.parent)
    assert [f["failpoint"] for f in fired] == ["sink.after-upsert-before-reply"] * 2
    assert fired[-1]["action"] == "crash"

    await sink.restart()  # the write before the crash is durable; the RPC-armed failpoint died
    status = await _status(sink.address)  # with the process, the --failpoint flag re-armed its own
    assert status["orders"] == 4
    armed = {r["name"]: r["armed"] for r in await list_failpoints(sink.address) if r["armed"]}
    assert armed == {"sink.after-upsert-before-reply": "sink.after-upsert-before-reply=error@1x1"}


async def _status(address: str) -> dict:
    from nodes.pb import node_pb2, node_pb2_grpc
    async with insecure_channel(address) as ch:
        r = await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=5)
    return json.loads(r.status_json)


def test_bad_failpoint_flag_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nodes.sink", "--data-dir", str(tmp_path),
                        "--failpoint", "sink.nope=crash"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown failpoint" in r.stderr, r.stderr


async def test_a_paused_caller_is_released_when_its_arming_ends():
    """Incidents-2: a pause whose count ran out held its caller forever, because the
    final heal only disarms what is still listed as armed."""
    fp = Failpoints()
    fp.arm(parse_spec("sink.after-pre-commit=pause@1x1"))
    paused = asyncio.ensure_future(fp.hit("sink.after-pre-commit"))
    await asyncio.wait({paused}, timeout=0.2)
    assert not paused.done()
    await fp.hit("sink.after-pre-commit")  # count used up: later hits pass
    (row,) = [r for r in fp.listing() if r["name"] == "sink.after-pre-commit"]
    assert row["armed"] and row["fired"] == 1  # still listed while it holds a caller
    fp.disarm_all()  # what the heal's DisarmFailpoint("") does
    await asyncio.wait_for(paused, 2)
    assert not fp.armed
    # Released by name too, and a released caller's spent arming is gone.
    fp.arm(parse_spec("sink.after-pre-commit=pause@2x1"))
    await fp.hit("sink.after-pre-commit")
    paused = asyncio.ensure_future(fp.hit("sink.after-pre-commit"))
    await asyncio.wait({paused}, timeout=0.2)
    assert not paused.done()
    fp.disarm("sink.after-pre-commit")
    await asyncio.wait_for(paused, 2)
    assert not fp.armed
