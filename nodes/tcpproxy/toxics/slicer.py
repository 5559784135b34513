"""slicer: every chunk is cut into small slices written one by one, ``delay_ms`` apart.

The story: the network (small MTU, a congested path, Nagle off on the far
side) hands the receiver a message in many small reads. A protocol parser
that assumes one read = one message (a length prefix split in two, a
``\\r\\n`` split between reads) breaks: the classic framing bug. Slice sizes
are drawn uniformly in [1, ``bytes``] from the stream's seeded generator;
``delay_ms`` (0 = back to back, which the receiver's kernel may coalesce again)
separates the slices. Removing the toxic sends the rest of the chunk at once.
Toxiproxy's ``slicer``.
"""

from __future__ import annotations

from nodes.tcpproxy.toxic import Applied, Chunk, Send, Toxic


class Slicer(Toxic):
    kind = "slicer"
    action = "sliced"
    params = ("bytes", "delay_ms")
    required = ("bytes",)

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        if chunk is None or ap.released.is_set():
            await send(chunk)
            return
        i = 0
        ap.stream.stats.delayed += 1
        while i < len(chunk):
            if ap.released.is_set():
                await send(chunk[i:])
                return
            n = ap.rng.randint(1, self.spec.bytes)
            await send(chunk[i:i + n])
            ap.state["slices"] = ap.state.get("slices", 0) + 1
            i += n
            if i < len(chunk) and self.spec.delay_ms:
                await ap.hold(self.spec.delay_ms / 1000.0)

    def summary(self, ap: Applied) -> dict[str, int]:
        return {"slices": ap.state.get("slices", 0)}
