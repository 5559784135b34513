"""Detection power: how long the testbed takes to catch each ablation with its targeted scenario.

For every ablation (harness/ablations.py, a delivery mechanism switched off), the
first catalog scenario that targets it (its ``ablations`` table; builtin broker
only) is run with that ablation, in the first mode the table names, through
:func:`harness.scenarios.runner.run_scenario`: cluster start, the seeded fault
schedule, drain, the full audit and the must-fire checks, all on the clock. The
time to detect is that wall time, when the mode came out as the table expects
(a broken promise, the fault fired); ``detected`` False otherwise.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from harness.ablations import ABLATIONS
from harness.scenarios import ablation_coverage, catalog


def targets(names: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(ablation, scenario, mode label) per ablation in ``names`` (default all), in ABLATIONS'
    order: the first builtin-broker scenario that names it, the first mode it expects."""
    cat = catalog()
    cover = ablation_coverage()
    out = []
    for name in names or list(ABLATIONS):
        scs = [s for s in sorted(cover.get(name, [])) if cat[s].config.get("broker", "builtin") == "builtin"]
        if scs:
            sc = cat[scs[0]]
            out.append((name, sc.name, next(iter(sc.expectations(name)))))
    return out


async def run_detect(run_dir: Path, names: list[str] | None = None, *, keep_data: bool = False,
                     progress=lambda msg: None) -> dict:
    """Run the targeted scenario of each ablation. Returns {"rows": [{"ablation", "scenario",
    "mode", "detected", "verdict", "time_to_detect_s" (None when not detected), "elapsed_s",
    "mismatches"}], "detected", "total", "median_time_to_detect_s", "elapsed_s"}.

    Raises:
        harness.process.NodeStartError: a node did not start.
    """
    from harness.scenarios.runner import run_scenario
    cat = catalog()
    rows = []
    t_all = time.perf_counter()
    for ablation, scenario, label in targets(names):
        progress(f"detect: {ablation} with {scenario} ({label})")
        d = run_dir / f"{ablation}"
        t0 = time.perf_counter()
        result = await run_scenario(cat[scenario], d, modes=[label], ablation=ablation)
        elapsed = time.perf_counter() - t0
        entry = result["modes"][0]
        ok = bool(entry.get("as_expected"))
        rows.append({"ablation": ablation, "scenario": scenario, "mode": label, "detected": ok,
                     "verdict": entry.get("verdict"), "time_to_detect_s": round(elapsed, 2) if ok else None,
                     "elapsed_s": round(elapsed, 2), "mismatches": entry.get("mismatches", [])[:3]})
        if not keep_data:
            shutil.rmtree(d, ignore_errors=True)
    times = sorted(r["time_to_detect_s"] for r in rows if r["detected"])
    return {"rows": rows, "detected": len(times), "total": len(rows),
            "median_time_to_detect_s": times[len(times) // 2] if times else None,
            "elapsed_s": round(time.perf_counter() - t_all, 1)}
