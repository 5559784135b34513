"""Helpers for the TCP proxy tests: an in-test echo server behind a real proxy process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.proxy_client import ProxyControlClient
from harness.tcp_link import TcpLinkProcess
from nodes.proxy.history import read_history

IO_TIMEOUT_S = 5.0
"""Bound of every read the tests wait on (s): a hang fails the test, never blocks it."""


class EchoServer:
    """A loopback TCP server that echoes every read back and records its size.

    Attributes:
        reads: sizes of every read, per connection (in accept order).
        closed: set per connection when the client's EOF (or an error) was seen.
        errors: exceptions seen per connection (ConnectionResetError on an RST).
    """

    def __init__(self) -> None:
        self.reads: list[list[int]] = []
        self.errors: list[BaseException | None] = []
        self.accepted = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.ended: list[asyncio.Event] = []
        self._grew = asyncio.Event()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = len(self.reads)
        self.reads.append([])
        self.errors.append(None)
        self.ended.append(asyncio.Event())
        self.writers.append(writer)
        self.accepted.set()
        self._grew.set()
        self._grew = asyncio.Event()
        try:
            while data := await reader.read(65536):
                self.reads[i].append(len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError) as e:
            self.errors[i] = e
        finally:
            self.ended[i].set()
            writer.close()

    async def connection(self, i: int) -> int:
        """Wait until connection ``i`` (0-based, accept order) was accepted; return ``i``."""
        while len(self.reads) <= i:
            await asyncio.wait_for(self._grew.wait(), IO_TIMEOUT_S)
        return i

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def proxy_in_front(spawner, upstream: str, link: str = "t1", seed: int = 7,
                         dirname: str | None = None) -> TcpLinkProcess:
    """Start a real TCP proxy process (owned by the ``spawn`` fixture, ended by pid)."""
    p = TcpLinkProcess(link, upstream, spawner.root / (dirname or f"tcpproxy-{link}"), seed=seed)
    spawner.procs.append(p)
    await p.start()
    return p


async def connect(px: TcpLinkProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = px.data_address.rsplit(":", 1)
    return await asyncio.wait_for(asyncio.open_connection(host, int(port)), IO_TIMEOUT_S)


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes,
                    timeout_s: float = IO_TIMEOUT_S) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout_s)


async def control(px: TcpLinkProcess, op: str, *args, **kwargs):
    async with ProxyControlClient(px.address) as c:
        return await getattr(c, op)(*args, **kwargs)


def records(px: TcpLinkProcess, type_: str = "fault") -> list[dict]:
    return [r for r in read_history(Path(px.data_dir) / "faults.jsonl") if r["type"] == type_]
