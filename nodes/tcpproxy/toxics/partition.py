"""partition: nothing gets through until healed; then everything held arrives, in order.

The story: a network partition between two machines, e.g. a cluster route
between two NATS servers or a client cut off from its server. Packets are
lost, TCP keeps retransmitting, so no byte is lost as long as the connection
lives: the proxy stops passing the stream on (the chunk in hand waits, the
bounded queue fills, then the proxy stops reading and the sender's socket
buffers fill, as with unacknowledged packets). Neither a FIN nor an RST gets
through: the endpoints learn of the partition only from their own timeouts
(heartbeats, ping/pong). On heal the held bytes and a held close are delivered
in order, as TCP's retransmissions would. Connections opened during the
partition are accepted by the proxy and connected upstream but carry nothing
(unlike a real partition, where the SYN is lost, the server sees them
connect: a server that times out silent connections closes them, and that
close is held too). Jepsen's
``partition``; Toxiproxy's ``timeout`` toxic comes closest.
"""

from __future__ import annotations

import time

from nodes.tcpproxy.toxic import Applied, Chunk, Send, Toxic


class Partition(Toxic):
    kind = "partition"
    action = "partitioned"

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        if not ap.released.is_set():
            ap.stream.stats.held += 1
            ap.state.setdefault("since_ms", round(time.monotonic() * 1000))
            await ap.hold(None)
        await send(chunk)

    def summary(self, ap: Applied) -> dict[str, int]:
        """``held_ms``: how long the stream was stopped (0: nothing tried to pass)."""
        since = ap.state.get("since_ms")
        return {"held_ms": round(time.monotonic() * 1000) - since if since is not None else 0}
