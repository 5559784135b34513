"""What the TCP fault proxy (nodes/tcpproxy) costs on loopback with no toxic.

    python -m harness.bench.tcp_proxy [--round-trips 10000] [--size 100] [--bulk-mb 100]

Runs the same two workloads against an in-process asyncio server directly and
through a real proxy process in front of it, and prints one JSON object:

- round trips: ``--round-trips`` sequential request/echo pairs of ``--size``
  bytes on one connection: mean and p99 latency (µs) direct and proxied, and
  the latency the proxy adds;
- bulk: ``--bulk-mb`` MB (10^6 bytes) sent one way to a server that counts them
  (then one byte back): MB/s direct and proxied;
- the proxy process's CPU time per round trip (µs) and per 100 MB (s), which
  depends less on how busy the machine is than the wall-clock figures.

Figures are measurements on the machine at hand (the client and server share
one event loop), never asserted.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import click

from harness.bench.procstat import cpu_seconds
from nodes.common.channels import split_address
from harness.tcp_link import TcpLinkProcess

CHUNK = 256 * 1024


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = await reader.readexactly(1)
    if first == b"B":  # bulk: count until EOF, answer one byte
        n = 0
        while data := await reader.read(CHUNK):
            n += len(data)
        writer.write(b"k")
    else:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    await writer.drain()
    writer.close()


async def round_trips(address: str, n: int, size: int) -> dict[str, float]:
    r, w = await asyncio.open_connection(*split_address(address))
    w.write(b"E")
    msg = b"x" * size
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        w.write(msg)
        await r.readexactly(size)
        times.append(time.perf_counter() - t0)
    w.close()
    times.sort()
    return {"mean_us": round(sum(times) / n * 1e6, 1), "p99_us": round(times[int(n * 0.99)] * 1e6, 1)}


async def bulk(address: str, mb: int) -> float:
    r, w = await asyncio.open_connection(*split_address(address))
    block = b"b" * CHUNK
    total = mb * 1_000_000
    t0 = time.perf_counter()
    w.write(b"B")
    sent = 0
    while sent < total:
        part = block[:min(CHUNK, total - sent)]
        w.write(part)
        await w.drain()
        sent += len(part)
    w.write_eof()
    assert await r.readexactly(1) == b"k"
    elapsed = time.perf_counter() - t0
    w.close()
    return round(mb / elapsed, 1)


async def measure(n: int, size: int, mb: int) -> dict:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    upstream = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        px = TcpLinkProcess("bench", upstream, Path(tmp) / "tcpproxy")
        await px.start()
        try:
            out = {"round_trips": n, "size_bytes": size, "bulk_mb": mb}
            out["direct"] = await round_trips(upstream, n, size)
            cpu0 = cpu_seconds(px.pid)
            out["proxied"] = await round_trips(px.data_address, n, size)
            cpu1 = cpu_seconds(px.pid)
            out["added_mean_us"] = round(out["proxied"]["mean_us"] - out["direct"]["mean_us"], 1)
            out["direct_mb_s"] = await bulk(upstream, mb)
            out["proxied_mb_s"] = await bulk(px.data_address, mb)
            cpu2 = cpu_seconds(px.pid)
            if None not in (cpu0, cpu1, cpu2):
                out["proxy_cpu_us_per_round_trip"] = round((cpu1 - cpu0) / n * 1e6, 1)
                out["proxy_cpu_s_per_100_mb"] = round((cpu2 - cpu1) / mb * 100, 2)
        finally:
            await px.stop()
            server.close()
    return out


@click.command()
@click.option("--round-trips", "n", type=click.IntRange(1, 10_000_000), default=10_000, show_default=True)
@click.option("--size", type=click.IntRange(1, 1 << 20), default=100, show_default=True,
              help="Bytes per round trip.")
@click.option("--bulk-mb", type=click.IntRange(1, 100_000), default=100, show_default=True)
def main(n: int, size: int, bulk_mb: int) -> None:
    """Latency and throughput cost of the TCP proxy with no toxic, on loopback."""
    click.echo(json.dumps(asyncio.run(measure(n, size, bulk_mb))))


if __name__ == "__main__":
    main()
