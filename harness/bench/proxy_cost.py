"""The proxy's own cost per forwarded call: CPU microseconds per round trip.

A null server (:mod:`harness.bench.null_server`), a real proxy process
(``python -m nodes.proxy --link producer-broker``, no fault armed) in front of
it, and the producer's ProduceRequests sent through the proxy like the
at-least-once producer sends them (the partitions of a batch concurrently, the
next batch after every ACK), then the same requests straight to the null server.
The figures are CPU seconds from ``/proc/<pid>/stat`` (user + system), so they
hold on a loaded machine where wall-clock throughput does not: the proxy's CPU
per forwarded call next to the null server's CPU per call (the grpc.aio floor of
one server side), and the wall time of both runs. The same requests go once more through
the proxy's data port (nodes/proxy/fastpath.py: no fault, so relayed below gRPC): its
CPU per relayed call.

    python -m harness.bench.proxy_cost [--events 20000] [--batch-size 100]
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from harness.bench.baseline import NullServer, build_requests
from harness.bench.procstat import cpu_seconds
from harness.process import NodeProcess
from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2_grpc


async def _drive(address: str, batches: list[list], timeout_s: float = 10.0) -> tuple[float, int]:
    async with insecure_channel(address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        await asyncio.wait_for(ch.channel_ready(), timeout_s)
        await stub.Produce(batches[0][0], timeout=timeout_s)   # warm the connection
        t0 = time.perf_counter()
        calls = 0
        for reqs in batches:
            await asyncio.gather(*(stub.Produce(r, timeout=timeout_s) for r in reqs))
            calls += len(reqs)
        return time.perf_counter() - t0, calls


async def run_proxy_cost(*, seed: int = 1, events: int = 20000, batch_size: int = 100,
                         data_dir: Path | None = None) -> dict:
    """Returns {"events", "batch_size", "calls", "proxy_cpu_us_per_call" (the forwarder),
    "null_server_cpu_us_per_call" (through the proxy), "direct_null_server_cpu_us_per_call",
    "via_proxy_s", "direct_s", "wall_ratio" (direct / via proxy), "data_port_cpu_us_per_call",
    "via_data_port_s"}.

    Raises:
        harness.process.NodeStartError: the proxy did not start.
    """
    batches = build_requests(seed, events, batch_size)
    tmp = Path(data_dir or tempfile.mkdtemp(prefix="proxy-cost-"))
    try:
        async with NullServer() as ns:
            px = NodeProcess("proxy", tmp / "proxy", ["--link", "producer-broker", "--upstream", ns.address,
                                                      "--seed", str(seed), "--data-listen", "127.0.0.1:0"],
                             name="proxy:producer-broker")
            await px.start()
            try:
                p0, n0 = cpu_seconds(px.pid), cpu_seconds(ns.proc.pid)
                via_s, calls = await _drive(px.address, batches)
                p1, n1 = cpu_seconds(px.pid), cpu_seconds(ns.proc.pid)
                fast_s, _ = await _drive(px.info["data_address"], batches)
                p2 = cpu_seconds(px.pid)
            finally:
                await px.stop()
            direct_s, _ = await _drive(ns.address, batches)
            n2 = cpu_seconds(ns.proc.pid)
    finally:
        if data_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    us = 1e6 / calls
    return {"events": events, "batch_size": batch_size, "calls": calls,
            "proxy_cpu_us_per_call": round((p1 - p0) * us, 1),
            "null_server_cpu_us_per_call": round((n1 - n0) * us, 1),
            "direct_null_server_cpu_us_per_call": round((n2 - n1) * us, 1),
            "via_proxy_s": round(via_s, 3), "direct_s": round(direct_s, 3),
            "wall_ratio": round(direct_s / via_s, 3),
            "data_port_cpu_us_per_call": round((p2 - p1) * us, 1), "via_data_port_s": round(fast_s, 3)}


if __name__ == "__main__":
    import click

    @click.command()
    @click.option("--events", type=int, default=20000)
    @click.option("--batch-size", type=int, default=100)
    @click.option("--seed", type=int, default=1)
    def main(events: int, batch_size: int, seed: int) -> None:
        print(json.dumps(asyncio.run(run_proxy_cost(seed=seed, events=events, batch_size=batch_size))))

    main()
