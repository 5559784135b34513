"""Data-dir storage faults (issue 10, item 3, plain files): the step checks, every node's
reaction to a damaged, lost or rolled-back data dir (refuse with exit 2 naming the file,
or recover consistently), and the nemesis in a real cluster recording what it did."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import scenarios
from harness.history import read_history
from harness.nemesis.datadir import validate_step
from harness.process import NodeStartError
from harness.scenarios.runner import run_scenario
from harness.schedule import ScheduleError, validate_steps
from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2 as pb
from nodes.pb import broker_pb2_grpc, sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order

T = 5


@pytest.mark.parametrize("step,needle", [
    ({"f": "corrupt", "node": "broker"}, "needs 'file'"),
    ({"f": "corrupt", "node": "broker", "file": "x", "how": "shred"}, "flip or truncate"),
    ({"f": "corrupt", "node": "broker", "file": "x", "how": "truncate"}, "exactly one of"),
    ({"f": "snapshot", "node": "sink"}, "needs an 'id'"),
    ({"f": "rollback", "node": "sink", "id": "a", "stop": "pull-the-plug"}, "'stop' must be"),
    ({"f": "wipe"}, "needs a 'node'"),
])
def test_bad_steps_are_refused_by_the_schedule(step, needle, tmp_path):
    assert needle in validate_step(dict(step, at=1))
    with pytest.raises(ScheduleError, match="step 0"):
        validate_steps([dict(step, at=1)], "schedule.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "steps": [dict(step, at=1)],
                               "expect": {}}))
    with pytest.raises(scenarios.ScenarioError, match="step 0"):
        scenarios.load_file(bad)
    validate_steps([{"at": 1, "f": "corrupt", "node": "broker", "file": "orders-0/*.log"},
                    {"at": 2, "f": "wipe", "node": "sink"}], "ok")


async def _produce(address: str, n: int) -> None:
    async with insecure_channel(address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        for i in range(n):
            await stub.Produce(pb.ProduceRequest(topic="orders", partition=0, producer_id=-1, records=[
                pb.Record(key=b"k", value=f"v{i}-{j}".encode() * 8) for j in range(10)]), timeout=T)


async def _refused(p, needle: str) -> str:
    """Start ``p``; it must exit 2 with one stderr line containing ``needle``; return that line."""
    mark = (p.data_dir / "stderr.log").stat().st_size if (p.data_dir / "stderr.log").exists() else 0
    with pytest.raises(NodeStartError, match="exited with code 2"):
        await p.start()
    new = (p.data_dir / "stderr.log").read_bytes()[mark:].decode().strip().splitlines()
    assert len(new) == 1 and needle in new[0], new
    return new[0]


async def test_broker_refuses_a_segment_that_changed_under_its_recovery_point(spawn):
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "1"])
    await _produce(broker.address, 20)
    assert await broker.stop() == 0  # graceful: the recovery point covers every record
    seg = broker.data_dir / "orders-0" / f"{0:020d}.log"
    data = bytearray(seg.read_bytes())
    good = bytes(data)
    data[len(data) // 2] ^= 0x08  # a bit flip in the middle: today's broker served DATA_LOSS
    seg.write_bytes(bytes(data))
    line = await _refused(broker, f"corrupt log segment {seg} at byte")
    assert "fail its CRC32" in line
    seg.write_bytes(good)  # the same bytes again: it starts and serves every record
    await broker.start()
    assert await broker.stop() == 0
    with open(seg, "r+b") as f:
        f.truncate(len(good) - 500)  # acknowledged records cut off: no longer only a warning
    line = await _refused(broker, "but its recovery point")
    assert "written and acknowledged are gone" in line


async def test_sink_refuses_to_start_fresh_where_its_database_was(spawn):
    sink = await spawn("sink")
    async with insecure_channel(sink.address) as ch:
        await sink_pb2_grpc.SinkStub(ch).Upsert(sink_pb2.WriteRequest(
            orders=[Order(order_id="o1", account="a", amount_cents=5)]), timeout=T)
    assert await sink.stop() == 0
    db = sink.data_dir / "sink.db"
    saved = db.read_bytes()
    db.unlink()
    await _refused(sink, f"{db} is missing but")
    db.write_bytes(b"")
    await _refused(sink, f"{db} is empty but")
    db.write_bytes(b"garbage " * 512)
    await _refused(sink, "is not a usable SQLite database")
    db.write_bytes(saved)
    await sink.start()  # the database it created, back again: starts
    assert await sink.stop() == 0


def _scenario(tmp_path: Path, steps: list[dict], expect: dict) -> scenarios.Scenario:
    path = tmp_path / "sc.json"
    path.write_text(json.dumps({"name": "datadir", "title": "t", "incident": "test", "steps": steps,
                                "expect": expect, "config": {"events": 800, "seed": 7, "rate": 1000}}))
    return scenarios.load_file(path)


@pytest.mark.timeout(90)
async def test_corrupt_step_on_a_cluster_records_what_it_did_and_a_refusal_ends_the_run(tmp_path):
    """A bit flipped in the broker's segment after a graceful stop: the broker refuses to
    restart (exit 2, the file named), the nemesis records file/offset/bit, and the run is
    reported stalled at once with that line, instead of waiting out the 60 s drain."""
    sc = _scenario(tmp_path, [{"at": 400, "f": "corrupt", "node": "broker", "file": "orders-*/*.log",
                               "pick": "first", "how": "flip", "offset": "middle", "bit": 2,
                               "stop": "term"}], {"at-least-once": {"verdict": "stalled"}})
    t0 = time.monotonic()
    result = await run_scenario(sc, tmp_path)
    assert time.monotonic() - t0 < 40
    (entry,) = result["modes"]
    assert entry["as_expected"], entry["mismatches"]
    assert "broker could not restart" in entry["reasons"][0] and "orders-0" in entry["reasons"][0]
    ops = read_history(tmp_path / "at-least-once" / "nemesis.jsonl")
    (ok,) = [o for o in ops if o["f"] == "corrupt" and o["type"] == "ok"]
    v = ok["value"]
    assert v["file"] == f"orders-0/{0:020d}.log" and v["offset"] == v["size_before"] // 2 and v["bit"] == 2
    assert v["byte_after"] == v["byte_before"] ^ 4 and v["stopped"]["signal"] == "SIGTERM"
    assert v["restart"]["ok"] is False and v["restart"]["exit_code"] == 2
    seg = tmp_path / "at-least-once" / "broker" / v["file"]
    assert seg.read_bytes()[v["offset"]] == v["byte_after"]  # the flip is really on disk
    (refused,) = [o for o in ops if o["f"] == "node-refused-start"]
    assert refused["value"]["node"] == "broker" and str(seg) in refused["value"]["stderr"]


@pytest.mark.timeout(120)
async def test_restart_from_wiped_or_rolled_back_checkpoint(tmp_path):
    """incidents-2.md #10 (scenarios s13b and s13): never a silent state mismatch."""
    wiped = scenarios.get("s13b-restart-from-wiped-checkpoint")
    result = await run_scenario(wiped, tmp_path / "wipe")
    for entry in result["modes"]:
        assert entry["as_expected"], (entry["dir"], entry["mismatches"])
        ops = read_history(tmp_path / "wipe" / entry["dir"] / "nemesis.jsonl")
        (wipe,) = [o for o in ops if o["f"] == "wipe" and o["type"] == "ok"]
        assert "checkpoint.json" in wipe["value"]["removed"]
    refused = [e for e in result["modes"] if e["sink"] == "transactional"][0]
    assert "checkpoint.json is missing" in refused["reasons"][0]  # the file, named
    old = scenarios.get("s13-restart-from-old-checkpoint")
    result = await run_scenario(old, tmp_path / "rollback", modes=["exactly-once/idempotent"])
    (entry,) = result["modes"]
    assert entry["as_expected"], entry["mismatches"]
    ops = read_history(tmp_path / "rollback" / entry["dir"] / "nemesis.jsonl")
    (snap,) = [o for o in ops if o["f"] == "snapshot" and o["type"] == "ok"]
    (back,) = [o for o in ops if o["f"] == "rollback" and o["type"] == "ok"]
    assert snap["value"]["id"] == back["value"]["id"] == "early" and back["value"]["restored"] >= 2
    final = json.loads((tmp_path / "rollback" / entry["dir"] / "processor" / "final-status.json").read_text())
    assert final["restore_behind"]  # the processor said it replays from behind
