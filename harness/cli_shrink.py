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
from harness.cli_common import (ABLATION_HELP, EXIT_BROKEN, EXIT_HELD, console, exit_if_interrupted, fail,
                                 parse_disabled, run_async)
from harness.progress import progress_display
from harness.shrink import Candidate, Shrinker, Target, confirm_line, label_of


def parse_budget(ctx, param, value: str) -> float:
    """"5m", "90s", "1h", "120" (seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", value or "")
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"expected a duration like 90s, 5m or 1h, got {value!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


budget_option = click.option("--budget", default="5m", show_default=True, callback=parse_budget,
                             help="Stop the search after this long (s, m or h) and keep the best so far.")
confirm_option = click.option(
    "--confirm", "confirm", type=click.IntRange(min=0, max=20), default=2, show_default=True,
    help="Replay the final candidate K more times before writing it (in parallel per --jobs); if one "
         "is not broken the same way, walk back to earlier accepted candidates, to the original schedule. 0: off.")
jobs_option = click.option("--jobs", type=click.IntRange(min=1, max=8), default=1, show_default=True,
                           help="Candidates replayed at once, each a fresh cluster (1 on a 2-core machine).")


def _explore_hint(run_dir: Path) -> str:
    """For an explore run's directory: where its broken trial (a campaign run) is."""
    import json
    try:
        found = json.loads((run_dir / "explore.json").read_text()).get("found") or {}
    except (OSError, ValueError, AttributeError):
        return ""
    if isinstance(found, dict) and isinstance(found.get("dir"), str):
        return f" (an explore run: its broken trial is {found['dir']})"
    return " (an explore run that found nothing broken)"


def load_broken_run(run_dir: Path) -> tuple[dict, dict]:
    """(result, schedule) of a broken campaign run; exits 2 with one line otherwise."""
    if not (run_dir / "result.json").exists():
        hint = _explore_hint(run_dir)
        fail(f"{run_dir} has no result.json: not a campaign run directory{hint}")
    try:
        result = validate.result_file(run_dir / "result.json")
        schedule = validate.schedule_file(run_dir / "schedule.json")
    except InputError as e:
        fail(str(e))
    if not result["modes"]:   # said "no mode is broken (verdicts: )"
        fail(f"{run_dir}: no mode finished (the run was interrupted before its first mode ended): nothing to shrink")
    if not any(m.get("verdict") == "broken" for m in result["modes"]):
        fail(f"{run_dir}: no mode is broken (verdicts: "
             + ", ".join(f"{label_of(m)} {m.get('verdict')}" for m in result["modes"]) + "): nothing to shrink")
    if not isinstance(result.get("config"), dict):
        fail(f"{run_dir / 'result.json'} has no config: cannot replay it")
    return result, schedule


async def shrink_run(run_dir: Path, result: dict, schedule: dict, *, budget_s: float, jobs: int,
                     progress, confirm: int = 2) -> tuple[Shrinker, Candidate, bool, bool]:
    """Search, then confirm (``confirm`` replays, 0: none; harness.shrink.Shrinker.confirm);
    returns (shrinker, candidate to write, reproduced, 1-minimal). When no candidate
    confirms, the candidate is the original schedule (broken modes only), not 1-minimal,
    and ``shrinker.confirmed`` is False."""
    target = Target.of(result)
    base = dict(result["config"])
    drain = float(base.pop("drain_timeout_s", 60.0))
    sh = Shrinker(run_dir=run_dir, base=base, schedule=schedule, target=target, drain_timeout_s=drain,
                  jobs=jobs, deadline=time.monotonic() + budget_s, progress=progress)
    start = Candidate(labels=list(target.families), events=int(schedule.get("events") or base["events"]),
                      steps=list(schedule.get("steps", [])))
    best, reproduced, minimal = await sh.run(start)
    if reproduced and confirm > 0:
        kept = await sh.confirm(best, confirm)
        if kept is None:
            best, minimal = start, False
        elif kept.key() != best.key():
            best, minimal = kept, False
    return sh, best, reproduced, minimal


def not_minimal_why(sh: Shrinker) -> str:
    if any(not r["kept"] for r in getattr(sh, "confirmations", [])):
        return "a smaller candidate did not confirm"
    return "the budget ran out first"


def confirm_note(sh: Shrinker) -> str:
    """The scenario's confirmation note: "" when none was asked."""
    if getattr(sh, "confirmed", None) is None:
        return ""
    if not sh.confirmed:
        return ("; NO candidate confirmed (" + ", ".join(f"{r['candidate']} {r['confirmed']}/{r['replays']}"
                                                         for r in sh.confirmations)
                + "): this is the original schedule, it broke once and may not reproduce")
    kept = sh.confirmations[-1]
    dropped = [r for r in sh.confirmations if not r["kept"]]
    return (f"; {kept['candidate']} confirmed {kept['confirmed']}/{kept['replays']}"
            + (" (not kept: " + ", ".join(f"{r['candidate']} {r['confirmed']}/{r['replays']}" for r in dropped) + ")"
               if dropped else ""))


def write_shrunk(sh: Shrinker, best: Candidate, minimal: bool, paths: list[Path]) -> dict:
    """Write the scenario to each of ``paths`` and the shrink summary to
    ``RUN_DIR/shrink/summary.json`` ({"replays", "candidate", "minimal", "confirmed",
    "confirmations": Shrinker.confirmations}); returns the scenario."""
    sc = scenario_for(sh, best, minimal)
    for p in paths:
        p.write_text(json.dumps(sc, indent=1) + "\n")
    summary = {"replays": sh.runs, "candidate": sh.names.get(best.key()), "steps": len(best.steps),
               "events": best.events, "minimal": minimal, "confirmed": sh.confirmed,
               "confirmations": sh.confirmations}
    (sh.run_dir / "shrink").mkdir(parents=True, exist_ok=True)
    (sh.run_dir / "shrink" / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return sc


def print_confirmations(sh: Shrinker) -> None:
    for rec in sh.confirmations:
        console.print(("[green]" if rec["kept"] else "[yellow]") + confirm_line(rec) + "[/]", soft_wrap=True)
    if sh.confirmed is False:
        console.print("[bold red]no candidate confirmed[/]: writing the original schedule (it broke once, "
                      "it may not reproduce)", soft_wrap=True)


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
    if b.get("fetch_group"):
        config["fetch_group"] = int(b["fetch_group"])
    if b.get("sequential_sends"):
        config["sequential_sends"] = True
    # the system under test: without these a shrunk NATS, MQTT or consumer-group run replayed
    # on the builtin broker with one processor (and a zombie step paused the only one)
    for k, default in (("broker", "builtin"), ("nats_sync", "default"), ("nats_url", None), ("processors", 1),
                       ("session_timeout_ms", 2000), ("mqtt_autosave", "default"), ("mqtt_subscribe_qos", None)):
        if b.get(k, default) != default:
            config[k] = b[k]
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
                           f"NOT 1-minimal ({not_minimal_why(sh)})") + confirm_note(sh),
            "source": f"testbed shrink {sh.run_dir}", "config": config,
            "steps": [dict(s, must_fire=True) for s in best.steps], "expect": expect}


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@budget_option
@jobs_option
@confirm_option
@click.option("--quiet", "-q", is_flag=True)
def shrink(run_dir: Path, budget: float, jobs: int, confirm: int, quiet: bool) -> None:
    """Shrink a broken run to a minimal fault schedule that still breaks the same
    promise with the same anomaly family (harness/shrink.py: fewer modes, ddmin
    over the steps, smaller Nth hits and counts, fewer events).

    Each candidate is a fresh campaign under RUN_DIR/shrink/; a candidate that
    does not break is replayed once more before it is rejected (timed steps can
    be flaky). Before writing, the final candidate is replayed --confirm K more
    times (after the budget); if one is not broken the same way (same promise,
    same anomaly family), the earlier accepted candidates are
    tried back to the original schedule, and the smallest whose K replays all broke
    is written (RUN_DIR/shrink/summary.json records each one's count). If none
    confirms, the original schedule is written with a note and the exit is 1.
    Writes RUN_DIR/shrunk-scenario.json (the scenario catalog's format).
    Replay it with `./run.sh scenario run RUN_DIR/shrunk-scenario.json`; edited by hand,
    its config and zombie steps are checked first (an unknown key is refused, naming the
    close one; docs/scenarios.md). Exit 0 shrunk; 1 the original failure did not
    reproduce or nothing confirmed; 2 usage.
    """
    run_dir = run_dir.absolute()
    if not run_dir.is_dir():
        fail(f"{run_dir}: not a directory")
    result, schedule = load_broken_run(run_dir)
    holder: dict = {}

    async def main() -> int:
        with progress_display(quiet, unit="replays") as progress:
            holder["r"] = await shrink_run(run_dir, result, schedule, budget_s=budget, jobs=jobs,
                                           progress=progress, confirm=confirm)
        return 0

    t0 = time.monotonic()
    exit_if_interrupted(run_async(main), run_dir)
    sh, best, reproduced, minimal = holder["r"]
    if not reproduced:
        console.print(f"[bold red]could not reproduce[/] the original failure of {run_dir} "
                      f"({sh.runs} replays, see {run_dir / 'shrink'})")
        sys.exit(EXIT_BROKEN)
    out = run_dir / "shrunk-scenario.json"
    sc = write_shrunk(sh, best, minimal, [out])
    print_shrunk(sc, minimal, sh.runs, time.monotonic() - t0, len(schedule.get("steps", [])), not_minimal_why(sh))
    print_confirmations(sh)
    console.print(f"scenario: {out}")
    console.print(f"replay it: ./run.sh scenario run {out}", soft_wrap=True)
    sys.exit(EXIT_BROKEN if sh.confirmed is False else EXIT_HELD)


def print_shrunk(sc: dict, minimal: bool, runs: int, elapsed_s: float, original_steps: int,
                 why: str = "the budget ran out") -> None:
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
                   f"[yellow]not proven 1-minimal[/]: {why}") + f" ({runs} replays"
                  + (f", {elapsed_s:.0f} s)" if elapsed_s else ")"))


EXPLORE_SESSION_TIMEOUT_MS = 2000
"""A group member's session timeout in explore's consumer-group trials (ms). Not s18's 1000:
with a third member added (add-processor) on a loaded 2-core machine, members did not rejoin
within 1 s of a rebalance, were expired, rejoined and restarted the rebalance, and the group
never settled (60 expirations in a 600-order trial, the drain timed out)."""

GROUP_RATE, GROUP_BATCH_SIZE = 200.0, 20
"""A consumer-group trial's workload rate (orders/s) and producer batch (as scenario s18): at
1000 orders/s a 600-order workload was over within a second, before a zombie step (position
0) had armed its member's failpoint; at 200/s it lasts 3 s, several checkpoints per member."""

MODE_LABELS = ("at-most-once", "at-least-once", "exactly-once/idempotent", "exactly-once/transactional")


@click.command()
@click.option(
    "--budget", default="10m", show_default=True, callback=parse_budget,
    help="Stop searching after this long (s, m or h); a trial under way finishes.")
@click.option("--disable", multiple=True, callback=parse_disabled, metavar="ABLATION", help=ABLATION_HELP)
@click.option("--mode", "modes", multiple=True, type=click.Choice(["all", "exactly-once", *MODE_LABELS]),
              help="Modes each trial runs (repeatable; 'exactly-once' = both sinks) [default: all].")
@click.option("--seed-start", type=click.IntRange(min=0), default=1, show_default=True,
              help="First seed; trial k uses seed-start + k.")
@click.option("--events", type=click.IntRange(min=100, max=100_000), default=600, show_default=True,
              help="Orders per trial.")
@jobs_option
@click.option("--shrink-budget", default="5m", show_default=True, callback=parse_budget,
              help="Budget of the shrink that follows a find.")
@confirm_option
@click.option("--no-shrink", is_flag=True, help="Stop at the find (time-to-detect only).")
@click.option("--processors", type=click.IntRange(1, 16), default=None,
              help="Processors in one consumer group per trial; 2+ adds the group faults (zombie, "
                   "add-processor, kill-processor-2) to the mixes. Default: 2 with --disable "
                   "generation-fencing, else 1.")
@click.option("--storage", type=click.Choice(["direct", "lazy"]), default="direct", show_default=True,
              help="lazy: data dirs on the FUSE file system that drops unsynced writes, and power-loss "
                   "faults join the mixes (needs fuse3).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default ./runs); the search goes to OUT/<id>-explore/.")
@click.option("--quiet", "-q", is_flag=True)
def explore(budget, disable, modes, seed_start, events, jobs, shrink_budget, confirm, no_shrink, processors,
            storage, out, quiet) -> None:
    """Random seeds and fault mixes until a promise breaks, then shrink the find
    (harness/explore.py, harness/shrink.py). Prints the time-to-detect and the
    minimal scenario; writes RUN_DIR/explore.json.

    With --processors 2 or more each trial runs a consumer group and the mixes
    include its faults (zombie, add-processor, a kill of processor-2);
    --disable generation-fencing picks 2 processors unless --processors says.

    Exit 1: a promise broke (found); 0: none broke within the budget; 2: usage.
    """
    from dataclasses import asdict

    from harness.cli_campaign import DEFAULT_RATE
    from harness.cli_common import resolve_storage
    from harness.group_cluster import ablation_problem
    auto_group = processors is None and "generation-fencing" in disable
    processors = 2 if auto_group else (processors or 1)
    if problem := ablation_problem(disable, processors):   # an explicit --processors 1
        fail(problem)
    from harness.cluster import ClusterConfig
    from harness.explore import Explorer
    from harness.runs import RunDirError, new_run_dir

    labels: list[str] = []
    for m in modes or ("all",):
        picked = MODE_LABELS if m == "all" else [l for l in MODE_LABELS if l == m or l.split("/")[0] == m]
        labels += [l for l in picked if l not in labels]
    try:
        run_dir = new_run_dir(out, label="explore").absolute()
    except RunDirError as e:
        fail(str(e))
    storage = resolve_storage(storage, {"steps": []})  # lazy: exits 2 (one line) without fuse3
    group = {"processors": processors, "session_timeout_ms": EXPLORE_SESSION_TIMEOUT_MS,
             "batch_size": GROUP_BATCH_SIZE} if processors > 1 else {}
    rate = GROUP_RATE if processors > 1 else DEFAULT_RATE
    base = asdict(ClusterConfig(events=events, rate=rate, disabled=list(disable), storage=storage,
                                fetch_group=25, sequential_sends=True, **group))  # as the campaign: record-count processor steps
    if auto_group:
        console.print("explore: --disable generation-fencing acts only in a consumer group: each trial runs "
                      "2 processors (--processors 2)", soft_wrap=True)
    ex = Explorer(run_dir=run_dir, base=base, labels=labels, seed_start=seed_start, events=events,
                  jobs=jobs, budget_s=budget)
    holder: dict = {}

    async def main() -> int:
        with progress_display(quiet, unit="trials") as progress:
            ex.progress = progress
            found = holder["found"] = await ex.run()
            if found and not no_shrink:
                holder["shrink"] = await shrink_run(found.dir, found.result, json.loads(
                    (found.dir / "schedule.json").read_text()), budget_s=shrink_budget, jobs=jobs, progress=progress,
                    confirm=confirm)
        return 0

    exit_if_interrupted(run_async(main), run_dir)
    found = holder["found"]
    summary = {"disabled": list(disable), "modes": labels, "seed_start": seed_start, "events": events,
               "processors": processors,
               "budget_s": budget, "trials": [{"seed": t.seed, "faults": t.faults, "broken": t.broken,
                                               "elapsed_s": round(t.elapsed_s, 1)} for t in ex.trials],
               "found": None}
    if found is None:
        (run_dir / "explore.json").write_text(json.dumps(summary, indent=1) + "\n")
        console.print(f"[yellow]no promise broke[/] in {len(ex.trials)} trials ({budget:.0f} s budget); "
                      f"see {run_dir / 'explore.json'}")
        sys.exit(EXIT_HELD)
    summary["found"] = {"seed": found.seed, "faults": found.faults, "broken": found.broken, "dir": str(found.dir),
                        "time_to_detect_s": round(found.elapsed_s, 1), "trials": len(ex.trials)}
    console.print(f"[bold red]promise broken[/]: {', '.join(found.broken)} at seed {found.seed} "
                  f"(faults {', '.join(found.faults)}), trial {len(ex.trials)}; "
                  f"time-to-detect {found.elapsed_s:.1f} s", soft_wrap=True)
    console.print(f"run: {found.dir}")
    if "shrink" in holder:
        sh, best, reproduced, minimal = holder["shrink"]
        if reproduced:
            path = run_dir / "shrunk-scenario.json"
            sc = write_shrunk(sh, best, minimal, [path, found.dir / "shrunk-scenario.json"])
            print_shrunk(sc, minimal, sh.runs, 0.0, len(sh.schedule.get("steps", [])), not_minimal_why(sh))
            print_confirmations(sh)
            console.print(f"scenario: {path}\nreplay it: ./run.sh scenario run {path}", soft_wrap=True)
            summary["found"]["shrunk_steps"] = len(best.steps)
            summary["found"]["confirmed"] = sh.confirmed
            summary["found"]["confirmations"] = sh.confirmations
        else:
            console.print("[yellow]the find did not reproduce when shrinking[/] (a timing-dependent failure)")
    (run_dir / "explore.json").write_text(json.dumps(summary, indent=1) + "\n")
    sys.exit(EXIT_BROKEN)
