"""Fault lifetimes and honest expectations (issue 10, items 5 and 6b), on real processes:
link faults are armed before any node that calls through them starts; a fault stays
armed until the pipeline has drained (not until the producer is done); a step with
``must_fire`` that did not fire makes the scenario NOT as expected; the ``faults``
column counts failpoint firings."""

from __future__ import annotations

import asyncio
import json

import pytest

from harness import scenarios
from harness.cluster import Cluster, ClusterConfig
from harness.history import HistoryWriter, read_history
from harness.scenarios.runner import run_scenario
from harness.scheduler import ScheduleRunner

LATE_POINT = "processor.after-sink-ack-before-offset-commit"


@pytest.mark.timeout(60)
async def test_link_faults_are_armed_before_the_processor_starts(tmp_path):
    # The fault fires on the first matching call of the link: call 1, the processor's very first.
    steps = [{"at": 0, "arm": True, "f": "link", "link": "processor-broker",
              "fault": {"kind": "delay", "delay_ms": 1, "probability": 1.0, "count": 1}}]
    cluster = Cluster(ClusterConfig(mode="at-least-once", events=10), tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    history = HistoryWriter(tmp_path / "nemesis.jsonl", "nemesis")
    runner = ScheduleRunner(cluster, {"steps": steps}, history)
    try:
        await cluster.start(start_producer=False, links_up=runner.arm)
        assert await runner.arm() == []  # nothing left: the link step went in before the processor
        deadline = asyncio.get_running_loop().time() + 15
        while not _fired(tmp_path) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # until the processor's first call reached the proxy
    finally:
        await cluster.stop()
        history.close()
    (armed,) = [op for op in read_history(tmp_path / "nemesis.jsonl") if op["type"] == "ok"]
    started = [json.loads(line)["ts"] for line in (tmp_path / "processor" / "processor.log").read_text().splitlines()
               if '"listening"' in line]
    assert armed["time"] < started[0]
    assert [ev["call"] for ev in _fired(tmp_path)] == [1]


def _fired(run_dir) -> list[dict]:
    return [ev for ev in read_history(run_dir / "proxy-processor-broker" / "faults.jsonl")
            if ev.get("type") == "fault"]


def _scenario(tmp_path) -> scenarios.Scenario:
    """A processor made slow by a delay on its sink link, so that its 4th batch comes
    well after the producer is done, and a crash armed at that 4th batch; plus a
    failpoint at-least-once never reaches, marked must_fire."""
    path = tmp_path / "late.json"
    path.write_text(json.dumps({
        "name": "late-fault", "title": "a fault aimed after the producer is done", "incident": "test",
        "config": {"events": 1000, "seed": 3, "batch_size": 100, "rate": 500},
        "steps": [
            {"at": 0, "arm": True, "f": "link", "link": "processor-sink",
             "fault": {"kind": "delay", "delay_ms": 600, "probability": 1.0, "count": 0}},
            {"at": 0, "arm": True, "f": "failpoint", "node": "processor", "name": LATE_POINT,
             "action": "crash", "nth": 4, "down_ms": 100, "must_fire": True},
            {"at": 0, "arm": True, "f": "failpoint", "node": "processor", "name": "processor.before-checkpoint",
             "action": "crash", "must_fire": True}],
        "expect": {"at-least-once": {"verdict": ["held", "not-exercised"], "max": {"lost": 0}}}}))
    return scenarios.load_file(path)


@pytest.mark.timeout(120)
async def test_a_fault_lives_until_drained_and_must_fire_is_enforced(tmp_path):
    sc = _scenario(tmp_path)
    result = await run_scenario(sc, tmp_path / "run", modes=["at-least-once"])
    (entry,) = result["modes"]
    # The crash aimed after the producer finished did fire (the heal waited for the drain) ...
    assert entry["failpoints_fired"].get(LATE_POINT) == 1, entry["failpoints_fired"]
    mode_dir = tmp_path / "run" / "at-least-once"
    ops = read_history(mode_dir / "nemesis.jsonl")
    crash = [op for op in ops if op["f"] == "failpoint-crash"]
    heal = [op for op in ops if op["f"] == "heal" and op["type"] == "invoke"]
    assert crash and heal and crash[0]["time"] < heal[0]["time"]
    # ... and is counted in the faults column, with the link delays.
    assert entry["faults"].get(f"crash@{LATE_POINT}") == 1, entry["faults"]
    assert entry["faults_fired"] >= 1 + entry["faults"].get("delay@processor-sink", 0)
    assert entry["verdict"] in ("held", "not-exercised") and entry["lost"] == 0
    # The unreachable must_fire step makes the run NOT as expected, and says why.
    assert not entry["as_expected"] and not result["as_expected"]
    assert len(entry["mismatches"]) == 1, entry["mismatches"]
    assert "processor.before-checkpoint" in entry["mismatches"][0] and "must fire but did not" in entry["mismatches"][0]
    fired = {r["step"]: r["fired"] for r in entry["steps_fired"]}
    assert fired[1] == 1 and fired[2] == 0 and fired[0] >= 4


@pytest.mark.timeout(120)
async def test_a_fault_that_holds_the_pipeline_is_reported_then_healed(tmp_path):
    path = tmp_path / "held.json"
    path.write_text(json.dumps({
        "name": "held", "title": "a partition that only the heal ends", "incident": "test",
        "config": {"events": 300, "seed": 4, "batch_size": 100, "rate": 1000, "stuck_s": 2},
        "steps": [{"at": 0, "arm": True, "f": "link", "link": "processor-sink",
                   "fault": {"kind": "partition"}, "must_fire": True}],
        "expect": {"at-least-once": {"verdict": ["held", "not-exercised"], "max": {"lost": 0}}}}))
    result = await run_scenario(scenarios.load_file(path), tmp_path / "run", modes=["at-least-once"])
    (entry,) = result["modes"]
    ops = read_history(tmp_path / "run" / "at-least-once" / "nemesis.jsonl")
    (drain,) = [op for op in ops if op["f"] == "drain"]
    assert drain["type"] == "info" and "processor behind the broker" in drain["error"]
    assert any("drained only after the final heal" in n for n in entry["notes"]), entry["notes"]
    assert entry["as_expected"], entry["mismatches"]  # the partition fired, then the heal let it drain
