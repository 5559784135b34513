"""The TCP proxy of one link: the listener, its connections, the down switch, stop.

Accepts on the data address, opens one upstream connection per client
connection (timeout UPSTREAM_CONNECT_S; on failure the client gets an RST and
``upstream_errors`` counts it), wires the two streams, lets the toxic table
decide its toxics, and pumps. At most ``--max-connections`` (MAX_CONNECTIONS) connections are open at
once; a connection beyond is reset at once and counted (``refused`` in the
Status JSON). The down switch (Toxiproxy's ``enabled = false``) closes the
listening socket, so new connections are refused by the kernel
(ECONNREFUSED), and closes every open connection; up binds the same address
again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nodes.common.channels import split_address
from nodes.proxy.history import FaultHistory
from nodes.tcpproxy.link import READ_BYTES, Connection, set_rst
from nodes.tcpproxy.stats import StreamStats
from nodes.tcpproxy.table import ToxicTable
from nodes.tcpproxy.toxic import DIRECTIONS

MAX_CONNECTIONS = 256
"""Default limit of open connections per proxy (``--max-connections``; each at most
~1.5 MiB, nodes/tcpproxy/link.py); more are reset at once."""
UPSTREAM_CONNECT_S = 5.0
"""How long the proxy waits for the upstream's accept (s)."""


class TcpProxy:
    """A TCP proxy in front of ``upstream`` ("host:port").

    Args:
        link: the link's name (in faults.jsonl). listen: data address to bind
            ("127.0.0.1:0" picks a port). seed: the run's seed.
        history: faults.jsonl. log: the node's logger.
        max_connections: open connections at most; more are reset at once.
    """

    def __init__(self, link: str, listen: str, upstream: str, seed: int, history: FaultHistory,
                 log: logging.Logger, max_connections: int = MAX_CONNECTIONS) -> None:
        self.link, self.listen, self.upstream, self.log = link, listen, upstream, log
        self.history = history
        self.connections: dict[int, Connection] = {}
        self.table = ToxicTable(link, seed, history, self.connections)
        self.stats = {d: StreamStats() for d in DIRECTIONS}
        self.server: asyncio.base_events.Server | None = None
        self.address = ""
        self.down = False
        self.max_connections = max_connections
        self.accepted = 0
        self.refused = 0
        self._tasks: set[asyncio.Task] = set()

    async def bind(self) -> str:
        """Bind the data address; return "host:port" (the port is kept for later ups).

        Raises: OSError if the address cannot be bound."""
        host, port = split_address(self.address or self.listen)
        self.server = await asyncio.start_server(self._accept, host, port, reuse_address=True,
                                                 limit=READ_BYTES)
        bound = self.server.sockets[0].getsockname()
        self.address = f"{host}:{bound[1]}"
        return self.address

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The connection's handler task (asyncio's client_connected_cb)."""
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # the event loop is ending (stop): asyncio would log a cancelled handler as an error
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = Connection(self.accepted, (reader, writer), self._record, self.log)
        if self.down or len(self.connections) >= self.max_connections:
            self.refused += 1
            self.log.warning("connection refused", extra={"connection": conn.conn_id,
                                                          "down": self.down})
            conn.terminate(reset=True)
            return
        self.connections[conn.conn_id] = conn
        try:
            try:
                host, port = split_address(self.upstream)
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(host, port, limit=READ_BYTES), UPSTREAM_CONNECT_S)
            except (OSError, asyncio.TimeoutError) as e:
                self.stats["upstream"].upstream_errors += 1
                self.log.warning("upstream connect failed: %s", e,
                                 extra={"connection": conn.conn_id, "upstream": self.upstream})
                conn.terminate(reset=True)
                return
            if conn.closing:  # the proxy went down or stopped meanwhile
                set_rst(upstream[1])
                upstream[1].transport.abort()
                return
            conn.open(upstream, self.stats)
            self.table.on_connection(conn)
            await conn.run()
        finally:
            self.connections.pop(conn.conn_id, None)

    def _record(self, kind: str, fault_id: str, direction: str, action: str,
                params: dict[str, Any]) -> None:
        if action == "reset":
            self.stats[direction].errored += 1
        self.history.fault(method="tcp", fault=kind, fault_id=fault_id,
                           call=params.get("connection", 0), action=action,
                           params={"direction": direction, **params})

    def close_all(self, reset: bool = False) -> int:
        """Close every open connection; return how many."""
        conns = list(self.connections.values())
        for c in conns:
            c.terminate(reset=reset)
        return len(conns)

    async def set_down(self, down: bool) -> tuple[bool, int]:
        """The down switch; returns (was_down, connections closed).

        Raises: OSError if coming up cannot bind the address again."""
        was, closed = self.down, 0
        if down and not was:
            self.down = True
            if self.server is not None:
                self.server.close()
                self.server = None
            closed = self.close_all()
            self.history.control("down", closed=closed)
        elif not down and was:
            await self.bind()
            self.down = False
            self.history.control("up")
        return was, closed

    async def stop(self) -> None:
        """Stop accepting, close every connection (FIN; what toxics hold is cancelled)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        closed = self.close_all()
        if self._tasks:  # the handlers end once their connection is terminated
            await asyncio.wait(set(self._tasks), timeout=2.0)
        self.log.info("stopped", extra={"closed": closed})

    def status(self) -> dict[str, Any]:
        return {"link": self.link, "upstream": self.upstream, "data_address": self.address,
                "down": self.down, "accepted": self.accepted, "refused": self.refused,
                "open_connections": len(self.connections),
                "faults_active": list(self.table.faults),
                "faults_fired": {f: at.fired for f, at in self.table.faults.items()},
                "directions": {d: s.to_json() for d, s in self.stats.items()}}
