"""``testbed campaign``, ``testbed audit`` and ``testbed replay``."""

from __future__ import annotations

import atexit
import json
import sqlite3
import sys
from pathlib import Path

import click

from nodes.common.cli_types import FiniteFloat
from harness import schedule as schedule_mod
from harness.checker import InputError, check, load_run, validate
from harness.cli_common import (broker_flag_conflict, broker_options, check_broker, resolve_nats_url, resolve_storage,
                                storage_option)
from harness.cli_common import (EXIT_BROKEN, EXIT_HELD, EXIT_USAGE, console, disable_option, err_console, events_range,
                                fail, non_negative, positive, run_async)
from harness.campaign import CampaignConfig, ModeSpec, expand_modes, run_campaign
from harness.cli_external import external_nodes, external_options
from harness.group_cluster import ablation_problem, check_processors, processors_option
from harness.cluster import ClusterConfig, DrainTimeout
from harness.process import NodeStartError
from harness.progress import progress_display  # noqa: F401  (also used by other commands)
from harness.runs import RunDirError, new_run_dir
from harness.storage_watch import StorageFailure
from harness.table import anomaly_lines, result_table
from nodes.broker.errors import CorruptLog
from nodes.broker.segment import SegmentCorruptError

DEFAULT_EVENTS = 3000
DEFAULT_RATE = 1000.0


def parse_faults(ctx, param, value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if value.strip() == "none":
        return ()
    names = tuple(filter(None, (s.strip() for s in value.split(","))))
    if not names:
        raise click.BadParameter("empty fault list; name faults, or 'none' for a run without faults")
    for n in names:
        if n not in schedule_mod.FAULT_KINDS:
            raise click.BadParameter(f"unknown fault {n!r}; choose from: {', '.join(schedule_mod.FAULT_KINDS)}")
    return names


def exit_code(result: dict) -> int:
    return EXIT_BROKEN if any(m["verdict"] == "broken" for m in result["modes"]) else EXIT_HELD


def print_result(result: dict, run_dir: Path, *, result_file: Path | None = None) -> None:
    seed = result.get("seed")
    console.print(result_table(result, title=(f"seed {seed} · " if seed is not None else "") + str(run_dir)))
    lines = anomaly_lines(result)
    if lines:
        console.print("[bold]anomalies[/] (first order ids; hop where it happened):")
        for line in lines:
            console.print(f"  {line}", soft_wrap=True)
    for m in result.get("modes", []):
        for note in m.get("notes", []):
            label = f"{m['mode']}/{m['sink']}" if m.get("sink") else m["mode"]
            console.print(f"[yellow]note[/] {label}: {note}", soft_wrap=True)
    if result_file is not None:
        console.print(f"result: {result_file}")


def print_report(run_dir: Path) -> None:
    """Write the run's report page (harness.report) and print its path; a failure
    to write it is a warning, not a change of the command's exit code."""
    try:
        from harness.report import write_report
        path = write_report(run_dir)
    except Exception as e:  # the run's verdicts stand without the page
        err_console.print(f"[yellow]warning:[/] report page not written: {type(e).__name__}: {e}")
        return
    console.print(f"report: {path}", soft_wrap=True)


async def _run(cfg: CampaignConfig, run_dir: Path, quiet: bool) -> dict:
    with progress_display(quiet, total=len(cfg.modes)) as progress:
        return await run_campaign(cfg, run_dir, progress)


def execute(cfg: CampaignConfig, run_dir: Path, quiet: bool) -> dict:
    """Run a campaign, mapping environment failures to exit code 2."""
    schedule_mod.save(cfg.schedule, run_dir / "schedule.json")
    holder: dict = {}

    async def main() -> int:
        try:
            holder["result"] = await _run(cfg, run_dir, quiet)
        except NodeStartError as e:
            fail(f"a node did not start: {e} (run data in {run_dir})")
        except DrainTimeout as e:
            fail(f"{e} (run data in {run_dir})")
        except StorageFailure as e:
            fail(f"{e} (partial run in {run_dir}, result.json complete: false)")
        except InputError as e:  # the audit of a mode found an input it cannot read (an external sink's rows)
            fail(f"cannot audit: {e} (run data in {run_dir})")
        except OSError as e:  # the harness's own writes (the runs dir's disk is full too)
            fail(f"harness: {e.strerror or e} on {e.filename or run_dir} (partial run in {run_dir})")
        return 0

    code = run_async(main)
    if code in (130, 143):
        console.print(f"{'interrupted' if code == 130 else 'terminated'}; the partial run is readable in {run_dir}",
                      soft_wrap=True, markup=False, highlight=False)
        sys.exit(code)
    return holder["result"]


@click.command()
@click.option("--mode", type=click.Choice(["all", "at-most-once", "at-least-once", "exactly-once"]),
              default="all", show_default=True, help="Which guarantee modes to run.")
@click.option("--sink", type=click.Choice(["both", "idempotent", "transactional"]), default="both",
              show_default=True, help="exactly-once sink strategies to run.")
@click.option("--events", type=int, default=None, callback=events_range,
              help=f"Orders in the workload [default: {DEFAULT_EVENTS}, or the --schedule file's].")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the workload, schedule and proxies.")
@click.option("--faults", callback=parse_faults, default=None, metavar="LIST",
              help="Comma-separated faults to schedule, or 'none' (default: a mix of kills and link faults): "
                   + ", ".join(schedule_mod.FAULT_KINDS) + ".")
@click.option("--timed-kills", is_flag=True,
              help="Fire the kills at producer positions (the old timed trigger) instead of at a "
                   "failpoint's Nth hit.")
@click.option("--fetch-group", type=click.IntRange(0, 10_000), default=25, show_default=True,
              help="Processor steps of this many records of one partition (at-most/at-least-once), so "
                   "that record counts, not timing, decide what a crash at the Nth step costs; 0 = one "
                   "Fetch per step.")
@click.option("--concurrent-sends", is_flag=True,
              help="The producer sends a batch's partitions concurrently (faster; which sends a broker "
                   "crash catches is then timing). Default: one after another.")
@click.option("--schedule", "schedule_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Use this schedule.json instead of generating one.")
@disable_option
@click.option("--rate", type=FiniteFloat(), default=DEFAULT_RATE, show_default=True, callback=non_negative,
              help="Producer rate in events/s (0 = as fast as possible).")
@click.option("--batch-size", type=int, default=100, show_default=True, callback=positive)
@click.option("--drain-timeout", type=FiniteFloat(), default=60.0, show_default=True, callback=positive,
              help="Seconds to wait for the pipeline to drain with the faults armed (the final heal "
                   "comes after the drain, or after 10 s without progress), then again after the heal.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default ./runs); the run goes to OUT/<id>/, OUT/latest points to it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@storage_option
@external_options
@broker_options
@processors_option()
def campaign(mode, sink, events, seed, faults, timed_kills, fetch_group, concurrent_sends, schedule_file, disable,
             rate, batch_size, drain_timeout, out, quiet, storage, processor_cmd, sink_cmd, broker, nats_sync,
             nats_url, processors, mqtt_autosave, mqtt_subscribe_qos) -> None:
    """Run the workload under the fault schedule in each mode, audit, print the table.

    Exit code 0: every promise held; 1: a promise was broken; 2: usage or environment error.
    """
    external = external_nodes(processor_cmd, sink_cmd, disable)
    if problem := broker_flag_conflict(broker, nats_url, nats_sync, mqtt_autosave, mqtt_subscribe_qos):
        fail(problem)
    broker = "nats" if nats_url else broker
    if problem := check_processors(processors, external=external, broker=broker) \
            or ablation_problem(disable, processors):
        fail(problem)
    mqtt_autosave = check_broker(broker, mqtt_autosave)
    if schedule_file:
        try:
            sched = validate.schedule_file(schedule_file)
        except InputError as e:
            fail(str(e))
        planned = sched.get("events")
        if events is None:
            events = int(planned or DEFAULT_EVENTS)
        elif planned and int(planned) != events:
            fail(f"{schedule_file} was made for {planned} events, not {events}: drop --events or regenerate it")
    else:
        events = events or DEFAULT_EVENTS
        default_faults = {"nats": schedule_mod.NATS_DEFAULT_FAULTS,
                          "mosquitto": schedule_mod.MQTT_DEFAULT_FAULTS}.get(broker, schedule_mod.DEFAULT_FAULTS)
        if nats_url:   # the user's cluster: link faults and the testbed's own nodes only
            default_faults = schedule_mod.NATS_EXTERNAL_DEFAULT_FAULTS
        sched = schedule_mod.generate(seed, events, default_faults if faults is None else faults,
                                      batch_size=batch_size, logical=not timed_kills)
    from harness.nemesis.group import schedule_problem
    if problem := schedule_problem(sched.get("steps", []), processors, broker, events, batch_size):
        fail(problem)
    storage = resolve_storage(storage, sched)
    nats_url = resolve_nats_url(nats_url, sched, storage)
    try:
        run_dir = new_run_dir(out)
    except RunDirError as e:
        fail(str(e))
    base = ClusterConfig(seed=seed, events=events, rate=rate, batch_size=batch_size, disabled=list(disable),
                         storage=storage, external=external, broker=broker, nats_sync=nats_sync,
                         nats_url=nats_url, mqtt_autosave=mqtt_autosave,
                         mqtt_subscribe_qos=None if mqtt_subscribe_qos is None else int(mqtt_subscribe_qos),
                         fetch_group=fetch_group if broker == "builtin" else 0,  # NATS, MQTT: their own clients
                         sequential_sends=not concurrent_sends and broker == "builtin",
                         processors=processors)
    cfg = CampaignConfig(modes=expand_modes(mode, sink), base=base, schedule=sched,
                         drain_timeout_s=drain_timeout)
    result = execute(cfg, run_dir, quiet)
    print_result(result, run_dir, result_file=run_dir / "result.json")
    print_report(run_dir)
    sys.exit(exit_code(result))


def _load_result(run_dir: Path) -> dict:
    """result.json of a campaign run, checked for the shape audit and replay need
    (harness.checker.validate.result_file); exits 2 with one line if it is not."""
    path = run_dir / "result.json"
    if not path.exists():
        from harness.cli_shrink import _explore_hint   # an explore run: where its broken trial is
        fail(f"{run_dir} has no result.json: not a campaign run directory{_explore_hint(run_dir)}")
    try:
        return validate.result_file(path)
    except InputError as e:
        fail(str(e))


AUDIT_ERRORS = (InputError, OSError, ValueError, KeyError, TypeError, sqlite3.DatabaseError,
                SegmentCorruptError, CorruptLog)


def audit_dir(d: Path) -> dict:
    """Check one cluster directory; a row for the table, with notes on what the
    audit could not see. Exits 2 (one line) on missing or unreadable inputs
    (every input goes through harness.checker.validate; the broad catch is a last
    guard so that no input can end in a traceback)."""
    if not d.is_dir():
        fail(f"cannot audit {d}: not a directory")
    try:
        data = load_run(d)
        config = validate.cluster_config(d / "cluster.json")
        sent = unsent_cut(d, config)
        if sent is not None:  # judge the orders the producer reached, not the ones never sent
            data.keep_sent(sent)
        report = check(data)
    except AUDIT_ERRORS as e:
        fail(f"cannot audit: {e}" if isinstance(e, InputError) else
             f"cannot audit {d}: {type(e).__name__}: {e}")
    j = report.to_json()
    j.update(sink=config.get("sink_strategy"),
             anomalies={n: a for n, a in j["anomalies"].items() if a["count"]},
             notes=completeness_notes(d, config) + [r for r in report.reasons if " not checked:" in r])
    return j


def unsent_cut(d: Path, config: dict) -> int | None:
    """How many orders of the workload the producer reached (its source position), when
    it stopped before the end (an interrupted ``up`` or campaign); None when it finished
    or its position is unknown. The orders after it were never sent: not lost."""
    state = d / "producer" / "producer-state.json"
    try:
        position = int(json.loads(state.read_text()).get("position", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    total = config.get("events")
    if total and not config.get("workload_file") and 0 <= position < int(total):
        return position
    return None


def completeness_notes(d: Path, config: dict) -> list[str]:
    """Say when a run was not finished, so its counts are read right."""
    notes = []
    sent = unsent_cut(d, config)
    if sent is not None:
        notes.append(f"incomplete: the producer sent {sent:,} of {int(config['events']):,} orders; "
                     "the audit judges those (the rest were never sent)")
    if not (d / "processor" / "final-status.json").exists():
        notes.append("not drained: the run stopped before the pipeline drained, so orders in "
                     "flight may count as lost")
    return notes


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def audit(run_dir: Path) -> None:
    """Re-check a stored run from its files alone (no node is started).

    RUN_DIR is a campaign run (with result.json), one of its mode directories, or
    a cluster started by `up`. Exit 0: every promise held; 1: a promise was
    broken; 2: missing or unreadable files.
    """
    if (run_dir / "cluster.json").exists():
        rows, seed = [audit_dir(run_dir)], None
    else:
        result = _load_result(run_dir)
        if not result["modes"]:
            fail(f"{run_dir}/result.json lists no finished mode")
        rows, seed = [audit_dir(run_dir / m["dir"]) for m in result["modes"]], result.get("seed")
        done = {(m["mode"], m.get("sink")) for m in result["modes"]}
        missing = [f"{m['mode']}/{m['sink']}" if m.get("sink") else m["mode"]
                   for m in result.get("requested_modes", []) if (m["mode"], m.get("sink")) not in done]
        if missing:
            rows[-1].setdefault("notes", []).append(
                "the campaign was interrupted before " + ", ".join(missing) + " ran")
    result = {"seed": seed, "modes": rows}
    print_result(result, run_dir)
    sys.exit(exit_code(result))


VERDICT_FIELDS = ("verdict", "balance_ok")
COUNT_FIELDS = ("lost", "lost_acknowledged", "duplicated")


def timed_steps(schedule: dict) -> list[str]:
    """Steps fired at a producer position rather than at a logical point (a proxy
    call count, a failpoint's Nth hit): what they hit depends on timing, so the
    anomaly counts they cause can differ between two runs of the same seed. A
    ``"trigger": "failpoint"`` kill is logical (harness.nemesis.logical), except in
    a mode without a failpoint for it (then its history op says ``"timed": true``); a zombie
    is timed unless ``"release": "drained"`` (harness.nemesis.zombie_release)."""
    return [f"{s['f']} {s.get('node') or s.get('link')} at {s['at']}"
            for s in schedule.get("steps", []) if s.get("timed") or not (s.get("arm") or s.get("trigger"))
            or (s.get("f") == "zombie" and s.get("release") != "drained")]   # released after_ms later


def compare_runs(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(verdict differences, count differences), one line per mode."""
    old_by = {(m["mode"], m.get("sink")): m for m in old["modes"]}
    verdicts, counts = [], []
    for m in new["modes"]:
        o = old_by.get((m["mode"], m.get("sink")))
        label = f"{m['mode']}/{m['sink']}" if m.get("sink") else m["mode"]
        if o is None:
            verdicts.append(f"{label}: not in the original run")
            continue
        v = [f"{k} {o.get(k)} -> {m.get(k)}" for k in VERDICT_FIELDS if o.get(k) != m.get(k)]
        c = [f"{k} {o.get(k)} -> {m.get(k)}" for k in COUNT_FIELDS if o.get(k) != m.get(k)]
        if v:
            verdicts.append(f"{label}: " + ", ".join(v + c))
        elif c:
            counts.append(f"{label}: " + ", ".join(c))
    return verdicts, counts


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--strict", is_flag=True,
              help="Also require equal anomaly counts when the schedule has timed steps.")
@click.option("--quiet", "-q", is_flag=True)
def replay(run_dir: Path, out, strict, quiet) -> None:
    """Run a stored campaign again (same seed, same schedule) and say whether
    the verdicts and anomaly counts match.

    Steps with a logical trigger (a proxy's call count, a failpoint's Nth hit)
    hit the same call in every run; steps fired at a producer position (the
    default kills) hit whatever is in flight then, so their anomaly counts may
    differ. Exit 0: the verdicts match, and the counts too unless a timed step
    explains the difference (always with --strict); 1 otherwise.
    """
    old = _load_result(run_dir)
    try:
        sched = validate.schedule_file(run_dir / "schedule.json")
    except InputError as e:
        fail(str(e))
    c = old.get("config") or {}
    fields = {k: v for k, v in c.items() if k in ClusterConfig.__dataclass_fields__}
    if not old["modes"]:
        fail(f"{run_dir}/result.json lists no finished mode: nothing to replay "
             "(the campaign was interrupted before its first mode ended)")
    try:
        base = ClusterConfig(**fields)
        # only the modes the original run finished: an interrupted one has nothing to compare
        modes = [ModeSpec(m["mode"], m.get("sink")) for m in old["modes"]]
    except (TypeError, KeyError) as e:
        fail(f"{run_dir / 'result.json'} is malformed: {e}")
    try:
        new_dir = new_run_dir(out or run_dir.resolve().parent, label="replay")
    except RunDirError as e:
        fail(str(e))
    cfg = CampaignConfig(modes=modes, base=base, schedule=sched,
                         drain_timeout_s=float(c.get("drain_timeout_s", 60.0)),
                         extra={"replay_of": str(run_dir)})
    new = execute(cfg, new_dir, quiet)
    print_result(new, new_dir, result_file=new_dir / "result.json")
    print_report(new_dir)
    verdicts, counts = compare_runs(old, new)
    timed = timed_steps(sched)
    if timed:
        console.print(f"[yellow]timed steps[/] (fired at a producer position; what they hit depends on "
                      f"timing): {'; '.join(timed)}", soft_wrap=True)
    n = len(new["modes"])
    if verdicts or (counts and (strict or not timed)):
        console.print(f"[bold red]replay differs[/] from {run_dir}:")
        for line in verdicts + counts:
            console.print(f"  {line}")
        sys.exit(EXIT_BROKEN)
    if counts:
        console.print(f"[bold green]replay matches the verdicts[/] of {run_dir} for {n} mode(s); "
                      f"anomaly counts differ where a timed step decided what a crash hit:")
        for line in counts:
            console.print(f"  {line}")
        console.print(f"  timed steps: {'; '.join(timed)} (logical triggers: see docs/scenarios.md)",
                      soft_wrap=True)
        sys.exit(EXIT_HELD)
    console.print(f"[bold green]replay matches[/] {run_dir}: same verdicts and anomaly counts for {n} mode(s)")
    sys.exit(EXIT_HELD)
