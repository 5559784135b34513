"""The baseline: the producer's record batches over one raw gRPC hop to a do-nothing server.

The requests are built exactly as the producer builds them
(:class:`nodes.producer.attempt.PartitionBatch`: the workload batch split by
partition, one ``ProduceRequest`` per partition), built before the clock
starts, then sent like the at-least-once producer sends them: the partitions of
one batch concurrently, the next batch after every ACK. The server
(:mod:`harness.bench.null_server`) is a separate process, so the figure is
the transport limit of grpc.aio on this machine: serialisation, HTTP/2,
loopback and the asyncio loops on both sides, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from harness.bench.procstat import cpu_seconds, peak_rss_bytes
from harness.metrics import percentile
from nodes.common.channels import insecure_channel
from nodes.common.modes import DEFAULT_PARTITIONS
from nodes.common.partitioning import partition_for
from nodes.pb import broker_pb2_grpc
from nodes.producer.attempt import PartitionBatch
from nodes.producer.workload import generate

ROOT = Path(__file__).resolve().parents[2]


def build_requests(seed: int, events: int, batch_size: int,
                   partitions: int = DEFAULT_PARTITIONS) -> list[list]:
    """The producer's ProduceRequests: one list (one per partition) per workload batch."""
    orders = generate(seed, events)
    out = []
    for b, start in enumerate(range(0, events, batch_size)):
        groups: dict[int, list] = defaultdict(list)
        for o in orders[start:start + batch_size]:
            groups[partition_for(o.account, partitions)].append(o)
        out.append([PartitionBatch(b, p, os_).request() for p, os_ in sorted(groups.items())])
    return out


class NullServer:
    """The do-nothing server process, owned by pid (async context manager).

    Attributes:
        address: "127.0.0.1:PORT" once started.
        start_s: seconds from spawn to the "listening" line (the Python start-up floor
            that every node restart pays too).
    """

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.address = ""
        self.start_s = 0.0

    async def __aenter__(self) -> "NullServer":
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "harness.bench.null_server", stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL, cwd=str(ROOT), env=env, start_new_session=True)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        self.start_s = time.perf_counter() - t0
        if not line:
            await self.proc.wait()
            raise RuntimeError(f"null server exited with code {self.proc.returncode}")
        self.address = json.loads(line)["address"]
        return self

    async def __aexit__(self, *exc) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def run_baseline(*, seed: int, events: int, batch_size: int, timeout_s: float = 5.0,
                       min_s: float = 1.0) -> dict:
    """Send ``events`` orders in ``batch_size`` batches to a fresh null server, the whole
    workload again and again until at least ``min_s`` seconds (s) of sending have passed.

    One pass of 20,000 orders at batch 1000 is 20 batches and lasts 30-100 ms: one
    scheduling hiccup moved the figure from 190,000 to 640,000 events/s between runs, and
    every ratio to the baseline with it. Whole passes over ``min_s`` measure the rate.

    Returns:
        {"batch_size", "events" (one pass), "rounds" (passes sent), "elapsed_s",
        "events_per_s" (events x rounds / elapsed_s), "latency_p50_ms",
        "latency_p99_ms" (per workload batch, all its partitions ACKed),
        "server_cpu_s_per_1k", "server_peak_rss_bytes", "server_start_s"}.

    Raises:
        grpc.aio.AioRpcError: a call failed (the loopback server is local: it should not).
    """
    batches = build_requests(seed, events, batch_size)
    async with NullServer() as server, insecure_channel(server.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        await asyncio.wait_for(ch.channel_ready(), timeout_s)
        await stub.Produce(batches[0][0], timeout=timeout_s)   # warm the connection
        cpu0 = cpu_seconds(server.proc.pid)
        lat = []
        rounds = 0
        t0 = time.perf_counter()
        while rounds == 0 or time.perf_counter() - t0 < min_s:
            for reqs in batches:
                b0 = time.perf_counter()
                await asyncio.gather(*(stub.Produce(r, timeout=timeout_s) for r in reqs))
                lat.append((time.perf_counter() - b0) * 1000)
            rounds += 1
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(server.proc.pid)
        rss = peak_rss_bytes(server.proc.pid)
    lat.sort()
    sent = events * rounds
    return {"batch_size": batch_size, "events": events, "rounds": rounds, "elapsed_s": round(elapsed, 3),
            "events_per_s": round(sent / elapsed, 1),
            "latency_p50_ms": round(percentile(lat, 50), 3), "latency_p99_ms": round(percentile(lat, 99), 3),
            "server_cpu_s_per_1k": round((cpu1 - cpu0) / sent * 1000, 4),
            "server_peak_rss_bytes": rss, "server_start_s": round(server.start_s, 3)}
