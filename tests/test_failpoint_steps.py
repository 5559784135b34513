"""Failpoints at every protocol step (issue 10, item 4): each registered point has a
call site, each mode reaches the points listed for it, and a crash or error at a new
point fires there (node log, nemesis.jsonl) and leaves the mode's verdict right.

One real cluster run per node family; each runs a few small modes (600 events).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from harness import scenarios
from harness.history import read_history
from harness.scenarios.runner import run_scenario
from harness.sweep import REACHABLE_POINTS, SWEEP_POINTS
from nodes.common.failpoints import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
ONLY_AFTER_A_FAULT = {
    "sink.before-abort": "a recovery aborts a stale prepared transaction",
    "processor.after-checkpoint-writes-outstanding": "only with --no-drain-before-checkpoint",
    "processor.member-before-output": "only with --processors 2+ (a consumer-group member; s18)",
}


def test_every_registered_failpoint_has_a_call_site_behind_the_fast_path():
    sources = {p: p.read_text() for p in (ROOT / "nodes").rglob("*.py")
               if p.name != "failpoints.py" and "/pb/" not in str(p)}
    for name in REGISTRY:
        sites = [p for p, text in sources.items() if f'"{name}"' in text]
        assert sites, f"{name} is registered but never hit"
        for p in sites:  # every call site is guarded by the one-attribute read
            assert "FAILPOINTS.armed" in sources[p] or "_failpoint(" in sources[p], (name, p)


def test_every_failpoint_is_listed_where_it_is_reached():
    listed = {n for pts in REACHABLE_POINTS.values() for n in pts}
    assert set(REGISTRY) - listed == set(ONLY_AFTER_A_FAULT)
    assert listed <= set(REGISTRY)
    for sink, pts in SWEEP_POINTS.items():
        assert set(pts) <= set(REACHABLE_POINTS[f"exactly-once/{sink}"]), sink


def _scenario(tmp_path: Path, name: str, steps: list[dict], expect: dict) -> scenarios.Scenario:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({
        "name": name, "title": name, "incident": "test", "steps": steps, "expect": expect,
        "config": {"events": 600, "seed": 3, "batch_size": 100, "rate": 1000,
                   "extra_args": {"processor": ["--checkpoint-records", "100", "--checkpoint-ms", "5000"]}}}))
    return scenarios.load_file(path)


def _fp(node: str, name: str, action: str = "crash", nth: int = 2) -> dict:
    return {"at": 0, "arm": True, "f": "failpoint", "node": node, "name": name, "action": action,
            "nth": nth, "count": 1, "down_ms": 200}


def _entries(result: dict) -> dict[str, dict]:
    return {f"{e['mode']}/{e['sink']}" if e["sink"] else e["mode"]: e for e in result["modes"]}


def _nemesis(run_dir: Path, entry: dict, f: str) -> list[dict]:
    return [op for op in read_history(run_dir / entry["dir"] / "nemesis.jsonl") if op.get("f") == f]


def _assert_crashed(run_dir: Path, entry: dict, node: str, point: str) -> None:
    """The crash fired at ``point`` (node log) and the nemesis saw the node die and restarted it."""
    assert entry["failpoints_fired"].get(point) == 1, entry["failpoints_fired"]
    crashes = _nemesis(run_dir, entry, "failpoint-crash")
    assert [c["value"]["node"] for c in crashes] == [node] and crashes[0]["value"]["exit_code"] == -9
    assert [r["type"] for r in _nemesis(run_dir, entry, "failpoint-restart")] == ["ok"]


@pytest.mark.timeout(120)
async def test_each_mode_reaches_the_failpoints_listed_for_it(tmp_path):
    """A fault-free run per mode with every listed point armed as `count` (the producer's
    at its first start): each is hit at least once."""
    for label, points in REACHABLE_POINTS.items():
        steps = [dict(_fp(p.split(".")[0], p, "count"), nth=1) for p in points]
        sc = _scenario(tmp_path, "reach", steps, {label: {"verdict": ["held", "not-exercised"]}})
        result = await run_scenario(sc, tmp_path / label.replace("/", "-"))
        (entry,) = result["modes"]
        assert entry["as_expected"], (label, entry["mismatches"])
        hits: dict[str, int] = {}
        for op in _nemesis(tmp_path / label.replace("/", "-"), entry, "failpoint-hits"):
            for per_node in op["value"].values():
                hits.update(per_node)
        assert {p: hits.get(p, 0) for p in points if not hits.get(p)} == {}, label


@pytest.mark.timeout(90)
async def test_producer_crash_between_persist_send_and_ack(tmp_path):
    """at-most-once persists before the send: a crash there loses exactly that batch;
    at-least-once persists after the ACK: a crash between loses nothing and re-sends the
    batch (duplicated); exactly-once re-sends it with the persisted sequence numbers and
    the broker deduplicates it (neither)."""
    sc = _scenario(tmp_path, "producer", [
        _fp("producer", "producer.after-persist-before-send"),
        _fp("producer", "producer.after-ack-before-persist")], {
        "at-most-once": {"verdict": "held", "min": {"lost": 100}, "max": {"lost": 100, "duplicated": 0}},
        "at-least-once": {"verdict": "held", "min": {"duplicated": 100}, "max": {"lost": 0}},
        "exactly-once/idempotent": {"verdict": "held", "max": {"duplicated": 0, "lost": 0}}})
    result = await run_scenario(sc, tmp_path)
    e = _entries(result)
    for label, entry in e.items():
        assert entry["as_expected"], (label, entry["mismatches"])
    _assert_crashed(tmp_path, e["at-most-once"], "producer", "producer.after-persist-before-send")
    _assert_crashed(tmp_path, e["at-least-once"], "producer", "producer.after-ack-before-persist")
    _assert_crashed(tmp_path, e["exactly-once/idempotent"], "producer", "producer.after-ack-before-persist")
    # The history around the crash: the re-sent batch is a second invoke of the same orders.
    hist = [json.loads(line) for line in
            (tmp_path / "at-least-once" / "producer" / "history.jsonl").read_text().splitlines()]
    assert {h["incarnation"] for h in hist} == {1, 2}


@pytest.mark.timeout(90)
async def test_processor_crash_after_fetch_before_sink(tmp_path):
    """Nothing committed, nothing written: the replay loses nothing and applies nothing twice."""
    point = "processor.after-fetch-before-sink"
    sc = _scenario(tmp_path, "processor", [_fp("processor", point, nth=3)], {
        "at-most-once": {"verdict": "not-exercised", "max": {"lost": 0}},
        "at-least-once": {"verdict": "not-exercised", "max": {"lost": 0, "duplicated": 0}}})
    result = await run_scenario(sc, tmp_path)
    for label, entry in _entries(result).items():
        assert entry["as_expected"], (label, entry["mismatches"])
        _assert_crashed(tmp_path, entry, "processor", point)


@pytest.mark.timeout(90)
async def test_sink_crash_before_apply_and_before_commit(tmp_path):
    """at-least-once: the sink dies before applying; the processor retries: nothing lost.
    transactional: the sink dies before Commit; the processor re-commits: exact."""
    sc = _scenario(tmp_path, "sink", [_fp("sink", "sink.before-apply", nth=3),
                                      _fp("sink", "sink.before-commit", nth=2)], {
        "at-least-once": {"verdict": ["held", "not-exercised"], "max": {"lost": 0}},
        "exactly-once/transactional": {"verdict": "held", "max": {"lost": 0, "duplicated": 0}}})
    result = await run_scenario(sc, tmp_path)
    e = _entries(result)
    for label, entry in e.items():
        assert entry["as_expected"], (label, entry["mismatches"])
    _assert_crashed(tmp_path, e["at-least-once"], "sink", "sink.before-apply")
    _assert_crashed(tmp_path, e["exactly-once/transactional"], "sink", "sink.before-commit")


@pytest.mark.timeout(90)
async def test_broker_errors_on_the_non_idempotent_produce_path(tmp_path):
    """A storage error before the append: at-most-once's producer never retries, so the
    batch is lost (and never duplicated). A storage error after the append (written, not
    acknowledged): at-least-once retries and the batch is appended twice, nothing lost."""
    sc = _scenario(tmp_path, "broker", [_fp("broker", "broker.before-append", "error", nth=6),
                                        _fp("broker", "broker.after-append-before-fsync", "error", nth=9),
                                        _fp("broker", "broker.before-offset-commit", "error", nth=4)], {
        "at-most-once": {"verdict": "held", "min": {"lost": 1}, "max": {"duplicated": 0}},
        "at-least-once": {"verdict": "held", "min": {"duplicated": 1}, "max": {"lost": 0}}})
    result = await run_scenario(sc, tmp_path)
    e = _entries(result)
    for label, entry in e.items():
        assert entry["as_expected"], (label, entry["mismatches"])
        assert entry["failpoints_fired"]["broker.before-append"] == 1
        assert entry["failpoints_fired"]["broker.before-offset-commit"] == 1
    assert "broker.after-append-before-fsync" in e["at-least-once"]["failpoints_fired"]
    log = (tmp_path / "at-most-once" / "producer" / "history.jsonl").read_text()
    assert re.search(r'"type": ?"info".*"error": ?"UNAVAILABLE: [^"]*broker.before-append', log)


@pytest.mark.timeout(60)
async def test_producer_crash_on_its_very_first_step_is_restarted(tmp_path):
    """A crash on the 1st hit can kill the producer before the harness saw it SERVING:
    the start still counts (its log says "serving"), the watcher restarts it, and the
    re-sent first batch is duplicated, never lost."""
    point = "producer.after-send-before-ack"
    sc = _scenario(tmp_path, "first", [_fp("producer", point, nth=1)],
                   {"at-least-once": {"verdict": "held", "max": {"lost": 0}}})
    result = await run_scenario(sc, tmp_path)
    (entry,) = result["modes"]
    assert entry["as_expected"], entry["mismatches"]
    _assert_crashed(tmp_path, entry, "producer", point)


async def test_producer_serves_the_failpoint_rpcs_and_the_flag(spawn):
    """The producer's NodeControl arms by RPC as every node does, and --failpoint arms at start."""
    from harness.nemesis.failpoint import arm_failpoint, list_failpoints
    from producer_fake_broker import FakeBroker
    broker = FakeBroker(partitions=4)
    await broker.start()
    try:
        p = await spawn("producer", ["--mode", "at-least-once", "--broker", broker.address, "--count",
                                     "3000", "--rate", "1000", "--failpoint",
                                     "producer.after-ack-before-persist=count"])
        assert await arm_failpoint(p.address, "producer.after-send-before-ack", "count") == \
            "producer.after-send-before-ack=count@1x0"
        rows = {}
        for _ in range(200):  # until both points were reached (bounded poll of the RPC itself)
            rows = {r["name"]: r for r in await list_failpoints(p.address)}
            if rows["producer.after-send-before-ack"]["hits"] and rows["producer.after-ack-before-persist"]["hits"]:
                break
            await asyncio.sleep(0.05)
        assert rows["producer.after-ack-before-persist"]["armed"].startswith("producer.after-ack-before-persist=count")
        assert rows["producer.after-send-before-ack"]["hits"] >= 1
        assert rows["producer.after-ack-before-persist"]["hits"] >= 1
        assert rows["producer.after-persist-before-send"]["hits"] == 0  # not armed, never counted
    finally:
        await broker.stop()
