"""testbed shrink: the search on a fake oracle (fast), its CLI usage errors, and
one real shrink of a run broken by an ablation (@slow: ~1 min)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.shrink import Candidate, Shrinker, Target

ROOT = Path(__file__).resolve().parent.parent


class FakeShrinker(Shrinker):
    """Shrinker whose replays are a predicate on the candidate (no process)."""

    def __init__(self, breaks, flaky_once=frozenset(), **kw):
        super().__init__(run_dir=Path("/nonexistent"), base={"batch_size": 10}, schedule={"events": 1000},
                         target=Target({"at-least-once": {"lost"}}), **kw)
        self.breaks, self.flaky_once, self.calls = breaks, set(flaky_once), []

    async def _run_once(self, c: Candidate) -> bool:
        self.runs += 1
        self.calls.append(c)
        key = tuple(s["id"] for s in c.steps)
        if key in self.flaky_once:  # the first replay of this candidate does not break
            self.flaky_once.discard(key)
            return False
        return self.breaks(c)


def steps(n: int) -> list[dict]:
    return [{"at": 100 + i, "f": "kill", "node": "processor", "id": i} for i in range(n)]


def ids(c: Candidate) -> set[int]:
    return {s["id"] for s in c.steps}


async def test_ddmin_finds_the_two_steps_that_together_break():
    sh = FakeShrinker(lambda c: {2, 5} <= ids(c))
    best, reproduced, minimal = await sh.run(Candidate(["at-least-once"], 1000, steps(8)))
    assert reproduced and minimal
    assert ids(best) == {2, 5}
    assert best.events < 1000  # fewer events was tried and kept


async def test_a_flaky_candidate_is_retried_once_before_rejection():
    sh = FakeShrinker(lambda c: 3 in ids(c), flaky_once={(3,)})
    best, reproduced, minimal = await sh.run(Candidate(["at-least-once"], 1000, steps(4)))
    assert reproduced and minimal and ids(best) == {3}
    assert sum(1 for c in sh.calls if [s["id"] for s in c.steps] == [3]) >= 2


async def test_nth_hit_and_count_are_lowered():
    step = {"at": 0, "arm": True, "f": "failpoint", "node": "processor", "name": "processor.x",
            "action": "crash", "nth": 8, "id": 0}
    sh = FakeShrinker(lambda c: bool(c.steps) and c.steps[0].get("nth", 0) >= 2)
    best, _, minimal = await sh.run(Candidate(["at-least-once"], 1000, [step]))
    assert minimal and best.steps[0]["nth"] == 2


async def test_original_that_holds_is_not_reproduced():
    sh = FakeShrinker(lambda c: False)
    _, reproduced, _ = await sh.run(Candidate(["at-least-once"], 1000, steps(2)))
    assert not reproduced and sh.runs == 2  # the original, then its one retry


async def test_budget_keeps_the_best_so_far():
    sh = FakeShrinker(lambda c: 1 in ids(c))
    orig = sh.test

    async def test_then_spend(c, why):  # the budget runs out after the fourth replay
        if sh.runs >= 4:
            sh.deadline = 0.0
        return await orig(c, why)

    sh.test = test_then_spend
    best, reproduced, minimal = await sh.run(Candidate(["at-least-once"], 1000, steps(3)))
    assert reproduced and not minimal and 1 in ids(best) and len(best.steps) < 3


def test_target_needs_the_same_anomaly_family():
    t = Target.of({"modes": [{"mode": "at-least-once", "verdict": "broken", "anomalies": {"lost": {}}},
                             {"mode": "at-most-once", "verdict": "held", "anomalies": {}}]})
    assert list(t.families) == ["at-least-once"]
    other = {"modes": [{"mode": "at-least-once", "verdict": "broken", "anomalies": {"duplicated": {}}}]}
    same = {"modes": [{"mode": "at-least-once", "verdict": "broken", "anomalies": {"lost": {}}}]}
    assert not t.reproduced(other, ["at-least-once"]) and t.reproduced(same, ["at-least-once"])


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_shrink_usage_errors(tmp_path):
    r = cli("shrink", str(tmp_path))
    assert r.returncode == 2 and "no result.json" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "result.json").write_text(json.dumps({"seed": 1, "modes": [
        {"mode": "at-least-once", "verdict": "held", "dir": "at-least-once"}], "config": {}}))
    (tmp_path / "schedule.json").write_text(json.dumps({"steps": []}))
    r = cli("shrink", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    r = cli("shrink", str(tmp_path), "--budget", "soon")
    assert r.returncode == 2 and "duration" in r.stderr
    # a run interrupted before its first mode ended (was "no mode is broken (verdicts: )")
    (tmp_path / "result.json").write_text(json.dumps({"seed": 1, "modes": [], "config": {}}))
    r = cli("shrink", str(tmp_path))
    assert r.returncode == 2 and "no mode finished (the run was interrupted" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_shrink_of_a_broker_dedupe_ablation_run_is_minimal_and_replays(tmp_path):
    r = cli("campaign", "--mode", "exactly-once", "--sink", "idempotent", "--events", "400",
            "--faults", "kill-processor,drop-response,pause-processor", "--disable", "broker-dedupe",
            "--out", str(tmp_path / "runs"), "-q")
    assert r.returncode == 1, r.stdout + r.stderr  # broken
    run_dir = (tmp_path / "runs" / "latest").resolve()
    r = cli("shrink", str(run_dir), "--budget", "5m", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1-minimal" in r.stdout and "scenario run" in r.stdout
    sc = json.loads((run_dir / "shrunk-scenario.json").read_text())
    assert 1 <= len(sc["steps"]) <= 2 and sc["config"]["disabled"] == ["broker-dedupe"]
    assert sc["expect"]["exactly-once/idempotent"]["verdict"] == "broken"
    r = cli("scenario", "run", str(run_dir / "shrunk-scenario.json"), "--out", str(tmp_path / "sc"), "-q")
    assert r.returncode == 0, r.stdout + r.stderr  # broken, as the shrunk scenario expects
    result = json.loads((tmp_path / "sc" / "latest" / "result.json").read_text())
    entry = result["modes"][0]
    assert all(s["fired"] for s in entry["steps_fired"]), entry["steps_fired"]  # the fault fired
    assert entry["verdict"] == "broken" and "duplicated-in-log" in entry["anomalies"]
