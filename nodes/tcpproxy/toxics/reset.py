"""reset: the connection is closed with an RST (SO_LINGER 0) on both sides.

The story: a peer that crashed and rebooted, a firewall or load balancer that
dropped its state and answers the next packet with an RST, a server's
``connection reset by peer``. When it fires: with ``bytes`` > 0, the RST
comes once that many bytes passed in the toxic's direction (the last chunk
is cut at the limit); with ``delay_ms`` > 0, ``delay_ms`` after it fired
(whichever comes first); with neither, at once. Both endpoints get
ECONNRESET (Python: ConnectionResetError); bytes in flight are lost, as with
a real RST. Toxiproxy's ``reset_peer``.
"""

from __future__ import annotations

import asyncio

from nodes.tcpproxy.toxic import Applied, Chunk, CloseConnection, Send, Toxic


class Reset(Toxic):
    kind = "reset"
    action = "reset-armed"
    params = ("bytes", "delay_ms")

    def start(self, ap: Applied) -> None:
        if self.spec.bytes > 0 and self.spec.delay_ms == 0:
            return
        ap.timer = asyncio.get_running_loop().create_task(self._timer(ap))

    async def _timer(self, ap: Applied) -> None:
        if await ap.hold(self.spec.delay_ms / 1000.0) or ap.stream.conn.closing:
            return  # removed before the timeout, or reset from the other direction already
        ap.record("reset", after_ms=self.spec.delay_ms)
        ap.stream.conn.terminate(reset=True)

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        limit = self.spec.bytes
        if chunk is None or limit <= 0 or ap.released.is_set():
            await send(chunk)
            return
        seen = ap.state.get("bytes", 0)
        if seen + len(chunk) < limit:
            ap.state["bytes"] = seen + len(chunk)
            await send(chunk)
            return
        await send(chunk[:limit - seen])
        ap.record("reset", after_bytes=limit)
        raise CloseConnection(reset=True)
