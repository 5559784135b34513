"""The logical zombie (harness/nemesis/zombie_release.py, issue 15): released by counts and
observed states, not by ``after_ms``; the timed form stays and is flagged timed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness.cli_campaign import timed_steps
from harness.nemesis.group import validate_step
from harness.nemesis.logical import expand, is_quiesce_step

LOGICAL = {"at": 200, "f": "zombie", "node": "processor", "trigger": "failpoint", "release": "drained"}
ORDER = ["producer-held", "one-batch-sent", "paused", "expired", "survivor-drained", "resumed", "rejoined",
         "drained", "released"]


def cfg(mode: str = "at-least-once") -> SimpleNamespace:
    return SimpleNamespace(mode=mode, sink_strategy=None, disabled=[], batch_size=20, fetch_group=0,
                           processors=2)


def test_a_drained_release_holds_the_producer_and_a_timed_zombie_is_flagged_timed():
    assert is_quiesce_step(LOGICAL)
    zombie, arm = expand([LOGICAL], cfg())
    # the producer held at its batch of 200 (ACKed, position not persisted), then one batch let through
    assert arm == {"at": 0, "arm": True, "f": "failpoint", "node": "producer", "action": "pause", "count": 1,
                   "name": "producer.after-ack-before-persist", "nth": 11, "logical": "quiesce"}
    assert zombie["quiesce"]["nth"] == 11 and zombie["window_batches"] == 1 and not zombie.get("timed")
    assert zombie["logical"] == "zombie" and "trigger" not in zombie
    # a later quiesce step counts its batches from there: 400 // 20 + 1 - 11 - the one batch let through
    loss = {"at": 400, "f": "power-loss", "nodes": ["broker"], "trigger": "failpoint"}
    first, second, _ = expand([LOGICAL, loss], cfg())
    assert first["quiesce_next"] == {"nth": 21 - 11 - 1} and second["quiesce"]["seq"] == 2
    timed = {"at": 0, "f": "zombie", "node": "processor", "nth": 3, "after_ms": 1000}
    assert expand([timed], cfg()) == [timed | {"timed": True}]
    assert timed_steps({"steps": [timed, LOGICAL]}) == ["zombie processor at 0"]
    assert validate_step(LOGICAL) is None
    assert "release" in validate_step(LOGICAL | {"after_ms": 1000})
    assert "release" in validate_step({k: v for k, v in LOGICAL.items() if k != "trigger"})
    assert "release" in validate_step(LOGICAL | {"release": "time"})


async def _s18_at_least_once(tmp_path) -> tuple[dict, dict]:
    from harness import scenarios
    from harness.scenarios.runner import run_scenario
    sc = scenarios.get("s18-zombie-consumer")
    assert sc.steps[0].get("release") == "drained"
    result = await run_scenario(sc, tmp_path, modes=["at-least-once"])
    (entry,) = result["modes"]
    ops = [json.loads(line) for line in (tmp_path / "at-least-once" / "nemesis.jsonl").read_text().splitlines()]
    (op,) = [o for o in ops if o["f"] == "zombie" and o["type"] == "ok"]
    return entry, op["value"]


@pytest.mark.timeout(120)
async def test_s18_zombie_is_released_by_states_and_two_runs_count_the_same(tmp_path):
    """Fired where intended first: the producer held, the member paused at member-before-output,
    the broker expired it and gave its partitions to the survivor, the survivor drained, only
    then SIGCONT; it rejoined, the group drained, the producer went on. Then: two runs of one
    seed, one duplicate count (the zombie's held records, re-read by the survivor)."""
    counts = []
    for run in ("a", "b"):
        entry, v = await _s18_at_least_once(tmp_path / run)
        events = [e["event"] for e in v["order"]]
        assert events == ORDER, v["order"]
        facts = {e["event"]: e for e in v["order"]}
        assert facts["producer-held"]["drained"] and facts["one-batch-sent"]["held"]
        assert facts["survivor-drained"]["ok"] and facts["rejoined"]["ok"] and facts["drained"]["ok"]
        assert v["quiesce"]["paused"] and v["quiesce"]["released"]
        assert v["replaced_by_generation"] > v["generation"] >= 1 and v["partitions"]
        assert v["member_id"] not in json.dumps(v["assignment_after"])   # its partitions went to the survivor
        assert facts["rejoined"]["generation"] > v["replaced_by_generation"]
        broker = (tmp_path / run / "at-least-once" / "broker" / "broker.log").read_text()
        assert '"msg": "group member-expired"' in broker and v["member_id"] in broker
        assert entry["as_expected"], entry["mismatches"]
        assert entry["verdict"] == "held" and entry["lost"] == 0
        counts.append(entry["anomalies"].get("duplicated", {}).get("count", 0))
    assert counts[0] == counts[1] >= 1, counts   # the zombie's held output applied, and re-read by the survivor


def test_a_producer_that_finished_before_the_zombie_ends_the_step_at_once(monkeypatch):
    """The producer done before the zombie's batch: the step waited 60 s for a pause that could
    never fire. Now it releases the producer's arming and raises at once, arming nothing."""
    import asyncio

    from harness.nemesis import zombie_release
    calls = []

    async def quiesce(cluster, q):
        return {"paused": False, "drained": True, "waited_ms": 5}

    async def release(cluster, step, waited):
        calls.append("release")

    async def arm(*a, **k):
        calls.append("arm")

    monkeypatch.setattr(zombie_release, "quiesce", quiesce)
    monkeypatch.setattr(zombie_release, "release", release)
    monkeypatch.setattr(zombie_release, "arm_failpoint", arm)
    nemesis = SimpleNamespace(ctx=SimpleNamespace(cluster=SimpleNamespace()), stopped=[])
    step = {"at": 5000, "f": "zombie", "node": "processor", "release": "drained",
            "quiesce": {"node": "producer", "failpoint": "producer.after-ack-before-persist", "nth": 251}}
    member = SimpleNamespace(running=True, name="processor")
    with pytest.raises(TimeoutError, match="not held at its batch of 5000"):
        asyncio.run(asyncio.wait_for(zombie_release.run(nemesis, step, member), 5))
    assert calls == ["release"]


@pytest.mark.parametrize("held_at,message", [
    # the batch ACKed (at-least-once, exactly-once): the group drained without the hit: at once
    ("producer.after-ack-before-persist", "the group output the batch let through without its hit 5"),
    # at-most-once: the held producer's sends may still be in flight: drained proves nothing
    ("producer.after-persist-before-send", "within 0 s"),
])
def test_a_zombie_whose_nth_hit_cannot_come_in_its_one_batch_ends_when_the_group_drained(
        monkeypatch, held_at, message):
    """"nth": 5 with "release": "drained": one batch is let through, the member never hits its
    5th output in it; the step waited its whole timeout (60 s). Now it ends once the group
    output that batch (the producer held after its ACK), disarming and releasing first."""
    import asyncio

    from harness.nemesis import zombie_release
    from harness.nemesis.group import FAILPOINT
    calls = []

    async def quiesce(cluster, q):
        return {"paused": True, "drained": True, "waited_ms": 5}

    async def ok(*a, **k):
        return True

    async def record(name):
        calls.append(name)

    async def fps(address):
        return [{"name": FAILPOINT, "fired": 0}]

    monkeypatch.setattr(zombie_release, "quiesce", quiesce)
    monkeypatch.setattr(zombie_release, "wait_held", ok)
    monkeypatch.setattr(zombie_release, "arm_failpoint", ok)
    monkeypatch.setattr(zombie_release, "list_failpoints", fps)
    monkeypatch.setattr(zombie_release, "_group_drained", ok)
    monkeypatch.setattr(zombie_release, "disarm_failpoint", lambda *a: record("disarm"))
    monkeypatch.setattr(zombie_release, "release", lambda *a: record("release"))
    cluster = SimpleNamespace(nodes={"producer": SimpleNamespace(address="127.0.0.1:1")})
    nemesis = SimpleNamespace(ctx=SimpleNamespace(cluster=cluster), stopped=[])
    step = {"at": 200, "f": "zombie", "node": "processor", "release": "drained", "nth": 5, "timeout_ms": 300,
            "quiesce": {"node": "producer", "failpoint": held_at, "nth": 11}}
    member = SimpleNamespace(running=True, name="processor", address="127.0.0.1:2")
    with pytest.raises(TimeoutError, match=message):
        asyncio.run(asyncio.wait_for(zombie_release.run(nemesis, step, member), 5))
    assert calls == ["disarm", "release"]
