"""Measure explore's time-to-detect for every ablation (the table in docs/scenarios.md).

    python -m harness.explore_table [--samples 3] [--budget 60] [--out DIR]

For each ablation (harness/ablations.py): ``samples`` explore searches with
``--no-shrink``, each from its own seed start (1, 101, 201, ...), each limited to
``budget`` seconds, on the mode labels the scenario catalog expects it to break
(harness/scenarios/catalog, "ablations"). Prints a markdown table: samples
detected, median time-to-detect of those, trials per find. Times are wall
clock on the machine as loaded when measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from harness.ablations import ABLATIONS
from harness.scenarios import catalog


def labels_for(ablation: str) -> list[str]:
    labels: set[str] = set()
    for sc in catalog().values():
        for label, exp in sc.ablations.get(ablation, {}).items():
            v = exp.get("verdict")
            if "broken" in (v if isinstance(v, list) else [v]):
                labels.add(label)
    return sorted(labels)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("runs/explore-table"))
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    rows = []
    for name in args.only or list(ABLATIONS):
        labels = labels_for(name)
        finds = []
        for k in range(args.samples):
            out = args.out / name / f"sample-{k}"
            cmd = [sys.executable, "-m", "harness.cli", "explore", "--disable", name, "--no-shrink", "-q",
                   "--budget", f"{args.budget}s", "--seed-start", str(1 + 100 * k), "--out", str(out)]
            for label in labels:
                cmd += ["--mode", label]
            r = subprocess.run(cmd, capture_output=True, text=True)
            found = next(out.glob("*-explore/explore.json"), None)
            if found is None:  # the search itself failed: say so, go on
                print(name, k, "error:", (r.stderr or r.stdout).strip()[-200:], flush=True)
                continue
            summary = json.loads(found.read_text())
            finds.append(summary["found"])
            print(name, k, summary["found"] and summary["found"]["time_to_detect_s"], flush=True)
        got = [f for f in finds if f]
        med = f"{statistics.median(f['time_to_detect_s'] for f in got):.0f} s" if got else \
            f"not detected in {args.budget} s"
        trials = ", ".join(str(f["trials"]) for f in got) or "-"
        faults = "; ".join("+".join(f["faults"]) for f in got) or "-"
        rows.append(f"| {name} | {', '.join(labels)} | {len(got)}/{args.samples} | {med} | {trials} | {faults} |")
    print("| ablation | modes run | detected | median time-to-detect | trials per find | fault mix of each find |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
