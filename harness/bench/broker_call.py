"""A broker node's CPU per Produce call, next to the null server's: what the broker adds to
grpc.aio's per-call floor, with its group commit (fsync) or without (``--no-fsync``).

A real broker process (``python -m nodes.broker``, fresh data dir) and the null server
(:mod:`harness.bench.null_server`) are sent the same ProduceRequests the producer builds
(:func:`harness.bench.baseline.build_requests`: each workload batch split by partition, the
partitions of a batch sent concurrently, the next batch after every ACK), first to the
broker, then to the null server. The figures are CPU time from ``/proc/<pid>/stat``
(user + system), which hold on a loaded machine where wall time does not. Small batches
(``--batch-size 4``: about one record per call) show the per-call cost, large ones the
per-record cost.

    python -m harness.bench.broker_call [--events 8000] [--batch-size 4] [--no-fsync]

Prints one JSON line: {"events", "batch_size", "calls", "broker_args",
"broker_cpu_us_per_call", "broker_cpu_us_per_record", "null_server_cpu_us_per_call",
"broker_s", "null_server_s"} (CPU in microseconds, wall times in seconds).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

from harness.bench.baseline import NullServer, build_requests
from harness.bench.procstat import cpu_seconds
from harness.bench.proxy_cost import _drive
from harness.process import NodeProcess


async def run_broker_call(*, seed: int = 1, events: int = 8000, batch_size: int = 4,
                          broker_args: tuple[str, ...] = ()) -> dict:
    """See the module doc. Raises: harness.process.NodeStartError (the broker did not start)."""
    batches = build_requests(seed, events, batch_size)
    tmp = Path(tempfile.mkdtemp(prefix="broker-call-"))
    try:
        async with NullServer() as ns:
            broker = NodeProcess("broker", tmp / "broker", list(broker_args), name="broker")
            await broker.start()
            try:
                await _drive(broker.address, batches[:3])  # warm up: connection, first segment
                b0 = cpu_seconds(broker.pid)
                broker_s, calls = await _drive(broker.address, batches)
                b1 = cpu_seconds(broker.pid)
            finally:
                await broker.stop()
            n0 = cpu_seconds(ns.proc.pid)
            null_s, _ = await _drive(ns.address, batches)
            n1 = cpu_seconds(ns.proc.pid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"events": events, "batch_size": batch_size, "calls": calls, "broker_args": list(broker_args),
            "broker_cpu_us_per_call": round((b1 - b0) * 1e6 / calls, 1),
            "broker_cpu_us_per_record": round((b1 - b0) * 1e6 / events, 2),
            "null_server_cpu_us_per_call": round((n1 - n0) * 1e6 / calls, 1),
            "broker_s": round(broker_s, 3), "null_server_s": round(null_s, 3)}


if __name__ == "__main__":
    import click

    @click.command()
    @click.option("--events", type=click.IntRange(1), default=8000, show_default=True)
    @click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True)
    @click.option("--seed", type=int, default=1, show_default=True)
    @click.option("--no-fsync", is_flag=True, help="Start the broker with --no-fsync (its ablation).")
    def main(events: int, batch_size: int, seed: int, no_fsync: bool) -> None:
        """A broker node's CPU per Produce call next to the null server's."""
        print(json.dumps(asyncio.run(run_broker_call(
            seed=seed, events=events, batch_size=batch_size,
            broker_args=("--no-fsync",) if no_fsync else ()))))

    main()
