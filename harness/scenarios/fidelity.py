"""Replay fidelity: run scenarios twice with the same seed and count identical outcomes.

An *outcome* of one (scenario, mode) run is its verdict plus the count of every
anomaly (lost, lost-acknowledged, duplicated, duplicated-in-log, state-mismatch,
...) and whether balances were exact. Two runs are identical when those are
equal. Timing can still move a count where a trigger is a wall-clock one (a
kill at a producer position, a link fault healed when the workload ends);
failpoints on the Nth hit and proxy call-count triggers do not.
"""

from __future__ import annotations

from pathlib import Path

from harness.campaign import ProgressFn
from harness.process import NodeStartError
from harness.scenarios import Scenario
from harness.scenarios.runner import run_scenario


def outcome(entry: dict) -> dict:
    """The comparable part of a mode's result entry."""
    return {"verdict": entry["verdict"], "balance_ok": entry.get("balance_ok"),
            "anomalies": {n: a.get("count", 0) for n, a in sorted((entry.get("anomalies") or {}).items())
                          if a.get("count")}}


async def measure(scs: list[Scenario], run_dir: Path, *, runs: int = 2, ablations: bool = False,
                  progress: ProgressFn = lambda *_: None) -> dict:
    """Run each scenario ``runs`` times (every mode of its expectations; with
    ``ablations`` also each ablation variant).

    A run whose cluster did not start (NodeStartError) after the first one is recorded
    as the outcome ``{"verdict": "error", "error": ...}`` of each of its modes (not
    identical to the others) and the pass goes on; the very first run's failure is raised
    (a missing binary, a machine that cannot run the catalog: said once, at once).

    Returns {"runs", "compared", "identical", "fraction", "rows": [{scenario, ablation,
    mode, identical, outcomes}]} where ``fraction`` = identical / compared.
    """
    rows = []
    for sc in scs:
        for ablation in [None] + (list(sc.ablations) if ablations else []):
            per_run = []
            for i in range(runs):
                tag = f"{sc.name}{'-no-' + ablation if ablation else ''}-run{i + 1}"
                try:
                    result = await run_scenario(sc, run_dir / tag, ablation=ablation, progress=progress)
                except NodeStartError as e:
                    if not rows and not per_run:
                        raise
                    progress(tag, f"a node did not start, recorded as an error: {e}")
                    per_run.append({label: {"verdict": "error", "balance_ok": None, "anomalies": {},
                                            "error": str(e)[:300]} for label in sc.expectations(ablation)})
                    continue
                per_run.append({e["mode"] + (f"/{e['sink']}" if e.get("sink") else ""): outcome(e)
                                for e in result["modes"]})
            for mode in per_run[0]:
                outs = [r.get(mode) for r in per_run]
                rows.append({"scenario": sc.name, "ablation": ablation, "mode": mode,
                             "identical": all(o == outs[0] for o in outs), "outcomes": outs})
    same = sum(1 for r in rows if r["identical"])
    return {"runs": runs, "compared": len(rows), "identical": same,
            "fraction": round(same / len(rows), 3) if rows else None, "rows": rows}
