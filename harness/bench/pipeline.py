"""One pipeline measurement: a fresh cluster, the whole workload at full speed, no fault.

Figures (:func:`run_pipeline`):

- ``events_per_s``: applied orders / (last sink application - first producer
  invoke), from the producer's history and the sink's ``first_applied_ms``
  (end to end: producer invoke to sink apply; process start-up excluded);
- ``wall_events_per_s``: events / (producer start -> pipeline drained), start-up
  of the producer process and the drain polling included;
- ``latency_p50_ms`` / ``latency_p99_ms``: per order, first send to first
  application at the sink (:func:`harness.metrics.latency_ms`);
- per node (and per proxy): CPU seconds (utime + stime) per 1,000 events from
  the moment the node was SERVING to the drain, and peak RSS (VmHWM).
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.bench.procstat import cpu_seconds, peak_rss_bytes
from harness.cluster import Cluster, ClusterConfig
from harness.metrics import first_invoke_times, latency_ms, sink_apply_times


def _procs(cluster: Cluster) -> dict:
    out = {n: p for n, p in cluster.nodes.items()}
    out.update({f"proxy:{link}": p for link, p in cluster.proxies.items()})
    return out


async def run_pipeline(run_dir: Path, *, mode: str, sink: str | None, proxies: bool, batch_size: int,
                       events: int, seed: int = 1, drain_timeout_s: float = 120.0,
                       extra_args: dict[str, list[str]] | None = None, broker: str = "builtin") -> dict:
    """Run ``events`` orders through a fresh cluster under ``run_dir`` and measure it.

    Returns:
        {"mode", "sink", "links": "direct" | "proxies", "batch_size", "events", "applied",
        "events_per_s", "wall_events_per_s", "latency_p50_ms", "latency_p99_ms",
        "nodes": {name: {"cpu_s_per_1k", "cpu_s", "peak_rss_bytes"}}}.

    Raises:
        harness.process.NodeStartError, harness.cluster.DrainTimeout: the cluster did not
            start or drain (every process is stopped first).
    """
    config = ClusterConfig(mode=mode, sink_strategy=sink, seed=seed, events=events, rate=0.0,
                           batch_size=batch_size, proxies=proxies, extra_args=dict(extra_args or {}),
                           broker=broker)   # "nats": harness/bench/brokers.py
    cluster = Cluster(config, run_dir)
    cpu0: dict[str, float | None] = {}
    try:
        await cluster.start(start_producer=False)
        cpu0 = {n: cpu_seconds(p.pid) for n, p in _procs(cluster).items()}
        t0 = time.perf_counter()
        producer = await cluster.start_producer()
        cpu0["producer"] = cpu_seconds(producer.pid)
        await cluster.wait_drained(drain_timeout_s, poll_s=0.05)
        wall = time.perf_counter() - t0
        nodes = {}
        for name, p in _procs(cluster).items():
            c1 = cpu_seconds(p.pid)
            used = (c1 - cpu0[name]) if c1 is not None and cpu0.get(name) is not None else None
            nodes[name] = {"cpu_s": round(used, 2) if used is not None else None,
                           "cpu_s_per_1k": round(used / events * 1000, 4) if used is not None else None,
                           "peak_rss_bytes": peak_rss_bytes(p.pid)}
    finally:
        await cluster.stop()
    sent = first_invoke_times(run_dir / "producer" / "history.jsonl")
    applied = sink_apply_times(run_dir / "sink" / "sink.db")
    window = (max(applied.values()) - min(sent.values())) if sent and applied else 0.0
    lat = latency_ms(run_dir)
    return {"mode": mode, "sink": sink, "links": "proxies" if proxies else "direct",
            "batch_size": batch_size, "events": events, "applied": len(applied),
            "events_per_s": round(len(applied) / window, 1) if window > 0 else None,
            "wall_events_per_s": round(events / wall, 1),
            "latency_p50_ms": lat["p50"], "latency_p99_ms": lat["p99"], "nodes": nodes}
