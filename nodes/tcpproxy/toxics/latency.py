"""latency: every chunk (and the close) arrives ``delay_ms ± jitter_ms`` late.

The story: a long or congested path (another region, a saturated switch, a
VM whose network is throttled). Each chunk leaves ``delay`` after it *arrived*
at the proxy, so latency does not add up over a stream (a 100 ms link still
carries many chunks per 100 ms), and the stream's order is kept (a chunk with
a shorter draw waits for the one before it, as TCP would). The delay is drawn
per chunk from the stream's seeded generator, uniformly in
[delay_ms - jitter_ms, delay_ms + jitter_ms], at least 0. Removing the toxic
releases the waiting chunk at once. Toxiproxy's ``latency``.
"""

from __future__ import annotations

import time

from nodes.tcpproxy.toxic import Applied, Chunk, Send, Toxic


class Latency(Toxic):
    kind = "latency"
    action = "delayed"
    params = ("delay_ms", "jitter_ms")
    required = ("delay_ms", "jitter_ms")

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        s = self.spec
        delay_ms = s.delay_ms + (ap.rng.randint(-s.jitter_ms, s.jitter_ms) if s.jitter_ms else 0)
        wait_s = ap.stream.arrived + max(delay_ms, 0) / 1000.0 - time.monotonic()
        if wait_s > 0:
            ap.stream.stats.delayed += 1
            await ap.hold(wait_s)
        await send(chunk)
