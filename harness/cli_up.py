"""``testbed up``: a local cluster streaming orders end to end, until Ctrl-C."""

from __future__ import annotations

import asyncio
import atexit
import json
import time
from pathlib import Path

import click
import grpc
from rich.table import Table

from nodes.common.cli_types import FiniteFloat
from harness.cli_common import (EXIT_USAGE, console, err_console, events_range, disable_option, fail, mode_option,
                                non_negative,
                                positive, resolve_storage, run_async, sink_option, storage_option,
                                broker_flag_conflict, broker_options, check_broker)
from harness import interrupt, upfile
from harness.cli_external import external_nodes, external_options
from harness.cluster import Cluster, ClusterConfig, DrainTimeout
from harness.group_cluster import ablation_problem, check_processors, processors_option
from harness.external_report import record_final_state
from harness.process import NodeStartError
from harness.runs import RunDirError, new_run_dir
from harness.storage_watch import failure_line
from nodes.common.storage_fault import EXIT_STORAGE


def nodes_table(cluster: Cluster) -> Table:
    t = Table(title=f"cluster {cluster.config.label} in {cluster.run_dir}", title_justify="left")
    for col in ("node", "address", "pid", "data dir"):
        t.add_column(col)
    for name, p in cluster.nodes.items():
        t.add_row(name, p.address, str(p.pid), str(p.data_dir))
    for link, p in cluster.proxies.items():
        # what the link's client dials (the data port), and the control port if it differs
        dial = getattr(p, "dial_address", None) or getattr(p, "data_address", None) or p.address
        where = dial if dial == p.address else f"{dial} (control {p.address})"
        t.add_row(f"proxy {link}", where, str(p.pid), str(p.data_dir))
    return t


def progress_line(prog: dict, mqtt_running: bool | None = None) -> str:
    """One status line. ``mqtt_running`` (``--broker mosquitto``: is the mosquitto process
    up) replaces the log count: MQTT keeps no log, and its "ends" are UNAVAILABLE until the
    processor's session has been quiet, which is not "down"."""
    prod, proc, hw = prog.get("producer", {}), prog.get("processor", {}), prog.get("high_watermarks", {})
    p = "down" if "error" in prod else f"{prod.get('position', 0)}/{prod.get('total', '?')} sent"
    b = "down" if "error" in hw else f"{sum(hw.values())} in log"
    if mqtt_running is not None:
        b = ("down" if not mqtt_running else "up (mqtt: no log)" if "error" in hw
             else f"up, {sum(hw.values())} received")
    if "error" in proc:
        q = "down"
    else:
        q = f"{sum(proc.get('durable_positions', {}).values())} processed"
        if proc.get("dead_lettered"):
            q += f", {proc['dead_lettered']} dead-lettered"
    retries = prod.get("retries", 0) if "error" not in prod else 0
    return f"producer {p} ({retries} retries) | broker {b} | processor {q}"


def mqtt_running(cluster: Cluster) -> bool | None:
    """Whether the mosquitto process runs (None: not an MQTT cluster)."""
    return None if cluster.mosquitto is None else cluster.mosquitto.running


def audit_line(cluster: Cluster) -> str:
    """Audit the live cluster's files once (the broker log and the SQLite sink are
    readable while the nodes run) and say it in one line."""
    from harness.checker import InputError, check, load_run
    try:
        r = check(load_run(cluster.run_dir))
    except (InputError, OSError, ValueError) as e:
        return f"audit unavailable: {e}"
    applied_once = r.events - r.count("lost") - r.count("duplicated")
    return (f"audit: {r.events} orders, {applied_once} applied exactly once, {r.count('lost')} lost, "
            f"{r.count('duplicated')} duplicated, "
            + (f"{r.count('dead-lettered')} dead-lettered, " if r.count("dead-lettered") else "")
            + f"balances {'exact' if r.balance_ok else 'off'}; "
            f"verdict for {cluster.config.mode}: {r.verdict}")


@click.command()
@mode_option
@sink_option
@click.option("--events", type=int, default=100_000, show_default=True, callback=events_range,
              help="Orders in the generated workload.")
@click.option("--rate", type=FiniteFloat(), default=500.0, show_default=True, callback=non_negative,
              help="Producer rate in events/s (0 = as fast as possible).")
@click.option("--seed", type=int, default=1, show_default=True, help="Workload and proxy RNG seed.")
@click.option("--batch-size", type=int, default=100, show_default=True, callback=positive)
@click.option("--workload", "workload_file", type=click.Path(exists=True, dir_okay=False),
              help="A JSONL file of orders instead of the generated workload.")
@click.option("--no-proxy", is_flag=True, help="Connect the nodes directly (no fault injection).")
@disable_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default ./runs).")
@click.option("--exit-when-drained", is_flag=True,
              help="Stop the cluster once the workload has drained (for scripts).")
@click.option("--no-restart", is_flag=True,
              help="Leave a node that exits (e.g. after your kill -9) down instead of restarting it.")
@storage_option
@external_options
@broker_options
@processors_option()
def up(mode, sink_strategy, events, rate, seed, batch_size, workload_file, no_proxy, disable, out,
       exit_when_drained, no_restart, storage, processor_cmd, sink_cmd, broker, nats_sync, nats_url,
       processors, mqtt_autosave, mqtt_subscribe_qos) -> None:
    """Launch producer, broker, processor and sink (each behind a fault proxy) on
    loopback, stream the workload end to end, and stop everything on Ctrl-C.

    While it runs, inject faults from another terminal with ``./run.sh fault ...``
    (the cluster's addresses are in its cluster.json; runs/up.json names it while
    this command runs, and `fault` finds it there).
    """
    if sink_strategy and mode != "exactly-once":
        fail("--sink applies to --mode exactly-once only")
    external = external_nodes(processor_cmd, sink_cmd, disable)
    if problem := broker_flag_conflict(broker, nats_url, nats_sync, mqtt_autosave, mqtt_subscribe_qos):
        fail(problem)
    if problem := check_processors(processors, external=external, broker="nats" if nats_url else broker) \
            or ablation_problem(disable, processors):
        fail(problem)
    mqtt_autosave = check_broker(broker, mqtt_autosave)
    if workload_file:
        from nodes.producer.workload import WorkloadError, load_jsonl
        try:
            events = len(load_jsonl(Path(workload_file)))
        except (OSError, WorkloadError) as e:
            fail(str(e))
    storage = resolve_storage(storage, {})
    from harness.cli_common import resolve_nats_url
    nats_url = resolve_nats_url(nats_url, {}, storage)
    broker = "nats" if nats_url else broker
    try:
        run_dir = new_run_dir(out, label=f"up-{mode}")
    except RunDirError as e:
        fail(str(e))
    config = ClusterConfig(mode=mode, sink_strategy=sink_strategy, seed=seed, events=events,
                           workload_file=str(Path(workload_file).resolve()) if workload_file else None,
                           rate=rate, batch_size=batch_size, proxies=not no_proxy, disabled=list(disable),
                           storage=storage, external=external, broker=broker, nats_sync=nats_sync,
                           nats_url=nats_url, processors=processors, mqtt_autosave=mqtt_autosave,
                           mqtt_subscribe_qos=None if mqtt_subscribe_qos is None else int(mqtt_subscribe_qos))
    raise SystemExit(run_async(lambda: _up(config, run_dir, exit_when_drained, not no_restart,
                                           default_out=out is None)))


def stop_on_storage_error(cluster: Cluster) -> None:
    """A node that stopped on a full disk or an I/O error (exit 3) ends `up` with its
    line, exit 2: restarting it would only fail again (nodes/common/storage_fault.py)."""
    for p in cluster.all_processes():
        if p.proc is not None and p.proc.returncode == EXIT_STORAGE:
            fail(failure_line(p) + f" (not restarted; run data in {cluster.run_dir})")


async def restart_exited(cluster: Cluster) -> None:
    """Restart every node or proxy that exited on its own (a kill -9 from the user,
    a crash); say so, with its exit code."""
    for p in cluster.all_processes():
        if p.proc is not None and not p.running:
            console.print(f"[yellow]{p.name} exited with code {p.proc.returncode}; restarting it[/] "
                          f"(pass --no-restart to leave it down)")
            try:
                await p.restart()
            except NodeStartError as e:
                console.print(f"[red]{p.name} did not restart:[/] {e}")
            cluster.write_manifest()


async def _up(config: ClusterConfig, run_dir: Path, exit_when_drained: bool, restart: bool,
              default_out: bool) -> int:
    cluster = Cluster(config, run_dir)
    atexit.register(cluster.kill_all_now)
    runs_base = run_dir.parent
    atexit.register(upfile.remove, runs_base)
    try:
        try:
            await cluster.start()
        except NodeStartError as e:
            fail(f"cluster did not start: {e}")
        if (other := upfile.write(runs_base, run_dir / "cluster.json")) is not None:
            err_console.print(f"note: another up (pid {other.get('pid')}) is running; `fault` now picks this "
                              f"one until it exits, the other with --cluster {other.get('cluster')}",
                              soft_wrap=True, markup=False)
        console.print(nodes_table(cluster))
        for node, cmd in sorted(config.external.items()):
            console.print(f"external {node}: {cmd!r} runs in place of the built-in {node}", soft_wrap=True)
        where = "" if default_out else f" --cluster {run_dir / 'cluster.json'}"
        if cluster.nats is not None and cluster.nats.links is not None:   # TCP links (harness/nats_links.py)
            console.print("streaming; inject faults from another terminal, e.g.\n"
                          f"  ./run.sh fault{where} add latency --link producer-nats-1 --delay-ms 50 --jitter-ms 20\n"
                          f"  ./run.sh fault{where} heal\n"
                          "Ctrl-C stops every process.", soft_wrap=True)
        elif cluster.mosquitto is not None:
            console.print("streaming; inject faults from another terminal, e.g.\n"
                          f"  ./run.sh fault{where} add reset --link producer-broker   # a TCP proxy (MQTT)\n"
                          f"  ./run.sh fault{where} heal\n"
                          "Ctrl-C stops every process.", soft_wrap=True)
        else:
            console.print(fault_hint(sorted(cluster.proxies), where), soft_wrap=True)
        drained_once = False
        last_print = 0.0
        while True:
            interrupt.check()
            prog = await cluster.drain_progress()
            now = time.monotonic()
            if now - last_print >= 2.0:
                console.print(progress_line(prog, mqtt_running(cluster)))
                last_print = now
            from harness.cluster import _drained
            stop_on_storage_error(cluster)
            if restart:
                await restart_exited(cluster)
            if _drained(prog) and not drained_once:
                drained_once = True
                console.print(f"[bold green]drained:[/] {progress_line(prog, mqtt_running(cluster))}")
                await record_final_state(cluster, run_dir)   # + an external sink's Snapshot
                if cluster.nats is not None:   # the audit reads the streams from their dump
                    await cluster.dump_streams()
                console.print(audit_line(cluster))
                console.print(f"audit it again any time with: ./run.sh audit {run_dir}")
                if exit_when_drained:
                    return 0
            await asyncio.sleep(0.25)
    finally:
        upfile.remove(runs_base)
        await cluster.stop()
        console.print(f"stopped every process; run data in {run_dir}")


def fault_hint(links: list[str], where: str) -> str:
    """What to type in another terminal, for the links this cluster has fault proxies on
    (none with --no-proxy; with --broker nats only the processor-sink link)."""
    if not links:
        return "streaming; no fault proxy runs (--no-proxy), so no link fault can be injected.\nCtrl-C stops every process."
    link = "producer-broker" if "producer-broker" in links else links[0]
    return ("streaming; inject faults from another terminal, e.g.\n"
            f"  ./run.sh fault{where} add drop-response --link {link} --probability 0.3\n"
            f"  ./run.sh fault{where} heal\n"
            f"links with a fault proxy: {', '.join(links)}\n"
            "Ctrl-C stops every process.")
