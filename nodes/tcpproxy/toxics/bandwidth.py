"""bandwidth: the stream carries at most ``rate_kbps`` KB/s (1 KB = 1000 bytes).

The story: a thin pipe (a WAN link, a rate-limited cloud NIC, a cross-region
replication link) where a large message or a backlog takes seconds to get
through, so timeouts sized for a LAN fire. A chunk is sent in pieces of at
most 100 ms worth of bytes, each followed by the wait its size costs at the
rate; the wait is released at once when the toxic is removed. Toxiproxy's
``bandwidth``.
"""

from __future__ import annotations

from nodes.tcpproxy.toxic import Applied, Chunk, Send, Toxic


class Bandwidth(Toxic):
    kind = "bandwidth"
    action = "rate-limited"
    params = ("rate_kbps",)
    required = ("rate_kbps",)

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        if chunk is None or ap.released.is_set():
            await send(chunk)
            return
        rate = self.spec.rate_kbps * 1000  # bytes per second
        piece = max(1, rate // 10)
        ap.stream.stats.delayed += 1
        for i in range(0, len(chunk), piece):
            part = chunk[i:i + piece]
            await send(part)
            if not ap.released.is_set():
                await ap.hold(len(part) / rate)
