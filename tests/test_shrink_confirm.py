"""testbed shrink --confirm (issue 15): the final candidate is replayed K more times
before it is written; one that does not break again is dropped and the search walks
back through the earlier accepted candidates. On a fake oracle (no process)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness import scenarios
from harness.cli_shrink import write_shrunk
from harness.shrink import Candidate, Shrinker, Target, confirm_line


class Oracle(Shrinker):
    """Replays are ``breaks(candidate, nth replay of that candidate)`` (no process)."""

    def __init__(self, breaks, **kw):
        super().__init__(run_dir=Path("/nonexistent"), base={"batch_size": 10, "seed": 3},
                         schedule={"events": 1000, "steps": steps(4)},
                         target=Target({"at-least-once": {"lost"}}), **kw)
        self.breaks, self.seen = breaks, Counter()

    async def _run_once(self, c: Candidate) -> bool:
        self.runs += 1
        self.seen[c.key()] += 1
        ok = self.breaks(c, self.seen[c.key()])
        if ok:
            self.results[c.key()] = {"modes": [{"mode": "at-least-once", "verdict": "broken",
                                                "anomalies": {"lost": {}}}]}
        return ok


def steps(n: int) -> list[dict]:
    return [{"at": 100 + i, "f": "kill", "node": "processor", "id": i} for i in range(n)]


def ids(c: Candidate) -> set[int]:
    return {s["id"] for s in c.steps}


def timing_dependent(c: Candidate, nth: int) -> bool:
    """Steps 2 and 3 together always break; step 3 alone breaks only on a candidate's
    first replay (as a rejoin that raced a broker restart)."""
    return {2, 3} <= ids(c) or (ids(c) == {3} and nth == 1)


async def test_a_candidate_that_broke_once_is_not_kept_and_the_walk_back_confirms_an_earlier_one():
    sh = Oracle(timing_dependent)
    best, reproduced, minimal = await sh.run(Candidate(["at-least-once"], 1000, steps(4)))
    assert reproduced and ids(best) == {3}            # the search alone accepts the flaky one
    kept = await sh.confirm(best, 2)
    assert kept is not None and ids(kept) == {2, 3} and sh.confirmed is True
    first, last = sh.confirmations[0], sh.confirmations[-1]
    assert (first["kept"], first["confirmed"], first["replays"]) == (False, 0, 1)   # stopped at the first hold
    assert (last["kept"], last["confirmed"], last["replays"]) == (True, 2, 2)
    assert last["candidate"] == sh.names[kept.key()] and last["candidate"].startswith("c")
    assert all(not r["kept"] for r in sh.confirmations[:-1])  # every single-step candidate walked back over
    assert "not kept" in confirm_line(first) and "confirmed 2/2: kept" in confirm_line(last)


async def test_a_candidate_that_breaks_every_time_confirms_at_once_in_parallel():
    sh = Oracle(lambda c, nth: 1 in ids(c), jobs=2)
    best, _, _ = await sh.run(Candidate(["at-least-once"], 1000, steps(3)))
    runs = sh.runs
    assert await sh.confirm(best, 2) == best
    assert sh.runs == runs + 2 and len(sh.confirmations) == 1 and sh.confirmations[0]["replays"] == 2


async def test_nothing_confirms_writes_the_original_schedule_with_a_note(tmp_path):
    sh = Oracle(lambda c, nth: 3 in ids(c) and nth == 1)   # every candidate breaks once only
    start = Candidate(["at-least-once"], 1000, steps(4))
    best, reproduced, _ = await sh.run(start)
    assert reproduced
    assert await sh.confirm(best, 2) is None and sh.confirmed is False
    assert len(sh.confirmations) == len(sh.chain) and sh.chain[0] == start   # walked back to the original
    sh.run_dir = tmp_path
    sc = write_shrunk(sh, start, False, [tmp_path / "shrunk-scenario.json"])
    assert len(sc["steps"]) == 4 and "NO candidate confirmed" in sc["incident"]
    assert scenarios.load_file(tmp_path / "shrunk-scenario.json").steps    # it still loads
    summary = json.loads((tmp_path / "shrink" / "summary.json").read_text())
    assert summary["confirmed"] is False and len(summary["confirmations"]) == len(sh.chain)
