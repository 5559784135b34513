"""``testbed failpoints``, ``testbed scenario list|run`` and ``testbed sweep``.

Exit codes: 0 every mode as expected (sweep: every cell held), 1 a mismatch
(sweep: a cell not held), 2 usage or environment error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from harness import scenarios as scenarios_mod
from harness.ablations import ABLATIONS
from harness.cli_common import (EXIT_BROKEN, EXIT_HELD, console, exit_if_interrupted, fail, nats_url_option,
                                 resolve_nats_url, resolve_storage, run_async, storage_option)
from harness.cli_external import external_nodes, external_options
from harness.group_cluster import processors_option
from harness.process import NodeStartError
from harness.runs import RunDirError, new_run_dir
from harness.storage_watch import StorageFailure, storage_guard
from nodes.common.failpoints import ACTIONS, REGISTRY


@click.command()
def failpoints() -> None:
    """List every failpoint with a one-line description.

    \b
    Arm one at run time:  NodeControl.ArmFailpoint on the node (harness: a
      {"f": "failpoint", ...} schedule step), or at start:
      python -m nodes.<node> ... --failpoint NAME=ACTION[(MS)][@N][xCOUNT]
    """
    t = Table(title=f"failpoints (actions: {', '.join(ACTIONS)})", show_lines=False)
    t.add_column("name", no_wrap=True)
    t.add_column("where")
    for name, desc in REGISTRY.items():
        t.add_row(name, desc)
    console.print(t)


@click.group()
def scenario() -> None:
    """The scenario catalog: real incidents as seeded fault schedules with expected verdicts."""


@scenario.command("list")
def scenario_list() -> None:
    """Show the catalog: name, incident, modes expected, ablations it catches."""
    try:
        cat = scenarios_mod.catalog()
    except scenarios_mod.ScenarioError as e:
        fail(str(e))
    t = Table(title=f"scenarios ({len(cat)}) in {scenarios_mod.CATALOG_DIR}", show_lines=True)
    for col in ("name", "title / incident", "expected", "ablations caught"):
        t.add_column(col, overflow="fold")
    for sc in cat.values():
        exp = "\n".join(f"{label}: {_verdicts(e)}" for label, e in sc.expect.items())
        abl = "\n".join(f"{a}: " + ", ".join(f"{l} {_verdicts(e)}" for l, e in table.items())
                        for a, table in sc.ablations.items())
        t.add_row(sc.name, f"[bold]{sc.title}[/]\n{sc.incident}", exp, abl or "-")
    console.print(t)


def _verdicts(exp: dict) -> str:
    v = exp.get("verdict")
    return "/".join(v) if isinstance(v, list) else str(v)


@scenario.command("run")
@click.argument("name")
@click.option("--mode", "modes", multiple=True,
              type=click.Choice(["at-most-once", "at-least-once", "exactly-once"] + list(scenarios_mod.MODE_LABELS[2:])),
              help="Run only these modes (repeatable; default: every mode the scenario has an expectation for).")
@click.option("--disable", "ablation", type=click.Choice(list(ABLATIONS)), default=None,
              help="Run with this mechanism switched off; compares with the scenario's expectation for it.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default ./runs).")
@click.option("--quiet", "-q", is_flag=True)
@storage_option
@external_options
@click.option("--broker", type=click.Choice(["builtin", "nats", "mosquitto"]), default=None,
              help="Override the scenario's broker (its config's \"broker\", default builtin).")
@click.option("--nats-sync", type=click.Choice(["default", "always"]), default=None,
              help="Override the scenario's JetStream sync_interval (its config's \"nats_sync\").")
@nats_url_option
@processors_option(default=None)
@click.option("--mqtt-subscribe-qos", type=click.Choice(["0", "1", "2"]), default=None,
              help="Override the processor's MQTT subscription QoS (its config's \"mqtt_subscribe_qos\").")
@click.option("--mqtt-autosave", default=None, metavar="default|always|SECONDS",
              help="Override the scenario's mosquitto autosave (its config's \"mqtt_autosave\").")
def scenario_run(name: str, modes: tuple[str, ...], ablation: str | None, out: Path | None, quiet: bool,
                 storage: str | None, processor_cmd: str | None, sink_cmd: str | None,
                 broker: str | None, nats_sync: str | None, nats_url: str | None, processors: int | None,
                 mqtt_autosave: str | None, mqtt_subscribe_qos: str | None) -> None:
    """Run scenario NAME (a catalog name, its id such as s01, or a .json file) and compare verdicts
    with its expectations.

    With --processor-cmd / --sink-cmd the user's node runs in place of the built-in one:
    a failpoint step aimed at it needs its NodeControl (else the step is recorded as
    not applied, and a must_fire step makes the mode NOT as expected)."""
    external = external_nodes(processor_cmd, sink_cmd, [ablation] if ablation else [])
    from harness.cli_campaign import print_result, progress_display
    from harness.scenarios.runner import run_scenario

    try:
        sc = scenarios_mod.get(name)
        sc.expectations(ablation)
        from harness.scenarios.runner import select_labels
        select_labels(sc, ablation, list(modes) or None)
    except scenarios_mod.ScenarioError as e:
        fail(str(e))
    overrides = {k: v for k, v in (("broker", broker), ("nats_sync", nats_sync), ("processors", processors),
                                   ("mqtt_autosave", mqtt_autosave),
                                   ("mqtt_subscribe_qos", None if mqtt_subscribe_qos is None
                                    else int(mqtt_subscribe_qos))) if v is not None}
    if overrides:
        sc.config = {**sc.config, **overrides}
    from harness.group_cluster import check_processors
    if problem := check_processors(int(sc.config.get("processors", 1)), external=external,
                                   broker="nats" if nats_url else sc.config.get("broker", "builtin")):
        fail(problem)
    from harness.nemesis.group import schedule_problem
    if problem := schedule_problem(sc.steps, int(sc.config.get("processors", 1)),
                                   "nats" if nats_url else sc.config.get("broker", "builtin"),
                                   int(sc.config.get("events", 1000)), int(sc.config.get("batch_size", 100))):
        fail(f"{sc.name}: {problem}")
    from harness.cli_common import check_broker
    sc.config["mqtt_autosave"] = check_broker(sc.config.get("broker", "builtin"),
                                              str(sc.config.get("mqtt_autosave", "default")))
    storage = resolve_storage(storage, sc.schedule(), default=sc.config.get("storage", "direct"))
    if nats_url:   # the user's cluster: refused if a step needs its servers (exit 2)
        sc.config = {**sc.config, "broker": "nats", "nats_url": resolve_nats_url(nats_url, sc.schedule(), storage)}
    try:
        run_dir = new_run_dir(out, label=sc.name + (f"-no-{ablation}" if ablation else ""))
    except RunDirError as e:
        fail(str(e))
    from harness import schedule as schedule_mod
    schedule_mod.save(sc.schedule(), run_dir / "schedule.json")
    holder: dict = {}

    async def main() -> int:
        with progress_display(quiet) as progress:
            try:
                async with storage_guard():  # a node's ENOSPC / EIO ends the run (one line, exit 2)
                    holder["result"] = await run_scenario(sc, run_dir, modes=list(modes) or None,
                                                          ablation=ablation, progress=progress,
                                                          storage=storage, external=external)
            except NodeStartError as e:
                fail(f"a node did not start: {e} (run data in {run_dir})")
            except StorageFailure as e:
                fail(f"{e} (partial run in {run_dir})")
        return 0

    exit_if_interrupted(run_async(main), run_dir)
    result = holder["result"]
    print_result(result, run_dir)
    console.print(f"[bold]{sc.name}[/]" + (f" with {ablation} disabled" if ablation else "") + ": " + sc.title)
    for e in result["modes"]:
        label = f"{e['mode']}/{e['sink']}" if e.get("sink") else e["mode"]
        fired = ", ".join(f"{k} x{v}" for k, v in e["failpoints_fired"].items()) or "none"
        if e["as_expected"]:
            steps = e.get("steps_fired", [])
            hit = sum(1 for r in steps if r["fired"])
            console.print(f"  [green]as expected[/] {label}: {e['verdict']} (steps fired: {hit}/{len(steps)}; "
                          f"failpoints fired: {fired})")
        else:
            console.print(f"  [red]NOT as expected[/] {label}: " + "; ".join(e["mismatches"]))
    sys.exit(EXIT_HELD if result["as_expected"] else EXIT_BROKEN)


@click.command()
@click.option("--mode", type=click.Choice(["exactly-once"]), default="exactly-once", show_default=True,
              help="The mode whose promise every crash point must keep.")
@click.option("--sink", type=click.Choice(["both", "idempotent", "transactional"]), default="both",
              show_default=True, help="exactly-once sink strategies to sweep.")
@click.option("--events", type=int, default=1500, show_default=True, help="Orders per run.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--failpoint", "points", multiple=True, type=click.Choice(list(REGISTRY)),
              help="Sweep only these failpoints (repeatable; default: all the sink strategy reaches).")
@click.option("--hits", type=click.Choice(["all", "first", "middle", "late"]), default="all", show_default=True,
              help="Which hits to crash at: the 1st, a middle one, one three quarters in (all = the three).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--quiet", "-q", is_flag=True)
@external_options
def sweep(mode: str, sink: str, events: int, seed: int, points: tuple[str, ...], hits: str,
          out: Path | None, quiet: bool, processor_cmd: str | None, sink_cmd: str | None) -> None:
    """Crash at every failpoint in turn (1st, middle and a late hit), recover, audit;
    print a failpoint x hit table of verdicts. Exit 0 if every cell is held.

    With --processor-cmd / --sink-cmd the user's node runs in place of the built-in
    one and the sweep crashes the built-in nodes' failpoints around it (the broker's,
    and the sink's or the processor's that is still built in); the replaced node's own
    failpoints are not swept (they live in the built-in code), and naming one with
    --failpoint is an error."""
    from harness.cli_campaign import progress_display
    from harness.sweep import SWEEP_POINTS, WHICH, run_sweep

    if events <= 0:
        fail("--events must be > 0")
    external = external_nodes(processor_cmd, sink_cmd)
    for p in points:
        if p.split(".", 1)[0] in external:
            node = p.split(".", 1)[0]
            fail(f"failpoint {p} is in the built-in {node}, which --{node}-cmd replaces: an external "
                 f"node's failpoints are not swept (it still gets every other node's crashes)")
    sinks = ["idempotent", "transactional"] if sink == "both" else [sink]
    which = WHICH if hits == "all" else (hits,)
    try:
        run_dir = new_run_dir(out, label="sweep")
    except RunDirError as e:
        fail(str(e))
    results: list[dict] = []

    async def main() -> int:
        with progress_display(quiet) as progress:
            for s in sinks:
                sel = tuple(p for p in SWEEP_POINTS[s] if (not points or p in points)
                            and p.split(".", 1)[0] not in external)
                skipped = [p for p in SWEEP_POINTS[s] if p.split(".", 1)[0] in external]
                if skipped and not points:
                    console.print(f"{s}: not swept, in the built-in code that --"
                                  f"{'/--'.join(n + '-cmd' for n in sorted(external))} replaces: "
                                  + ", ".join(skipped), soft_wrap=True)
                try:
                    results.append(await run_sweep(run_dir / s, sink=s, events=events, seed=seed,
                                                   points=sel, which=which, progress=progress,
                                                   external=external))
                except NodeStartError as e:
                    fail(f"a node did not start: {e} (run data in {run_dir})")
                except RuntimeError as e:
                    fail(str(e))
        return 0

    exit_if_interrupted(run_async(main), run_dir)
    ok = True
    for r in results:
        t = Table(title=f"crash-point sweep: {mode}/{r['sink']}, {r['events']} events, seed {r['seed']}")
        t.add_column("failpoint", no_wrap=True)
        t.add_column("hits (calibration)", justify="right")
        for w in which:
            t.add_column(f"{w} hit")
        for point, total in r["hits"].items():
            cells = {c["which"]: c for c in r["cells"] if c["failpoint"] == point}
            row = []
            for w in which:
                c = cells.get(w)
                if c is None:
                    row.append("[dim]not reached[/]" if total == 0 else "[dim]-[/]")
                    continue
                style = "green" if c["verdict"] == "held" else "red"
                row.append(f"[{style}]{c['verdict']}[/] @{c['nth']}")
                ok = ok and c["verdict"] == "held"
            t.add_row(point, str(total), *row)
        console.print(t)
        if r.get("unreachable"):
            ok = False
            console.print(f"[bold red]unreachable[/] ({r['sink']}): the calibration run never reached "
                          + ", ".join(r["unreachable"]), soft_wrap=True)
    console.print(f"result: {run_dir}/<sink>/sweep.json")
    console.print("[bold green]every crash point held[/]" if ok else
                  "[bold red]a crash point broke the promise, did not fire, or was not reached[/]")
    sys.exit(EXIT_HELD if ok else EXIT_BROKEN)


@scenario.command("fidelity")
@click.argument("names", nargs=-1)
@click.option("--runs", type=click.IntRange(min=2), default=2, show_default=True,
              help="Runs per scenario with the same seed.")
@click.option("--ablations", is_flag=True, help="Also replay each scenario's ablation variants.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--quiet", "-q", is_flag=True)
def scenario_fidelity(names: tuple[str, ...], runs: int, ablations: bool, out: Path | None,
                      quiet: bool) -> None:
    """Replay fidelity: run each scenario (default: the whole catalog) RUNS times with
    the same seed; print the fraction of (scenario, mode) outcomes (verdict and
    anomaly counts) that were identical. Exit 0 if all were, else 1."""
    import json

    from harness.cli_campaign import progress_display
    from harness.scenarios.fidelity import measure

    try:
        scs = [scenarios_mod.get(n) for n in names] if names else list(scenarios_mod.catalog().values())
    except scenarios_mod.ScenarioError as e:
        fail(str(e))
    try:
        run_dir = new_run_dir(out, label="fidelity")
    except RunDirError as e:
        fail(str(e))
    holder: dict = {}

    async def main() -> int:
        with progress_display(quiet) as progress:
            try:
                holder["r"] = await measure(scs, run_dir, runs=runs, ablations=ablations,
                                               progress=progress)
            except NodeStartError as e:
                fail(f"a node did not start: {e} (run data in {run_dir})")
        return 0

    exit_if_interrupted(run_async(main), run_dir)
    r = holder["r"]
    (run_dir / "fidelity.json").write_text(json.dumps(r, indent=1, allow_nan=False) + "\n")
    t = Table(title=f"replay fidelity: {runs} runs per scenario, same seed")
    for col in ("scenario", "mode", "identical", "outcomes (verdict, anomaly counts)"):
        t.add_column(col, overflow="fold")
    for row in r["rows"]:
        outs = " | ".join(f"{o['verdict']} {o['anomalies'] or ''}" if o else "-" for o in row["outcomes"])
        name = row["scenario"] + (f" --disable {row['ablation']}" if row.get("ablation") else "")
        t.add_row(name, row["mode"], "[green]yes[/]" if row["identical"] else "[red]no[/]", outs)
    console.print(t)
    console.print(f"identical outcomes: {r['identical']}/{r['compared']} = {r['fraction']:.0%}  "
                  f"(result: {run_dir / 'fidelity.json'})")
    sys.exit(EXIT_HELD if r["identical"] == r["compared"] else EXIT_BROKEN)
