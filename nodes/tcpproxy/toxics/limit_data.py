"""limit-data: the connection is closed (FIN, both sides) after ``bytes`` bytes in the direction.

The story: a connection that dies mid-transfer for a reason the endpoints do
not see coming: a proxy's per-connection byte quota, an idle/volume limit of a
NAT or cloud load balancer, a server that closes after a maximum payload. The
bytes up to the limit are delivered (the last chunk is cut there), then both
sockets are closed normally: the receiver sees a truncated stream and EOF.
Toxiproxy's ``limit_data``.
"""

from __future__ import annotations

from nodes.tcpproxy.toxic import Applied, Chunk, CloseConnection, Send, Toxic


class LimitData(Toxic):
    kind = "limit-data"
    action = "limit-armed"
    params = ("bytes",)
    required = ("bytes",)

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        if chunk is None or ap.released.is_set():
            await send(chunk)
            return
        seen = ap.state.get("bytes", 0)
        limit = self.spec.bytes
        if seen + len(chunk) < limit:
            ap.state["bytes"] = seen + len(chunk)
            await send(chunk)
            return
        await send(chunk[:limit - seen])
        ap.record("closed-at-limit", bytes=limit)
        raise CloseConnection(reset=False)
