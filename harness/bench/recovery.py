"""Recovery: restart-to-SERVING of the broker with a big log, the processor from a checkpoint, the sink.

Every figure is :meth:`harness.process.NodeProcess.restart` on the clock: spawn
of the interpreter, imports, the node's recovery (log scan or index load,
checkpoint load, SQLite open), up to the health service's SERVING. The Python
start-up floor that every restart pays is measured separately (the null
server's spawn-to-listening, :mod:`harness.bench.baseline`). Each restart is
repeated ``repeats`` times; the median is the figure.

The broker's log is filled through its own Produce RPC (the records of the
seeded workload, 1,000 per request, every partition concurrently), so it is a
log the broker wrote itself, and the audit benchmark reads the same directory.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from harness.bench.baseline import build_requests
from harness.bench.procstat import peak_rss_bytes
from harness.cluster import Cluster, ClusterConfig
from harness.process import NodeProcess
from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2_grpc

FILL_BATCH = 1000


async def fill_broker(broker: NodeProcess, *, seed: int, records: int, timeout_s: float = 30.0) -> float:
    """Produce ``records`` workload records (non-idempotent) into a running broker; return seconds taken."""
    batches = build_requests(seed, records, FILL_BATCH * 4)
    t0 = time.perf_counter()
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        for reqs in batches:
            await asyncio.gather(*(stub.Produce(r, timeout=timeout_s) for r in reqs))
    return time.perf_counter() - t0


async def time_restart(p: NodeProcess, *, crash: bool, repeats: int) -> dict:
    """Stop ``p`` (kill -9 if ``crash`` else SIGTERM), restart, time spawn-to-SERVING; ``repeats`` times.

    Returns {"median_s", "runs_s": [...], "peak_rss_bytes" (last incarnation, at SERVING)}.
    """
    runs = []
    for _ in range(repeats):
        if crash:
            p.kill()
            await p.wait(10)
        else:
            await p.stop()
        t0 = time.perf_counter()
        await p.start(timeout_s=120)
        runs.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(runs), 3), "runs_s": [round(r, 3) for r in runs],
            "peak_rss_bytes": peak_rss_bytes(p.pid)}


async def broker_recovery(broker_dir: Path, *, seed: int, records: int, repeats: int = 3) -> dict:
    """Fill a fresh at-least-once broker with ``records`` records, then time crash and graceful restarts.

    The broker runs with ``--checkpoint-interval-ms 0`` (a recovery point only on a
    graceful stop), so the first crash restart after the fill has no recovery point
    covering the log: it is the full-scan worst case (``crash.runs_s[0]``). The
    graceful restarts that follow load the persisted indexes. The broker directory
    is left behind (the audit benchmark reads it).

    Returns {"records", "fill_s", "fill_records_per_s", "crash": {...}, "graceful": {...},
    "peak_rss_bytes_filled"}.
    """
    broker = NodeProcess("broker", broker_dir, ["--mode", "at-least-once", "--partitions", "4",
                                                "--checkpoint-interval-ms", "0"], name="broker")
    await broker.start()
    try:
        fill_s = await fill_broker(broker, seed=seed, records=records)
        rss_filled = peak_rss_bytes(broker.pid)
        crash = await time_restart(broker, crash=True, repeats=repeats)
        graceful = await time_restart(broker, crash=False, repeats=repeats)
    finally:
        await broker.stop()
    return {"records": records, "fill_s": round(fill_s, 2), "fill_records_per_s": round(records / fill_s, 1),
            "peak_rss_bytes_filled": rss_filled, "graceful": graceful, "crash": crash}


async def node_recovery(run_dir: Path, *, seed: int, events: int, repeats: int = 3) -> dict:
    """An exactly-once/idempotent cluster (direct links) runs ``events`` orders to the end;
    then the processor (checkpoint load + offsets) and the sink (SQLite with ``events``
    orders) are each killed with -9 and restarted ``repeats`` times.

    Returns {"events", "processor": {...}, "sink": {...}}.
    """
    cluster = Cluster(ClusterConfig(mode="exactly-once", sink_strategy="idempotent", seed=seed,
                                    events=events, rate=0.0, proxies=False), run_dir)
    try:
        await cluster.start()
        await cluster.wait_drained(120, poll_s=0.05)
        processor = await time_restart(cluster.nodes["processor"], crash=True, repeats=repeats)
        sink = await time_restart(cluster.nodes["sink"], crash=True, repeats=repeats)
    finally:
        await cluster.stop()
    return {"events": events, "processor": processor, "sink": sink}
