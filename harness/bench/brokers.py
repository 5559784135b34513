"""The same pipeline over each broker, side by side: ``bench --broker builtin,nats,mosquitto``.

For every broker (``builtin``: the testbed's gRPC broker; ``nats``: a 3-server JetStream
cluster, harness/nats_cluster.py; ``mosquitto``: one MQTT broker, harness/mosquitto.py),
every mode of ``cfg.broker_modes`` and every links setting (``direct``; ``proxies``: the
gRPC proxies for builtin, a TCP proxy on every client link and route for NATS,
harness/nats_links.py, on the two client links for mosquitto), one fresh cluster runs the whole
workload at full speed with no fault (harness/bench/pipeline.run_pipeline). Per row:

- ``events_per_s``, ``latency_p50_ms``, ``latency_p99_ms`` (as the pipeline part);
- ``cpu_s_per_1k``: CPU seconds per 1,000 events of every process of the run, split in
  ``cpu_s_per_1k_by_group``: ``log`` (the broker node, the NATS servers or mosquitto), ``proxies``,
  ``clients`` (producer and processor), ``sink``;
- ``proxies_to_direct``: events/s through the proxies over direct (same broker, mode).

Plus ``tcp_proxy``: harness/bench/tcp_proxy.measure (one TCP proxy on loopback: µs added
per round trip, MB/s, the proxy's CPU per round trip). Figures are measurements on the
machine at hand, never asserted.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from rich.table import Table

from harness.bench.pipeline import run_pipeline

BROKERS = ("builtin", "nats", "mosquitto")


def _group(node: str) -> str:
    if node.startswith("proxy:"):
        return "proxies"
    if node in ("broker", "mosquitto") or node.startswith("nats-"):
        return "log"
    return "sink" if node == "sink" else "clients"


def summarise(row: dict, broker: str) -> dict:
    """A pipeline row with the broker and the CPU per 1,000 events, total and by group."""
    by: dict[str, float] = {}
    for name, n in row["nodes"].items():
        if n.get("cpu_s_per_1k") is not None:
            g = _group(name)
            by[g] = round(by.get(g, 0.0) + n["cpu_s_per_1k"], 4)
    return {"broker": broker, "mode": row["mode"], "sink": row["sink"], "links": row["links"],
            "batch_size": row["batch_size"], "events": row["events"], "applied": row["applied"],
            "events_per_s": row["events_per_s"], "latency_p50_ms": row["latency_p50_ms"],
            "latency_p99_ms": row["latency_p99_ms"], "cpu_s_per_1k": round(sum(by.values()), 4),
            "cpu_s_per_1k_by_group": by, "nodes": row["nodes"]}


async def run_brokers(run_dir: Path, *, brokers: list[str], modes: list[str], links: list[str],
                      events: int, batch_size: int, seed: int, keep_data: bool = False,
                      round_trips: int = 2000, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Run every (broker, mode, links) once; return {"rows": [...], "tcp_proxy": {...}}.

    Raises:
        harness.process.NodeStartError, harness.cluster.DrainTimeout: a cluster did not start
            or drain (its processes are stopped first).
    """
    from harness.bench.tcp_proxy import measure
    rows = []
    for label in modes:
        mode, _, sink = label.partition("/")
        for broker in brokers:
            for lk in links:
                progress(f"brokers: {broker}, {label}, {lk}")
                d = Path(run_dir) / f"{broker}-{label.replace('/', '-')}-{lk}"
                r = await run_pipeline(d, mode=mode, sink=sink or None, proxies=lk == "proxies",
                                       batch_size=batch_size, events=events, seed=seed, broker=broker)
                rows.append(summarise(r, broker))
                if not keep_data:
                    shutil.rmtree(d, ignore_errors=True)
    for r in rows:
        direct = next((x for x in rows if x["broker"] == r["broker"] and x["mode"] == r["mode"]
                       and x["sink"] == r["sink"] and x["links"] == "direct"), None)
        r["proxies_to_direct"] = (round(r["events_per_s"] / direct["events_per_s"], 3)
                                  if r["links"] == "proxies" and direct and direct["events_per_s"]
                                  and r["events_per_s"] else None)
    progress("brokers: the TCP proxy alone (round trips, bulk)")
    return {"rows": rows, "tcp_proxy": await measure(round_trips, 100, 20)}


def brokers_table(result: dict) -> Table:
    t = Table(title="brokers side by side (same workload, no fault)", title_justify="left")
    for col in ("broker", "mode", "links", "events/s", "p50 ms", "p99 ms", "CPU s/1k events",
                "of which log", "proxies", "x direct"):
        t.add_column(col, justify="left" if col in ("broker", "mode", "links") else "right")
    for r in result["brokers"]["rows"]:
        label = f"{r['mode']}/{r['sink']}" if r["sink"] else r["mode"]
        by = r["cpu_s_per_1k_by_group"]
        t.add_row(r["broker"], label, r["links"], f"{r['events_per_s'] or 0:,.0f}",
                  f"{r['latency_p50_ms'] or 0:,.1f}", f"{r['latency_p99_ms'] or 0:,.1f}",
                  f"{r['cpu_s_per_1k']:.3f}", f"{by.get('log', 0):.3f}", f"{by.get('proxies', 0):.3f}",
                  f"{r['proxies_to_direct']:.2f}" if r.get("proxies_to_direct") else "")
    return t


def tcp_proxy_line(result: dict) -> str:
    tp = result["brokers"]["tcp_proxy"]
    return (f"TCP proxy alone: +{tp['added_mean_us']} µs per {tp['size_bytes']}-byte round trip "
            f"({tp['direct']['mean_us']} -> {tp['proxied']['mean_us']} µs), "
            f"{tp.get('proxy_cpu_us_per_round_trip', '?')} µs of proxy CPU per round trip, "
            f"bulk {tp['direct_mb_s']} -> {tp['proxied_mb_s']} MB/s")
