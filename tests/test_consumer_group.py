"""Several processors in one consumer group (issue 14), real processes on loopback."""

from __future__ import annotations

import json

import pytest

from harness.checker import check, load_run
from harness.cluster import Cluster, ClusterConfig
from harness.external_report import record_final_state


@pytest.mark.timeout(90)
async def test_three_processors_drain_every_partition(tmp_path):
    cluster = Cluster(ClusterConfig(mode="at-least-once", seed=7, events=2000, batch_size=100,
                                    partitions=4, processors=3), tmp_path)
    try:
        await cluster.start()
        last = await cluster.wait_drained(timeout_s=60)
        await record_final_state(cluster, tmp_path)
    finally:
        await cluster.stop()
    assert not any(p.running for p in cluster.all_processes())
    members = last["processor"]["members"]
    assert sorted(members) == ["processor", "processor-2", "processor-3"]
    owned = sorted(p for m in members.values() for p in m["assignment"])
    assert owned == [0, 1, 2, 3]                       # every partition, one owner each
    assert all(m["assignment"] for m in members.values())
    assert len({m["generation"] for m in members.values()}) == 1
    hw = last["high_watermarks"]
    assert sum(hw.values()) == 2000
    assert all(last["processor"]["durable_positions"][str(p)] == off for p, off in hw.items())
    for name in members:                               # each member its own data dir and links
        assert (tmp_path / name / "processor.log").exists()
    links = json.loads((tmp_path / "cluster.json").read_text())["links"]
    assert {"processor-2-broker", "processor-2-sink", "processor-3-broker", "processor-3-sink"} <= set(links)
    report = check(load_run(tmp_path))
    assert report.events == 2000 and report.acked == 2000
    assert {n: a.count for n, a in report.anomalies.items() if a.count} == {}


def _nemesis_ops(mode_dir, f: str) -> list[dict]:
    ops = [json.loads(line) for line in (mode_dir / "nemesis.jsonl").read_text().splitlines()]
    return [op for op in ops if op["f"] == f and op["type"] == "ok"]


def _log(mode_dir, node: str) -> str:
    return (mode_dir / node / f"{'processor' if node.startswith('processor') else node}.log").read_text()


def _assert_zombie_fired(mode_dir) -> dict:
    """The pause fired and the group rebalanced without the zombie (before any verdict)."""
    (op,) = _nemesis_ops(mode_dir, "zombie")
    v = op["value"]
    assert v["replaced_by_generation"] > v["generation"] >= 1, v
    assert v["stopped_ms"] >= 1000 and v["partitions"], v       # past the 1,000 ms session timeout
    assert v["member_id"] not in json.dumps(v["assignment_after"]), v
    broker = _log(mode_dir, "broker")
    assert '"msg": "group member-expired"' in broker and v["member_id"] in broker
    return v


def _assert_lanes_and_members(run_dir, mode_dir, label, ablation, dup) -> None:
    """The report's lanes show the partitions moving; the audit names who applied what."""
    from harness.checker import check, load_run
    from harness.report.timeline import load_timeline
    tl = load_timeline(mode_dir)
    owns = [i for i in tl.intervals if i.kind == "owns"]
    assert {i.lane for i in owns} == {"processor", "processor-2"} and "processor-2" in tl.lanes
    assert any(i.lane == "processor-2" and "[0, 1, 2, 3]" in i.label for i in owns)  # took the zombie's
    if not label.startswith("exactly-once") and label != "at-most-once":
        return
    group = check(load_run(run_dir, mode_dir=mode_dir)).group
    assert group and len(group["applied_by"]) >= 2
    assert bool(group["moves"]) == label.startswith("exactly-once")   # Fence: exactly-once only
    if label == "exactly-once/transactional" and ablation is None:
        assert group["refused"] >= 1 and group["duplicated_across_owners"] == 0
    if ablation and dup and label != "at-most-once":
        assert group["duplicated_across_owners"] >= 1


ZOMBIE_CASES = [(label, ablation) for label in ("at-most-once", "at-least-once", "exactly-once/idempotent",
                                                "exactly-once/transactional")
                for ablation in (None, "generation-fencing")]


def _zombie_case_marks(label, ablation):
    # All @slow (10-15 s each): the default suite runs s18 in exactly-once/transactional with and
    # without generation-fencing through tests/test_ablations.py (its expectations require the
    # zombie step to fire and the broker's "group member-expired" / the sink's refusal lines).
    return pytest.param(label, ablation, marks=pytest.mark.slow,
                        id=f"{label.replace('/', '-')}-{'no-' + ablation if ablation else 'fenced'}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("label,ablation", [_zombie_case_marks(*c) for c in ZOMBIE_CASES])
async def test_zombie_consumer(tmp_path, label, ablation):
    """s18: the zombie is fenced in every mode; with generation-fencing disabled at-most-once
    and exactly-once/transactional are broken by duplicates, the others keep their promise
    (at-least-once allows duplicates; the idempotent sink's upserts make the zombie harmless)."""
    from harness import scenarios
    from harness.scenarios.runner import run_scenario
    sc = scenarios.get("s18-zombie-consumer")
    if ablation:   # every mode, also those the catalog does not list for the ablation
        sc.ablations = {ablation: {m: {"verdict": ["held", "broken", "not-exercised"]}
                                   for m in scenarios.MODE_LABELS}}
    result = await run_scenario(sc, tmp_path, modes=[label], ablation=ablation)
    (entry,) = result["modes"]
    mode_dir = tmp_path / label.replace("/", "-")
    _assert_zombie_fired(mode_dir)
    dup = entry["anomalies"].get("duplicated", {}).get("count", 0)
    assert entry["lost"] == 0
    _assert_lanes_and_members(tmp_path, mode_dir, label, ablation, dup)
    if ablation is None:
        assert entry["as_expected"], entry["mismatches"]
        if label.startswith("exactly-once") or label == "at-most-once":
            assert dup == 0
        if label == "exactly-once/transactional":
            assert "FENCED" in _log(mode_dir, "sink")
        if label in ("at-most-once", "at-least-once"):
            assert "ILLEGAL_GENERATION" in _log(mode_dir, "broker") or \
                "UNKNOWN_MEMBER_ID" in _log(mode_dir, "broker")
    elif label in ("at-most-once", "exactly-once/transactional"):
        assert entry["verdict"] == "broken" and dup >= 1, entry["anomalies"]
    else:
        assert entry["verdict"] in ("held", "not-exercised"), entry["anomalies"]


@pytest.mark.timeout(120)
async def test_a_rebalance_during_two_phase_commit_applies_nothing_twice(tmp_path):
    """s18b: processor-2 crashes between PreCommit and Commit and stays down past its session
    timeout; processor takes its partitions, its Fence aborts the orphaned transaction."""
    from harness import scenarios
    from harness.scenarios.runner import run_scenario
    result = await run_scenario(scenarios.get("s18b-rebalance-during-2pc"), tmp_path,
                                modes=["exactly-once/transactional"])
    (entry,) = result["modes"]
    mode_dir = tmp_path / "exactly-once-transactional"
    (crash,) = _nemesis_ops(mode_dir, "failpoint-crash")
    assert crash["value"]["node"] == "processor-2"
    assert crash["value"]["failpoint"] == "processor.after-precommit-before-checkpoint"
    assert '"msg": "group member-expired"' in _log(mode_dir, "broker")
    assert "fence aborted prepared transactions" in _log(mode_dir, "sink")
    assert entry["as_expected"], entry["mismatches"]
    assert entry["verdict"] == "held" and entry["lost"] == 0
    assert entry["anomalies"].get("duplicated", {}).get("count", 0) == 0


@pytest.mark.slow   # ~15-27 s
@pytest.mark.timeout(120)
async def test_scale_out_and_a_killed_member_rebalance_without_loss(tmp_path):
    """add-processor mid-run (a third member joins), then kill -9 of processor-2 kept down past
    its session timeout (its partitions move): at-least-once loses nothing."""
    import copy
    from harness import scenarios
    from harness.scenarios.runner import run_scenario
    sc = copy.deepcopy(scenarios.get("s18-zombie-consumer"))
    sc.name = "scale-out-and-kill"
    sc.steps = [{"at": 100, "f": "add-processor", "must_fire": True},
                {"at": 300, "f": "kill", "node": "processor-2", "down_ms": 1500, "must_fire": True}]
    sc.expect = {"at-least-once": {"verdict": ["held", "not-exercised"], "max": {"lost": 0}}}
    sc.ablations = {}
    result = await run_scenario(sc, tmp_path, modes=["at-least-once"])
    (entry,) = result["modes"]
    mode_dir = tmp_path / "at-least-once"
    (add,) = _nemesis_ops(mode_dir, "add-processor")
    assert add["value"]["node"] == "processor-3" and add["value"]["generation"] > add["value"]["generation_before"]
    assert any(m.startswith("processor-3-") and ps for m, ps in add["value"]["assignment"].items())
    (kill,) = _nemesis_ops(mode_dir, "kill")
    assert kill["value"]["server"] == "processor-2" and kill["value"]["new_pid"] != kill["value"]["killed_pid"]
    assert '"msg": "group member-expired"' in _log(mode_dir, "broker")
    assert (mode_dir / "processor-3" / "processor.log").exists()
    assert entry["as_expected"], entry["mismatches"]
    assert entry["lost"] == 0
