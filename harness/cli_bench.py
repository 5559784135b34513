"""``testbed bench``: the benchmark (harness.bench), printed as tables with ratios, saved as bench.json."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.ablations import ABLATIONS
from harness.bench.report import (baseline_table, detect_table, memory_table, node_table, other_table,
                                  pipeline_table, target_lines)
from harness.bench.runner import ALL_MODES, PARTS, BenchConfig, run_bench
from harness.bench.brokers import BROKERS
from harness.cli_common import console, exit_if_interrupted, fail, positive, run_async
from harness.process import NodeStartError
from harness.cluster import DrainTimeout
from harness.runs import RunDirError, new_run_dir


def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        out = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers, e.g. 100,1000") from None
    if not out or any(v <= 0 for v in out):
        raise click.BadParameter("every value must be > 0")
    if len(set(out)) < len(out):   # was printed twice, one run's numbers in both rows
        raise click.BadParameter(f"{next(v for v in out if out.count(v) > 1)} named twice")
    return out


def _names(choices):
    def parse(ctx, param, value):
        if value is None:
            return None
        out = [s.strip() for s in value.split(",") if s.strip()]
        if not out:   # was taken as "not given": the default list ran
            raise click.BadParameter(f"empty; choose from: {', '.join(choices)}")
        for s in out:
            if s not in choices:
                raise click.BadParameter(f"unknown {s!r}; choose from: {', '.join(choices)}")
        if len(set(out)) < len(out):   # was run twice
            raise click.BadParameter(f"{next(s for s in out if out.count(s) > 1)!r} named twice")
        return out
    return parse


@click.command()
@click.option("--quick", is_flag=True, help="Small sizes, every part, under a minute.")
@click.option("--events", type=int, default=None, callback=positive,
              help="Orders per pipeline run and for the baseline [default 20000, and at least 50 "
                   "batches per pipeline run (50,000 at batch 1000) when not given; --quick 3000].")
@click.option("--batch-sizes", callback=_int_list, default=None, metavar="LIST",
              help="Producer batch sizes to compare [default 100,1000; --quick 100,500].")
@click.option("--modes", callback=_names(ALL_MODES), default=None, metavar="LIST",
              help="Modes to run [default all]: " + ", ".join(ALL_MODES) + ".")
@click.option("--links", callback=_names(("direct", "proxies")), default=None, metavar="LIST",
              help="direct, proxies or both [default direct,proxies; --quick runs only "
                   "at-least-once through the proxies].")
@click.option("--repeats", type=int, default=None, callback=positive,
              help="Pipeline rounds; the median is reported [default 3; --quick 1].")
@click.option("--log-records", type=int, default=None, callback=positive,
              help="Records in the broker log of the restart test [default 1000000; --quick 100000].")
@click.option("--audit-events", type=int, default=None, callback=positive,
              help="Events in the audited run [default 1000000; --quick 100000].")
@click.option("--memory-events", callback=_int_list, default=None, metavar="LIST",
              help="Event counts of the node-memory runs [default 10000,100000; --quick none].")
@click.option("--campaign-events", type=int, default=None, callback=positive,
              help="Events of the campaign-rate run [default 3000; --quick 1500].")
@click.option("--campaign-kills", type=int, default=None, callback=positive,
              help="Kill/restart cycles scheduled in the campaign-rate run [default 8; --quick 3].")
@click.option("--detect", "detect", callback=_names(tuple(ABLATIONS)), default=None, metavar="LIST",
              help="Ablations the detect part times with their targeted scenario [default all; "
                   "--quick producer-retry].")
@click.option("--proxy-events", type=int, default=None, callback=positive,
              help="Orders sent through the proxy-cost part [default 40000; --quick 10000].")
@click.option("--parts", callback=_names(PARTS), default=None, metavar="LIST",
              help="Parts to run [default all]: " + ", ".join(PARTS) + ".")
@click.option("--broker", "brokers", callback=_names(BROKERS), default=None, metavar="LIST",
              help="builtin, nats, mosquitto (any of them): adds the 'brokers' part, the same pipeline over each broker "
                   "side by side, direct and through the proxies (docs/bench.md).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--keep-data", is_flag=True, help="Keep the clusters' data dirs (large).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default ./runs); the run goes to OUT/<id>-bench/.")
def bench(quick, events, batch_sizes, modes, links, repeats, log_records, audit_events, memory_events,
          campaign_events, campaign_kills, detect, proxy_events, parts, brokers, seed, keep_data, out) -> None:
    """Measure throughput, latency, CPU and memory per mode against raw gRPC, node
    restarts, the audit and the campaign rate; print the tables, write bench.json.

    Exit code 0 when it measured everything (targets missed are reported, not
    failed); 2 when a node did not start or a pipeline did not drain.
    """
    given = {k: v for k, v in dict(events=events, batch_sizes=batch_sizes, modes=modes, links=links,
                                   repeats=repeats, log_records=log_records, audit_events=audit_events,
                                   memory_events=memory_events, campaign_events=campaign_events,
                                   campaign_kills=campaign_kills, detect=detect, proxy_events=proxy_events,
                                   parts=parts).items() if v is not None}
    if events is not None:
        given["min_batches"] = 0     # the orders asked for, at every batch size
    if brokers:   # the brokers part, side by side (harness/bench/brokers.py)
        given["brokers"] = brokers
        given["parts"] = [*given.get("parts", BenchConfig().parts), "brokers"] \
            if "brokers" not in given.get("parts", []) else given["parts"]
    cfg = BenchConfig.quick(seed=seed, keep_data=keep_data, **given) if quick else \
        BenchConfig(seed=seed, keep_data=keep_data, **given)
    try:
        run_dir = new_run_dir(out, "bench")
    except RunDirError as e:
        fail(str(e))
    holder: dict = {}

    async def main() -> int:
        def progress(msg: str) -> None:
            print(f"[bench] {msg}", file=sys.stderr, flush=True)
        try:
            holder["result"] = await run_bench(cfg, run_dir, progress)
        except (NodeStartError, DrainTimeout, RuntimeError) as e:
            fail(f"{e} (partial bench.json in {run_dir})")
        return 0

    exit_if_interrupted(run_async(main), run_dir)
    result = holder["result"]
    for part, table in (("baseline", baseline_table), ("pipeline", pipeline_table), ("pipeline", node_table),
                        ("memory", memory_table)):
        if result.get(part):
            console.print(table(result))
    if any(result.get(p) for p in ("proxy", "recovery", "audit", "campaign")):
        console.print(other_table(result))
    if result.get("detect"):
        console.print(detect_table(result))
    if result.get("brokers"):
        from harness.bench.brokers import brokers_table, tcp_proxy_line
        console.print(brokers_table(result))
        console.print(tcp_proxy_line(result))
    lines = target_lines(result)
    if lines:
        console.print("[bold]targets[/] (issues 6 and 16):")
        for line in lines:
            console.print(f"  {line}", soft_wrap=True)
    console.print(f"load average now {__import__('os').getloadavg()[0]:.1f} on "
                  f"{result['machine']['cpus']} CPUs; elapsed {result['elapsed_s']:.0f} s")
    console.print(f"bench.json: {run_dir / 'bench.json'}")
