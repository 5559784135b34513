"""slow-close: the close (FIN) of the stream is delivered ``delay_ms`` late; data is not.

The story: a peer whose close lingers (a server draining, a proxy or load
balancer holding the socket, a half-open connection): the receiver saw the
last bytes but not the end, so a client waiting for EOF to complete a
response (or a server waiting to free a connection slot) hangs. Removing
the toxic delivers the close at once. Toxiproxy's ``slow_close``.
"""

from __future__ import annotations

from nodes.tcpproxy.toxic import Applied, Chunk, Send, Toxic


class SlowClose(Toxic):
    kind = "slow-close"
    action = "close-delayed"
    params = ("delay_ms",)
    required = ("delay_ms",)

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        if chunk is None and not ap.released.is_set():
            ap.stream.stats.delayed += 1
            ap.record("close-delayed", delay_ms=self.spec.delay_ms)
            await ap.hold(self.spec.delay_ms / 1000.0)
        await send(chunk)
