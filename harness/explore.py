"""Search for a broken promise from random seeds and fault mixes (``testbed explore``).

Each trial is a small campaign: seed ``s`` (from ``--seed-start`` up) picks a
fault mix of 1-4 kinds from harness.schedule.FAULT_KINDS (storage faults only
with ``--storage lazy``, consumer-group faults only with ``--processors`` 2+)
and the schedule is harness.schedule.generate(s, events, mix): kills, stops
and power losses at logical triggers where the node has one. A trial runs in ``RUN_DIR/explore/seed-<s>/`` (a campaign run
directory: result.json, schedule.json, one directory per mode), as its own
process (harness.shrink_run). The search stops at the first broken verdict,
or at the budget. Time-to-detect is the wall time from the start of the search
to the end of the trial that broke: the testbed's detection power from random
seeds, as opposed to a targeted scenario.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import schedule as schedule_mod
from harness.shrink_run import run_candidate, write_candidate

EXPLORE_EVENTS = 600
"""Orders per trial: few, for speed (each fault still lands inside the workload)."""


def fault_mix(seed: int, storage: str = "direct", broker: str = "builtin", processors: int = 1) -> list[str]:
    """1-4 fault kinds drawn from ``seed`` (repeats allowed, as in the default campaign).

    Power loss only with lazy storage; the NATS server faults only with ``--broker nats``,
    mosquitto's only with ``--broker mosquitto``
    (and then none of the builtin broker's, which does not run). ``late-commit`` and the
    two-phase-commit kills (``kill-processor-after-checkpoint``, ``-after-commit``) are in
    the mixes so that a random search can reach the late offset commit and the 2PC windows
    (offset-commit-monotonic, 2pc-* ablations); ``kill-processor-writes-outstanding`` (a
    crash at a checkpoint taken with sink writes in flight, s04) reaches drain-before-checkpoint.
    The consumer-group faults (schedule.GROUP_FAULT_KINDS: zombie, add-processor,
    kill-processor-2) only with ``processors`` >= 2 (generation-fencing, s18)."""
    nats, mqtt = broker == "nats", broker == "mosquitto"
    group = processors >= 2 and not (nats or mqtt)
    kinds = [k for k in schedule_mod.FAULT_KINDS if (storage == "lazy" or not k.startswith("power-loss"))
             and ("-nats-" in k) == nats and k.endswith("-mosquitto") == mqtt
             and not ((nats or mqtt) and k.endswith("-broker"))
             and (group or k not in schedule_mod.GROUP_FAULT_KINDS)]
    rng = random.Random(seed * 104729 + 7)
    return rng.choices(kinds, k=rng.randint(1, 4))


@dataclass
class Trial:
    seed: int
    faults: list[str]
    dir: Path
    result: dict | None = None
    broken: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _retrieved(fut: asyncio.Future) -> None:
    """Mark a gather's outcome as seen: on Ctrl-C, ``wait_for`` cancels the gather and
    Python 3.11 leaves its CancelledError unretrieved, which asyncio printed as a
    "_GatheringFuture exception was never retrieved" traceback after "interrupted"."""
    if not fut.cancelled():
        fut.exception()


@dataclass
class Explorer:
    run_dir: Path
    base: dict
    labels: list[str]
    seed_start: int = 1
    events: int = EXPLORE_EVENTS
    jobs: int = 1
    budget_s: float = 600.0
    progress: Callable[[str, str], None] = lambda *_: None
    trials: list[Trial] = field(default_factory=list)

    def _trial(self, seed: int) -> Trial:
        faults = fault_mix(seed, self.base.get("storage", "direct"), self.base.get("broker", "builtin"),
                           int(self.base.get("processors", 1) or 1))
        sched = schedule_mod.generate(seed, self.events, faults, batch_size=int(self.base.get("batch_size", 100)))
        d = self.run_dir / "explore" / f"seed-{seed}"
        write_candidate(d, self.base | {"seed": seed}, self.labels, sched, 60.0)
        return Trial(seed, faults, d)

    async def _run(self, t: Trial, t0: float) -> Trial:
        self.progress(f"seed {t.seed}", f"{', '.join(t.faults)} ({len(self.labels)} mode(s))")
        t.result = await run_candidate(t.dir)
        t.elapsed_s = time.monotonic() - t0
        t.broken = [m["mode"] + (f"/{m['sink']}" if m.get("sink") else "")
                    for m in (t.result or {}).get("modes", []) if m.get("verdict") == "broken"]
        verdicts = ", ".join(m["verdict"] for m in (t.result or {}).get("modes", [])) or "failed to run"
        self.progress(f"seed {t.seed}", f"verdict {'broken' if t.broken else verdicts}")
        return t

    async def run(self) -> Trial | None:
        """The first trial (in seed order) that broke a promise, or None at the budget."""
        t0 = time.monotonic()
        seed = self.seed_start
        while time.monotonic() - t0 < self.budget_s:
            batch = [self._trial(seed + i) for i in range(self.jobs)]
            seed += self.jobs
            remaining = max(1.0, self.budget_s - (time.monotonic() - t0))
            trials = asyncio.gather(*(self._run(t, t0) for t in batch))
            trials.add_done_callback(_retrieved)
            try:
                done = await asyncio.wait_for(trials, remaining + 60)
            except asyncio.TimeoutError:
                break
            self.trials.extend(done)
            for t in done:
                if t.broken:
                    return t
        return None
