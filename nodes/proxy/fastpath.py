"""The proxy's data port: HTTP/2 relayed below gRPC while the link has no fault.

Every call through the gRPC forwarder (nodes/proxy/forwarder.py) costs a grpc.aio
server side and a client side, about 2x a do-nothing grpc.aio server (issue 16,
docs/bench.md): that is the price of acting on each call. A link with no fault
does not need to act, so its connections are relayed as bytes, like Toxiproxy
relays TCP, and only the connections made while a fault is active go through the
forwarder. The data port (``--data-listen``) picks per accepted connection:

- **clean**: no fault active and the upstream accepts a TCP connection: the bytes go
  straight to the upstream node. Frames are cut at their boundaries
  (nodes/proxy/h2.py) and the client's header blocks HPACK-decoded, so every call is
  still counted (``Forwarder.calls``, the per-method ``calls`` / ``forwarded``).
- **faulty**: a fault is active (or the upstream refused): the bytes go to the
  proxy's own gRPC port, where the forwarder applies the faults as before.

**Switching** uses HTTP/2's GOAWAY (RFC 9113 section 6.8, what Envoy and gRPC servers
send at a connection's maximum age): when the first fault is added, every clean
connection gets a GOAWAY naming the last stream already relayed; grpc-core finishes
those calls there and opens a new connection for the next ones, which lands on the
forwarder. A stream the client opened after that id (sent before it read the GOAWAY)
is not relayed: relaying it would let a call the proxy received after the fault pass
unfaulted. grpc-core fails it UNAVAILABLE without executing it; with retries enabled it
would retry it transparently on the new connection, but this testbed's channels
disable retries (nodes/common/channels.py), so the race surfaces as an UNAVAILABLE of a
call that never ran: the reason the data port is off by default (TESTBED_PROXY_FAST=1
turns it on). When the last fault goes, the faulty connections get a soft GOAWAY
(last-stream-id 2^31-1: no stream is refused; what the client still sends there is
forwarded, with no fault) and come back clean. A fault thus acts on the calls that
arrive after it was added, as on the forwarder; the calls already relayed on a clean connection finish
unfaulted, except:

- a **partition** added while calls are in flight cuts their responses, as the
  forwarder's ``cut_in_flight`` does: each such call is recorded as
  ``black-holed-response`` and nothing more of that connection reaches the client
  (an in-flight call of a method the partition does not name, on the same
  connection, is held as well: HPACK forbids dropping only some responses).

**Caller gone**: a request the proxy has received is relayed to its end even when
the caller's connection closes (kill -9): the upstream connection stays until every
call whose request was complete has its response (counted in ``caller_gone``,
bounded by ``ORPHAN_WAIT_S``), as the forwarder does. A caller that cancels (or
passes its deadline) after sending its whole request resets its stream; that
RST_STREAM is not relayed (also ``caller_gone``): the upstream call runs on, bounded
by the deadline it carries (``grpc-timeout``), and its response reaches a client that
ignores frames of a stream it reset (RFC 9113 section 5.4.2).

**Backpressure**: a side whose transport is above its high-water mark pauses reading
on the other side until it drains (``pause_writing`` / ``resume_writing``).

Not done on clean connections: ``upstream_errors`` (it would take decoding the
server's header blocks too); the forwarder's UNIMPLEMENTED for a method unknown on
the link (the upstream answers it itself).

Sources: RFC 9113 (HTTP/2) sections 4, 5.1, 6.8 (GOAWAY's last-stream-id: streams
above it were not processed and may be retried); the graceful drain that Envoy and
gRPC servers do at a connection's maximum age (``max_connection_age``: GOAWAY, then
finish the streams below it); Toxiproxy (a TCP relay whose toxics act only when
present).

**Upstream down**: a clean connection whose upstream closes is closed (its calls fail
UNAVAILABLE, as on a direct link); a new connection the upstream refuses goes to the
forwarder, which answers UNAVAILABLE per call; once the upstream accepts again
(probed every ``PROBE_S``) those connections get a GOAWAY and come back clean.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from hpack import Decoder
from hpack.exceptions import HPACKError

from nodes.common.channels import split_address
from nodes.proxy import h2
from nodes.proxy.forwarder import Forwarder
from nodes.proxy.stats import OTHER, LinkStats
from nodes.proxy.table import FaultTable

ORPHAN_WAIT_S = 30.0
"""How long a clean connection whose caller is gone waits for the responses of the
requests it relayed (s)."""
PROBE_S = 0.1
"""Period of the upstream probe while connections fell back to the forwarder (s)."""
HPACK_TABLE_MAX = 1 << 16
"""Largest HPACK dynamic table the decoder accepts (bytes; the default is 4,096)."""


class _Side(asyncio.Protocol):
    """One TCP side of a relayed connection; hands everything to its :class:`_Relay`."""

    def __init__(self, relay: "_Relay", client: bool) -> None:
        self.relay, self.client = relay, client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.client:
            transport.pause_reading()   # until the backend is connected
            self.relay.front._accepted(self.relay)

    def data_received(self, data: bytes) -> None:
        if self.client:
            self.relay.from_client(data)
        elif self is self.relay.backend:   # not a backend connection given up (_connect)
            self.relay.from_backend(data)

    def connection_lost(self, exc) -> None:
        if self.client:
            self.relay.client_lost()
        elif self is self.relay.backend:
            self.relay.backend_lost()

    def pause_writing(self) -> None:
        other = self.relay.backend if self.client else self.relay.client
        if other.transport is not None:
            other.transport.pause_reading()

    def resume_writing(self) -> None:
        other = self.relay.backend if self.client else self.relay.client
        if other.transport is not None and not other.transport.is_closing():
            other.transport.resume_reading()


class _Stream:
    """A client stream open on a relayed connection: ``method`` (its ``:path``, "" until
    decoded), ``number`` (its call number on the link, 0 on a faulty connection),
    ``complete`` (the client sent END_STREAM), ``gone`` (its caller cancelled it after
    that: counted in ``caller_gone``, its response is still awaited)."""

    __slots__ = ("method", "number", "complete", "gone")

    def __init__(self, method: str, number: int, complete: bool) -> None:
        self.method, self.number, self.complete = method, number, complete
        self.gone = False


class _Relay:
    """One client connection and its backend connection."""

    def __init__(self, front: "FastPath", conn_id: int) -> None:
        self.front, self.conn_id = front, conn_id
        self.client = _Side(self, client=True)
        self.backend = _Side(self, client=False)
        self.kind = ""                 # "clean" or "faulty", once connected
        self.fallback = False          # faulty because the upstream refused
        self.c2s = h2.FrameSplitter(preface=True)
        self.s2c = h2.FrameSplitter(preface=False)
        self.decoder: Decoder | None = None
        self.block: tuple[int, bytearray] | None = None   # a header block awaiting CONTINUATION
        self.last_stream = 0           # highest client stream relayed
        self.goaway_at: int | None = None   # our strict GOAWAY's last-stream-id (clean)
        self.draining = False          # our soft GOAWAY was sent (faulty)
        self.skipped: set[int] = set()  # streams opened after our GOAWAY: not relayed
        self.streams: dict[int, _Stream] = {}
        self.blackholed = False
        self.client_gone = False
        self.closed = False
        self.early: list[bytes] = []

    # -- client -> backend ------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        try:
            out, frames = self.c2s.feed(data)
            skip = [f for f in frames if self._relay_client_frame(f)]   # every frame, in order
        except ValueError as e:   # not HTTP/2, or a malformed HEADERS frame
            self.front.log.warning("data port: %s; connection closed", e,
                                   extra={"connection": self.conn_id})
            self.close()
            return
        if not skip:
            if out:
                self._to_backend(out)
            return
        mv, pieces, pos = memoryview(out), [], 0
        for f in skip:
            pieces.append(mv[pos:f.start])
            pos = f.end
        pieces.append(mv[pos:])
        self._to_backend(b"".join(pieces))

    def _relay_client_frame(self, f: h2.Frame) -> bool:
        """Track one client frame; True if it must NOT be relayed."""
        t, s = f.type, f.stream
        if t == h2.HEADERS:
            if s in self.skipped or (s > self.last_stream and self.goaway_at is not None
                                     and s > self.goaway_at):
                self.skipped.add(s)
                return True
            if s > self.last_stream:
                self.last_stream = s
                st = self.streams[s] = _Stream("", 0, bool(f.flags & h2.END_STREAM))
                if self.decoder is None and self.kind == "clean":
                    self.front.count(st, OTHER)   # HPACK failed earlier: counted, method unknown
            elif f.flags & h2.END_STREAM and s in self.streams:
                self.streams[s].complete = True   # request trailers (not sent by gRPC clients)
            if self.decoder is not None:   # every block: the HPACK state must follow the client's
                frag = h2.header_block_fragment(f)
                if f.flags & h2.END_HEADERS:
                    self._decoded(s, frag)
                else:
                    self.block = (s, bytearray(frag))
            return False
        if t == h2.CONTINUATION:
            if s in self.skipped:
                return True
            if self.block is not None and self.block[0] == s:
                self.block[1].extend(f.payload)
                if f.flags & h2.END_HEADERS:
                    stream, buf = self.block
                    self.block = None
                    self._decoded(stream, memoryview(buf))
            return False
        if t == h2.DATA:
            if s in self.skipped:
                return True
            if f.flags & h2.END_STREAM:
                st = self.streams.get(s)
                if st is not None:
                    st.complete = True
            return False
        if t == h2.RST_STREAM:
            if s in self.skipped:
                return True
            st = self.streams.get(s)
            if st is not None and st.complete and self.kind == "clean":
                # The caller cancelled (or passed its deadline) after sending its whole
                # request: the upstream call runs on, as on the forwarder (module doc); the
                # client ignores what still comes on a stream it reset (RFC 9113 5.4.2).
                if not st.gone:
                    st.gone = True
                    self.front.forwarder.caller_gone += 1
                return True
            self.streams.pop(s, None)
        return False

    def _decoded(self, stream: int, block: memoryview) -> None:
        """Count the call whose request headers ``block`` are (clean connections)."""
        try:
            headers = self.decoder.decode(bytes(block))
        except HPACKError as e:
            self.front.log.warning("data port: HPACK: %s; the calls of this connection "
                                   "are counted under (other)", e, extra={"connection": self.conn_id})
            self.decoder = None
            headers = [(":path", OTHER)]
        st = self.streams.get(stream)
        if st is not None and not st.number:
            path = next((v for k, v in headers if k == ":path"), "")
            self.front.count(st, path)

    # -- backend -> client ------------------------------------------------------------

    def from_backend(self, data: bytes) -> None:
        out, frames = self.s2c.feed(data)
        goaways = []
        for f in frames:
            if (f.type in (h2.HEADERS, h2.DATA) and f.flags & h2.END_STREAM) or f.type == h2.RST_STREAM:
                self.streams.pop(f.stream, None)
            elif f.type == h2.GOAWAY and self.goaway_at is not None:
                goaways.append(f)
        if goaways:   # the server's own GOAWAY after ours: never raise the last stream id
            out = h2.cap_goaways(out, goaways, self.goaway_at)
        if self.client_gone:
            if not any(st.complete for st in self.streams.values()):
                self.close()
            return
        if out and not self.blackholed and self.client.transport is not None:
            self.client.transport.write(out)

    def _to_backend(self, data: bytes) -> None:
        t = self.backend.transport
        if t is None:
            self.early.append(data)   # before the backend connected
        elif not t.is_closing():
            t.write(data)

    # -- switching and ends -----------------------------------------------------------

    def send_goaway(self) -> bool:
        """Tell the client to open a new connection for its next calls; False if this
        connection got one already or is gone.

        A clean connection gets a strict GOAWAY: last-stream-id = the last stream relayed;
        a stream the client opened after it (sent before the client read the GOAWAY) is
        not relayed, so a fault acts on every call the proxy receives after it was added.
        grpc-core fails such a stream UNAVAILABLE ("GOAWAY received"), never executed,
        and retries it transparently only when retries are enabled: this testbed's
        channels disable them (nodes/common/channels.py), so that race surfaces as an
        UNAVAILABLE the node handles (docs/bench.md, issue 16 section 9). A faulty
        connection gets a soft GOAWAY (last-stream-id 2^31-1, RFC 9113 6.8's first
        GOAWAY of a graceful shutdown): the streams the client opens before reading it
        are still relayed to the forwarder, which with no fault forwards them as the
        clean path would, so the way back to the clean path refuses no call."""
        if self.goaway_at is not None or self.draining or self.closed or self.client_gone:
            return False
        if self.kind == "clean":
            self.goaway_at = self.last_stream
            self.client.transport.write(h2.goaway(self.last_stream))
        else:
            self.draining = True
            self.client.transport.write(h2.goaway(h2.MAX_STREAM_ID))
        return True

    def cut(self, table: FaultTable, stats: LinkStats) -> int:
        """A partition came up: record and hold the responses of the calls in flight that
        it cuts (module doc); returns how many."""
        cut = 0
        for st in self.streams.values():
            if st.number and table.cut_in_flight(st.method, st.number):
                stats.of(st.method).dropped += 1
                cut += 1
        if cut:
            self.blackholed = True
        return cut

    def client_lost(self) -> None:
        """The client's connection closed: on a clean connection with requests relayed
        whole and not yet answered, keep the upstream connection (discarding what it
        sends) until they are, at most ORPHAN_WAIT_S; else close."""
        if self.closed:
            return
        pending = [st for st in self.streams.values() if st.complete]
        if self.kind == "clean" and pending:
            self.client_gone = True
            self.front.forwarder.caller_gone += sum(1 for st in pending if not st.gone)
            backend = self.backend.transport
            if backend is not None and not backend.is_closing():
                backend.resume_reading()   # it may have been paused for the client's sake
            asyncio.get_running_loop().call_later(ORPHAN_WAIT_S, self.close)
            return
        self.close()

    def backend_lost(self) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.backend):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        self.front._closed(self)


class FastPath:
    """The data port of one proxy (module doc).

    Args:
        link: the link name. listen: "host:port" to bind ("127.0.0.1:0" picks a port).
        upstream: "host:port" of the upstream node.
        table, stats, forwarder: the proxy's fault table, counters and forwarder.
        log: the proxy's logger.
    """

    def __init__(self, link: str, listen: str, upstream: str, table: FaultTable,
                 stats: LinkStats, forwarder: Forwarder, log: logging.Logger) -> None:
        self.link, self.listen, self.upstream, self.log = link, listen, upstream, log
        self.table, self.stats, self.forwarder = table, stats, forwarder
        self.grpc_address = ""          # the proxy's own gRPC port: set before bind
        self.address = ""
        self.server: asyncio.base_events.Server | None = None
        self.relays: dict[int, _Relay] = {}
        self.accepted = 0
        self.goaways = 0
        self._faulty_mode = bool(table.active)
        self._probe: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        table.on_change = self.on_table_change

    async def bind(self) -> str:
        """Bind the data port; return "host:port" (a restart binds the same port).

        Raises: OSError if the address cannot be bound."""
        host, port = split_address(self.address or self.listen)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Relay(self, self._next_id()).client,
                                               host, port, reuse_address=True)
        self.address = f"{host}:{self.server.sockets[0].getsockname()[1]}"
        return self.address

    def _next_id(self) -> int:
        self.accepted += 1
        return self.accepted

    def _accepted(self, relay: _Relay) -> None:
        self.relays[relay.conn_id] = relay
        task = asyncio.ensure_future(self._connect(relay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, relay: _Relay) -> None:
        loop = asyncio.get_running_loop()
        if not self.table.active:
            try:
                await loop.create_connection(lambda: relay.backend, *split_address(self.upstream))
                relay.kind = "clean"
                relay.decoder = Decoder(max_header_list_size=1 << 20)
                relay.decoder.max_allowed_table_size = HPACK_TABLE_MAX
            except OSError:
                relay.fallback = True
                self._start_probe()
            if relay.kind == "clean" and self.table.active and not relay.closed:
                # A fault came while connecting: nothing of the client was read yet, so
                # give this upstream connection up and go to the forwarder (no GOAWAY).
                relay.backend.transport.close()
                relay.backend, relay.kind, relay.decoder = _Side(relay, client=False), "", None
        if not relay.kind:
            try:
                await loop.create_connection(lambda: relay.backend, *split_address(self.grpc_address))
                relay.kind = "faulty"
            except OSError as e:
                self.log.warning("data port: cannot reach the proxy's own gRPC port: %s", e)
                relay.close()
                return
        if relay.closed:
            relay.backend.transport.close()
            return
        if relay.early:
            relay.backend.transport.write(b"".join(relay.early))
            relay.early.clear()
        if relay.kind == "faulty" and not self.table.active and not relay.fallback:
            # the table emptied while this connection was being set up
            self._goaway(relay)
        relay.client.transport.resume_reading()

    def count(self, stream: _Stream, path: str) -> None:
        """A call relayed on a clean connection: the forwarder's counters, as if it had
        forwarded it."""
        self.forwarder.calls += 1
        stream.method, stream.number = path, self.forwarder.calls
        st = self.stats.of(path)
        st.calls += 1
        st.forwarded += 1

    def _goaway(self, relay: _Relay) -> None:
        if relay.send_goaway():
            self.goaways += 1

    def on_table_change(self) -> None:
        """FaultTable hook: the set of active faults changed."""
        faulty = bool(self.table.active)
        if faulty == self._faulty_mode:
            return
        self._faulty_mode = faulty
        for relay in list(self.relays.values()):
            if relay.kind == ("clean" if faulty else "faulty"):
                if faulty and relay.kind == "clean":
                    relay.cut(self.table, self.stats)
                self._goaway(relay)
        self.log.info("data port: %s", "faults active: new calls through the forwarder"
                      if faulty else "no fault: new calls relayed clean",
                      extra={"goaways": self.goaways})

    def _start_probe(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._probe_upstream())

    async def _probe_upstream(self) -> None:
        """While connections fell back to the forwarder: once the upstream accepts and no
        fault is active, send them a GOAWAY so they come back clean."""
        host, port = split_address(self.upstream)
        while any(r.fallback and not r.closed for r in self.relays.values()):
            await asyncio.sleep(PROBE_S)
            if self.table.active:
                continue
            try:
                _, w = await asyncio.open_connection(host, port)
            except OSError:
                continue
            w.close()
            for relay in list(self.relays.values()):
                if relay.fallback:
                    relay.fallback = False
                    self._goaway(relay)
            return

    def _closed(self, relay: _Relay) -> None:
        self.relays.pop(relay.conn_id, None)

    async def stop(self) -> None:
        """Stop accepting and close every relayed connection."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for relay in list(self.relays.values()):
            relay.close()
        for t in list(self._tasks) + ([self._probe] if self._probe else []):
            t.cancel()

    def status(self) -> dict[str, Any]:
        kinds = [r.kind for r in self.relays.values()]
        return {"data_address": self.address, "accepted": self.accepted,
                "clean": kinds.count("clean"), "faulty": kinds.count("faulty"),
                "goaways": self.goaways, "mode": "faulty" if self._faulty_mode else "clean"}

