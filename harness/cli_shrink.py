"""``testbed shrink RUN_DIR``: a broken run's minimal fault schedule (harness.shrink).

Exit codes: 0 shrunk (``RUN_DIR/shrunk-scenario.json`` written), 1 the original
failure did not reproduce, 2 usage (RUN_DIR not broken, missing files).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import click
from rich.table import Table

from harness.checker import InputError, validate
from harness.cli_common import EXIT_BROKEN, EXIT_HELD, console, fail, run_async
from harness.progress import progress_display
from harness.shrink import Candidate, Shrinker, Target, label_of


def parse_budget(ctx, param, value: str) -> float:
    """"5m", "90s", "1h", "120" (seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", value or "")
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"expected a duration like 90s, 5m or 1h, got {value!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


budget_option = click.option("--budget", default="5m", show_default=True, callback=parse_budget,
                             help="Stop the search after this long (s, m or h) and keep the best so far.")
jobs_option = click.option("--jobs", type=click.IntRange(min=1, max=8), default=1, show_default=True,
                           help="Candidates replayed at once, each a fresh cluster (1 on a 2-core machine).")


def load_broken_run(run_dir: Path) -> tuple[dict, dict]:
    """(result, schedule) of a broken campaign run; exits 2 with one line otherwise."""
    if not (run_dir / "result.json").exists():
        fail(f"{run_dir} has no result.json: not a campaign run directory")
    try:
        result = validate.result_file(run_dir / "result.json")
        schedule = validate.schedule_file(run_dir / "schedule.json")
    except InputError as e:
        fail(str(e))
    if not any(m.get("verdict") == "broken" for m in result["modes"]):
        fail(f"{run_dir}: no mode is broken (verdicts: "
             + ", ".join(f"{label_of(m)} {m.get('verdict')}" for m in result["modes"]) + "): nothing to shrink")
    if not isinstance(result.get("config"), dict):
        fail(f"{run_dir / 'result.json'} has no config: cannot replay it")
    return result, schedule


async def shrink_run(run_dir: Path, result: dict, schedule: dict, *, budget_s: float, jobs: int,
                     progress) -> tuple[Shrinker, Candidate, bool, bool]:
    """Search; returns (shrinker, best candidate, reproduced, 1-minimal)."""
    target = Target.of(result)
    base = dict(result["config"])
    drain = float(base.pop("drain_timeout_s", 60.0))
    sh = Shrinker(run_dir=run_dir, base=base, schedule=schedule, target=target, drain_timeout_s=drain,
                  jobs=jobs, deadline=time.monotonic() + budget_s, progress=progress)
    start = Candidate(labels=list(target.families), events=int(schedule.get("events") or base["events"]),
                      steps=list(schedule.get("steps", [])))
    best, reproduced, minimal = await sh.run(start)
    return sh, best, reproduced, minimal


def scenario_for(sh: Shrinker, best: Candidate, minimal: bool) -> dict:
    """The shrunk schedule in the catalog's format (harness/scenarios/__init__.py)."""
    b = sh.base
    config = {"events": best.events, "seed": int(b.get("seed", 1)), "batch_size": int(b.get("batch_size", 100)),
              "rate": b.get("rate", 0.0), "drain_timeout_s": sh.drain_timeout_s}
    for k in ("extra_args", "storage"):
        if b.get(k) and b.get(k) != "direct":
            config[k] = b[k]
    if b.get("disabled"):
        config["disabled"] = list(b["disabled"])
    final = {label_of(m): m for m in sh.results.get(best.key(), {}).get("modes", [])}
    expect = {}
    for label in best.labels:
        seen = set(final.get(label, {}).get("anomalies") or {})
        family = sorted(sh.target.families.get(label, set()) & seen)
        expect[label] = {"verdict": "broken"} | ({"min": {family[0]: 1}} if family else {})
    name = f"shrunk-{sh.run_dir.resolve().name}"
    disabled = f" with {', '.join(b['disabled'])} disabled" if b.get("disabled") else ""
    return {"name": name, "title": f"Shrunk from {sh.run_dir}{disabled}: "
                                   + ", ".join(f"{l} broken ({', '.join(sorted(sh.target.families[l]))})"
                                               for l in best.labels),
            "incident": f"testbed shrink: {len(best.steps)} of {len(sh.schedule.get('steps', []))} fault steps, "
                        f"{best.events} events, {sh.runs} replays; "
                        + ("1-minimal (removing any one step makes it hold)" if minimal else
                           "NOT 1-minimal (the budget ran out first)"),
            "source": f"testbed shrink {sh.run_dir}", "config": config,
            "steps": [dict(s, must_fire=True) for s in best.steps], "expect": expect}


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@budget_option
@jobs_option
@click.option("--quiet", "-q", is_flag=True)
def shrink(run_dir: Path, budget: float, jobs: int, quiet: bool) -> None:
    """Shrink a broken run to a minimal fault schedule that still breaks the same
    promise with the same anomaly family (harness/shrink.py: fewer modes, ddmin
    over the steps, smaller Nth hits and counts, fewer events).

    Each candidate is a fresh campaign under RUN_DIR/shrink/; a candidate that
    does not break is replayed once more before it is rejected (timed steps can
    be flaky). Writes RUN_DIR/shrunk-scenario.json (the scenario catalog's format).
    Exit 0 shrunk; 1 the original failure did not reproduce; 2 usage.
    """
    run_dir = run_dir.absolute()
    if not run_dir.is_dir():
        fail(f"{run_dir}: not a directory")
    result, schedule = load_broken_run(run_dir)
    holder: dict = {}

    async def main() -> int:
        with progress_display(quiet, unit="replays") as progress:
            holder["r"] = await shrink_run(run_dir, result, schedule, budget_s=budget, jobs=jobs,
                                           progress=progress)
        return 0

    t0 = time.monotonic()
    if run_async(main) in (130, 143):
        sys.exit(130)
    sh, best, reproduced, minimal = holder["r"]
    if not reproduced:
        console.print(f"[bold red]could not reproduce[/] the original failure of {run_dir} "
                      f"({sh.runs} replays, see {run_dir / 'shrink'})")
        sys.exit(EXIT_BROKEN)
    sc = scenario_for(sh, best, minimal)
    out = run_dir / "shrunk-scenario.json"
    out.write_text(json.dumps(sc, indent=1) + "\n")
    print_shrunk(sc, minimal, sh.runs, time.monotonic() - t0, len(schedule.get("steps", [])))
    console.print(f"scenario: {out}")
    console.print(f"replay it: ./run.sh scenario run {out}", soft_wrap=True)
    sys.exit(EXIT_HELD)


def print_shrunk(sc: dict, minimal: bool, runs: int, elapsed_s: float, original_steps: int) -> None:
    t = Table(title=f"minimal schedule: {len(sc['steps'])} of {original_steps} steps, "
                    f"{sc['config']['events']} events, {', '.join(sc['expect'])}")
    t.add_column("#", justify="right")
    t.add_column("step", overflow="fold")
    for i, s in enumerate(sc["steps"]):
        t.add_row(str(i), json.dumps(s))
    if not sc["steps"]:
        t.add_row("-", "no fault step: the run breaks without any fault")
    console.print(t)
    console.print(("[bold green]1-minimal[/]: removing any one step makes the promise hold" if minimal else
                   "[yellow]not proven 1-minimal[/]: the budget ran out") + f" ({runs} replays, {elapsed_s:.0f} s)")
