"""One proxied TCP connection: two streams (upstream, downstream), each a reader and a writer.

    client --[upstream stream]--> proxy --> server
    client <--[downstream stream]-- proxy <-- server

Each stream has a reader task (reads at most READ_BYTES from the source socket,
stamps the chunk's arrival, puts it in a queue of at most QUEUE_CHUNKS chunks:
per-connection memory is bounded, and a full queue stops the reading, which
is TCP's back-pressure) and a writer task (takes the next chunk, runs it
through the stream's toxics, writes it to the destination). Without toxics a
chunk goes straight to the socket, written by the reader itself when nothing is
queued (the lean path: no queue, no task switch). The source's close becomes a half-close
(``write_eof``) of the destination; an RST (ECONNRESET) from either side, or
a failed write, resets both sides. The connection ends when both streams
ended, or at :meth:`Connection.terminate` (toxics, the down switch, stop).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Any, Callable

from nodes.tcpproxy.stats import StreamStats
from nodes.tcpproxy.toxic import DIRECTIONS, Applied, Chunk, CloseConnection

READ_BYTES = 128 * 1024
"""The largest chunk one read takes from a socket (bytes); also the sockets' StreamReader
limit (asyncio pauses reading beyond twice that)."""
QUEUE_CHUNKS = 4
"""Chunks a stream buffers between its reader and writer (so <= 512 KiB per stream).
A connection holds at most about 1.5 MiB: two queues, two reader buffers, two write
buffers (asyncio's 64 KiB high-water mark)."""


def set_rst(writer: asyncio.StreamWriter) -> None:
    """Arrange for the socket's close to send an RST (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


class Stream:
    """One direction of a connection (see the module docstring).

    Attributes:
        direction: "upstream" or "downstream". conn: its connection.
        toxics: the toxics fired on it, in order of addition (replaced, never mutated).
        arrived: monotonic arrival time (s) of the chunk being transmitted.
    """

    def __init__(self, conn: "Connection", direction: str, src: asyncio.StreamReader,
                 dst: asyncio.StreamWriter, stats: StreamStats) -> None:
        self.conn, self.direction, self.src, self.dst, self.stats = conn, direction, src, dst, stats
        self.toxics: tuple[Applied, ...] = ()
        self.queue: asyncio.Queue[tuple[Chunk, float]] = asyncio.Queue(QUEUE_CHUNKS)
        self.arrived = 0.0
        self.ended = False
        self.busy = False
        """True while the writer transmits a chunk (the reader then queues, to keep order)."""

    def attach(self, ap: Applied) -> None:
        self.toxics = self.toxics + (ap,)
        ap.toxic.start(ap)

    def detach(self, ap: Applied) -> None:
        self.toxics = tuple(t for t in self.toxics if t is not ap)

    async def read_loop(self) -> None:
        try:
            while True:
                data = await self.src.read(READ_BYTES)
                if not data:
                    break
                self.stats.calls += 1
                self.stats.bytes_in += len(data)
                if not self.toxics and not self.busy and self.queue.empty():
                    await self._send(data)  # the lean path: no toxic, nothing queued
                else:
                    await self.queue.put((data, time.monotonic()))
        except (ConnectionError, OSError):
            self.conn.terminate(reset=True)  # an RST from the source: pass it on
            return
        await self.queue.put((None, time.monotonic()))

    async def write_loop(self) -> None:
        try:
            while True:
                self.busy = False
                chunk, self.arrived = await self.queue.get()
                self.busy = True
                chain = self.toxics
                if chain:
                    await self._through(chain, 0, chunk)
                else:
                    await self._send(chunk)
                if chunk is None:
                    return
        except CloseConnection as c:
            self.conn.terminate(reset=c.reset)
        except (ConnectionError, OSError):
            self.conn.terminate(reset=True)
        except Exception:  # a bug in a toxic: say so, and end this connection only
            self.conn.log.exception("stream failed", extra={"connection": self.conn.conn_id,
                                                            "direction": self.direction})
            self.conn.terminate(reset=True)

    async def _through(self, chain: tuple[Applied, ...], i: int, chunk: Chunk) -> None:
        if i == len(chain):
            await self._send(chunk)
            return
        ap = chain[i]
        await ap.toxic.transmit(ap, chunk, lambda c: self._through(chain, i + 1, c))

    async def _send(self, chunk: Chunk) -> None:
        if chunk is None:
            self.ended = True
            if self.dst.can_write_eof() and not self.dst.is_closing():
                self.dst.write_eof()
            return
        if not chunk:
            return
        self.dst.write(chunk)
        self.stats.forwarded += 1
        self.stats.bytes_out += len(chunk)
        await self.dst.drain()


class Connection:
    """A client connection and its upstream connection.

    Args:
        conn_id: 1-based, in accept order. client: the accepted socket's streams.
        record: ``record(kind, fault_id, direction, action, params)`` writes faults.jsonl.
    """

    def __init__(self, conn_id: int, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 record: Callable[[str, str, str, str, dict[str, Any]], None],
                 log: logging.Logger) -> None:
        self.conn_id = conn_id
        self.client_r, self.client_w = client
        self.upstream_w: asyncio.StreamWriter | None = None
        self.streams: dict[str, Stream] = {}
        self._record, self.log = record, log
        self.tasks: list[asyncio.Task] = []
        self.done = asyncio.Event()
        self.closing = False
        self.peer = self.client_w.get_extra_info("peername")

    def record(self, kind: str, fault_id: str, direction: str, action: str,
               params: dict[str, Any]) -> None:
        self._record(kind, fault_id, direction, action, {"connection": self.conn_id, **params})

    def open(self, upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
             stats: dict[str, StreamStats]) -> None:
        """Wire the two streams (the toxic table then attaches toxics to them)."""
        up_r, self.upstream_w = upstream
        self.streams = {
            "upstream": Stream(self, "upstream", self.client_r, self.upstream_w, stats["upstream"]),
            "downstream": Stream(self, "downstream", up_r, self.client_w, stats["downstream"]),
        }

    async def run(self) -> None:
        """Pump both streams until both ended or the connection is terminated."""
        if self.closing:  # terminated before it started (a reset at once, the down switch)
            return
        loop = asyncio.get_running_loop()
        for d in DIRECTIONS:
            s = self.streams[d]
            self.tasks += [loop.create_task(s.read_loop()), loop.create_task(s.write_loop())]
        writers = {self.tasks[1], self.tasks[3]}
        try:
            await asyncio.wait(writers)
        finally:
            self.terminate(reset=False)

    def terminate(self, reset: bool) -> None:
        """Close both sockets now (RST if ``reset``), cancel the stream tasks; idempotent."""
        if self.closing:
            return
        self.closing = True
        for w in (self.client_w, self.upstream_w):
            if w is None:
                continue
            if reset:
                set_rst(w)
                w.transport.abort()
            else:
                w.close()
        me = asyncio.current_task()
        for t in self.tasks:
            if t is not me:
                t.cancel()
        for s in self.streams.values():
            for ap in s.toxics:
                if ap.timer is not None and ap.timer is not me:
                    ap.timer.cancel()
        self.done.set()
