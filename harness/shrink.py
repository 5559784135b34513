"""Shrink a broken run to a minimal fault schedule (``testbed shrink``).

Hypothesis shrinks a failing example and Zeller's delta debugging (ddmin)
minimises a failure-inducing input; here the input is a fault schedule. From a
run whose verdict is broken, the search replays candidates - each a fresh
campaign in its own directory under ``RUN_DIR/shrink/`` - and keeps a candidate
when it still breaks the same promise with the same anomaly family:

1. fewer modes: only the broken ones, then one broken mode alone;
2. fewer steps: ddmin over the schedule's steps (the empty schedule first);
3. smaller steps: a failpoint's Nth hit down to 1, a link fault's count down to
   1, its ``after_calls`` and a step's position ``at`` halved;
4. fewer events: halved while the last step still fires before the end;
5. a last pass removing each remaining step alone: when every removal makes the
   promise hold, the schedule is **1-minimal**.

"Still broken" is strict: a candidate counts only if its run is broken in
every mode it ran, each with an anomaly of the family the original mode had
(an anomaly name in common). Replays of timed steps can be flaky, so a candidate
that does not reproduce is run once more before it is rejected; a candidate
accepted once is kept during the search. The search stops at the budget (then
the best schedule so far is written, marked not 1-minimal) or when the schedule is
1-minimal.

Confirmation (issue 15): a candidate accepted on one breaking run may have broken
by timing (a consumer-group rejoin that raced a broker restart). Before writing,
``Shrinker.confirm`` replays the final candidate K more times (``--confirm K``,
after the search, outside its budget); if any replay does not break the same way
it walks back through the earlier accepted candidates (the best-so-far chain, to
the original schedule) and keeps the first, i.e. smallest, whose K replays all broke.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from harness.shrink_run import run_candidate, write_candidate


class BudgetSpent(Exception):
    """The shrink budget ran out before the search finished."""


def label_of(entry: dict) -> str:
    return f"{entry['mode']}/{entry['sink']}" if entry.get("sink") else entry["mode"]


@dataclass
class Target:
    """What the original run broke: mode label -> the anomaly names it showed."""

    families: dict[str, set[str]]

    @classmethod
    def of(cls, result: dict) -> "Target":
        return cls({label_of(m): set(m.get("anomalies") or {}) for m in result["modes"]
                    if m.get("verdict") == "broken"})

    def reproduced(self, result: dict | None, labels: list[str]) -> bool:
        """True if ``result`` is broken in every one of ``labels`` with an anomaly
        of the family that mode had in the original run."""
        if not result:
            return False
        by = {label_of(m): m for m in result.get("modes", [])}
        for label in labels:
            m = by.get(label)
            if m is None or m.get("verdict") != "broken":
                return False
            want = self.families.get(label, set())
            if want and not (want & set(m.get("anomalies") or {})):
                return False
        return True


@dataclass
class Candidate:
    labels: list[str]
    events: int
    steps: list[dict]

    def size(self) -> tuple:
        """Smaller is simpler: fewer steps, fewer modes, fewer events, smaller numbers."""
        return (len(self.steps), len(self.labels), self.events, len(json.dumps(self.steps)))

    def key(self) -> str:
        return json.dumps([self.labels, self.events, self.steps], sort_keys=True)


@dataclass
class Shrinker:
    """The search state. ``progress(label, msg)`` as harness.progress; ``jobs``
    candidates run at once."""

    run_dir: Path
    base: dict
    schedule: dict
    target: Target
    drain_timeout_s: float = 60.0
    jobs: int = 1
    deadline: float = float("inf")
    progress: Callable[[str, str], None] = lambda *_: None
    tried: dict[str, bool] = field(default_factory=dict)
    runs: int = 0
    last_result: dict | None = None
    results: dict[str, dict] = field(default_factory=dict)
    best: Candidate | None = None
    """The simplest candidate that still broke so far (kept when the budget runs out)."""
    chain: list[Candidate] = field(default_factory=list)
    """Each candidate that became ``best``, in order (the original schedule first)."""
    names: dict[str, str] = field(default_factory=dict)
    """Candidate key -> the directory name (``c006``) of the run that accepted it."""
    confirmations: list[dict] = field(default_factory=list)
    """One record per candidate ``confirm`` tried (see there)."""
    confirmed: Optional[bool] = None
    """None: no confirmation asked (``--confirm 0``); else whether a candidate confirmed."""

    def _schedule(self, c: Candidate) -> dict:
        s = {k: v for k, v in self.schedule.items() if k not in ("steps", "faults")}
        s.update(events=c.events, steps=c.steps, shrunk_from=str(self.run_dir))
        return s

    async def _run_once(self, c: Candidate) -> bool:
        self.runs += 1
        d = self.run_dir / "shrink" / f"c{self.runs:03d}"
        write_candidate(d, self.base, c.labels, self._schedule(c), self.drain_timeout_s)
        result = await run_candidate(d)
        ok = self.target.reproduced(result, c.labels)
        if ok:
            self.results[c.key()] = result
        return ok

    async def test(self, c: Candidate, why: str) -> bool:
        """Does candidate ``c`` still break the promise? (cached; retried once)."""
        k = c.key()
        if k in self.tried:
            return self.tried[k]
        if time.monotonic() > self.deadline:
            raise BudgetSpent()
        self.progress("shrink", f"{why}: {len(c.steps)} step(s), {c.events} events, "
                                f"{len(c.labels)} mode(s) (run {self.runs + 1})")
        name = self._next_name()   # read before the replay starts: jobs run at once
        ok = await self._run_once(c)
        if not ok:
            name = self._next_name()
            ok = await self._run_once(c)
        self.tried[k] = ok
        if ok:
            self.names[k] = name
        if ok and (self.best is None or c.size() < self.best.size()):
            self.best = c
            self.chain.append(c)
        self.progress("shrink", f"{why}: {'still broken' if ok else 'holds'}")
        return ok

    def _next_name(self) -> str:
        return f"c{self.runs + 1:03d}"

    async def _replays(self, c: Candidate, k: int) -> tuple[int, int, list[str]]:
        """Replay ``c`` up to ``k`` times, ``jobs`` at once, stopping after the chunk in
        which one held: (broken, replays run, their directory names)."""
        broken = ran = 0
        dirs: list[str] = []
        while ran < k:
            n = min(self.jobs, k - ran)
            names = [f"c{self.runs + 1 + i:03d}" for i in range(n)]
            oks = await asyncio.gather(*(self._run_once(c) for _ in range(n)))
            dirs += names
            ran += n
            broken += sum(oks)
            if not all(oks):
                break
        return broken, ran, dirs

    async def confirm(self, final: Candidate, k: int) -> Candidate | None:
        """Replay ``final`` ``k`` more times; if one does not break the same way (the
        target check), walk back through ``chain`` (newest first, to the original
        schedule) and replay each ``k`` times. Returns the first candidate whose ``k``
        replays all broke, or None. Each candidate tried gets a record in
        ``confirmations``: {"candidate": "c006", "steps", "events", "modes",
        "confirmed": broken replays, "replays": replays run, "dirs", "kept"}."""
        order = [final] + [c for c in reversed(self.chain) if c.key() != final.key()]
        self.confirmed = False
        for c in order:
            name = self.names.get(c.key(), "?")
            self.progress("shrink", f"confirm {name}: {len(c.steps)} step(s), {c.events} events, "
                                    f"{k} replay(s) (run {self.runs + 1})")
            broken, ran, dirs = await self._replays(c, k)
            kept = broken == k
            self.confirmations.append({"candidate": name, "steps": len(c.steps), "events": c.events,
                                       "modes": list(c.labels), "confirmed": broken, "replays": ran,
                                       "dirs": dirs, "kept": kept})
            self.progress("shrink", confirm_line(self.confirmations[-1]))
            if kept:
                self.confirmed = True
                return c
        return None

    async def first(self, cands: list[tuple[Candidate, str]]) -> Candidate | None:
        """The first candidate, in order, that still breaks; ``jobs`` at a time."""
        for i in range(0, len(cands), self.jobs):
            chunk = cands[i:i + self.jobs]
            oks = await asyncio.gather(*(self.test(c, why) for c, why in chunk))
            for (c, _), ok in zip(chunk, oks):
                if ok:
                    return c
        return None

    async def ddmin(self, c: Candidate) -> Candidate:
        """Zeller's ddmin over ``c.steps`` (the empty schedule tried first)."""
        if c.steps:
            empty = Candidate(c.labels, c.events, [])
            if await self.test(empty, "no fault step at all"):
                return empty
        steps, n = list(c.steps), 2
        while len(steps) >= 2:
            size = -(-len(steps) // n)
            parts = [steps[i:i + size] for i in range(0, len(steps), size)]
            subsets = [(Candidate(c.labels, c.events, p), f"keep {len(p)} of {len(steps)} steps")
                       for p in parts]
            comps = [(Candidate(c.labels, c.events, [s for j, q in enumerate(parts) if j != i for s in q]),
                      f"drop {len(parts[i])} of {len(steps)} steps") for i in range(len(parts))]
            hit = await self.first(subsets)
            if hit is not None:
                steps, n = hit.steps, 2
                continue
            hit = await self.first(comps if len(parts) > 2 else [])
            if hit is not None:
                steps, n = hit.steps, max(n - 1, 2)
                continue
            if n >= len(steps):
                break
            n = min(len(steps), 2 * n)
        return Candidate(c.labels, c.events, steps)

    async def simplify_steps(self, c: Candidate) -> Candidate:
        """Lower each step's Nth hit, count, call trigger and position while it still breaks."""
        for i in range(len(c.steps)):
            changed = True
            while changed:
                changed = False
                for variant, why in _smaller(c.steps[i]):
                    steps = c.steps[:i] + [variant] + c.steps[i + 1:]
                    cand = Candidate(c.labels, c.events, steps)
                    if await self.test(cand, f"step {i}: {why}"):
                        c, changed = cand, True
                        break
        return c

    async def fewer_events(self, c: Candidate) -> Candidate:
        batch = int(self.base.get("batch_size", 100))
        floor = max([int(s.get("at", 0)) for s in c.steps] + [0]) + 2 * batch
        while c.events // 2 >= max(floor, 2 * batch):
            cand = Candidate(c.labels, c.events // 2, c.steps)
            if not await self.test(cand, f"{cand.events} events"):
                break
            c = cand
        return c

    async def one_minimal(self, c: Candidate) -> bool:
        """True if removing any one step makes the promise hold."""
        for i in range(len(c.steps)):
            cand = Candidate(c.labels, c.events, c.steps[:i] + c.steps[i + 1:])
            if await self.test(cand, f"without step {i}"):
                return False
        return True

    async def run(self, start: Candidate) -> tuple[Candidate, bool, bool]:
        """(best candidate, reproduced at all, 1-minimal)."""
        best, reproduced = start, False
        try:
            if not await self.test(start, "the original schedule, broken modes only"):
                return start, False, False
            reproduced = True
            if len(start.labels) > 1:
                hit = await self.first([(Candidate([label], start.events, start.steps), f"only {label}")
                                        for label in start.labels])
                best = hit or best
            while True:
                best = await self.ddmin(best)
                best = await self.simplify_steps(best)
                best = await self.fewer_events(best)
                if await self.one_minimal(best):
                    return best, True, True
                best = await self.ddmin(best)  # a removal broke it again: go round once more
        except BudgetSpent:
            return self.best or best, reproduced, False


def confirm_line(rec: dict) -> str:
    """One line for a confirmation record: "c006: confirmed 2/2: kept" or
    "c006 broke 1 of 3 (the accepting run and 0 of 2 confirmations): not kept"."""
    what = f"{rec['candidate']} ({rec['steps']} step(s), {rec['events']} events)"
    if rec["kept"]:
        return f"{what}: confirmed {rec['confirmed']}/{rec['replays']}: kept"
    return (f"{what} broke {rec['confirmed'] + 1} of {rec['replays'] + 1} (the accepting run and "
            f"{rec['confirmed']} of {rec['replays']} confirmations): not kept")


def _smaller(step: dict) -> list[tuple[dict, str]]:
    """Variants of ``step`` with a smaller Nth hit, count, call trigger or position."""
    out = []

    def variant(path: tuple[str, ...], value: int, why: str) -> None:
        s = copy.deepcopy(step)
        d = s
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        out.append((s, why))

    if isinstance(step.get("nth"), int) and step["nth"] > 1:
        variant(("nth",), 1, "Nth hit 1")
        variant(("nth",), step["nth"] // 2, f"Nth hit {step['nth'] // 2}")
    fault = step.get("fault") if isinstance(step.get("fault"), dict) else {}
    if isinstance(fault.get("count"), int) and fault["count"] > 1:
        variant(("fault", "count"), 1, "count 1")
    if isinstance(fault.get("after_calls"), int) and fault["after_calls"] > 1:
        variant(("fault", "after_calls"), fault["after_calls"] // 2, f"after {fault['after_calls'] // 2} calls")
    if isinstance(step.get("count"), int) and step["count"] > 1:
        variant(("count",), 1, "count 1")
    if not step.get("arm") and isinstance(step.get("at"), int) and step["at"] > 1:
        variant(("at",), step["at"] // 2, f"at position {step['at'] // 2}")
    return out
