"""blackhole: every byte of the stream is swallowed; the connection stays open until healed.

The story: a middlebox that silently eats a connection's traffic (a firewall
rule, a NAT entry that expired on one side, a misbehaving load balancer): the
sender's writes succeed, nothing arrives, no RST, no FIN. Bytes read while the
toxic is on are discarded and counted (``swallowed_bytes`` in the follow-up
record written when it is released); a close from the source is held until
then. After the heal, new bytes flow again on the same connection, so the
receiver sees a stream with a hole in it: a protocol must notice (a framing
error, a sequence gap) or lose data. Unlike a network partition, TCP does not
retransmit what was swallowed: for a partition use ``partition``.
Toxiproxy's ``timeout`` toxic with timeout 0.
"""

from __future__ import annotations

from nodes.tcpproxy.toxic import Applied, Chunk, Send, Toxic


class Blackhole(Toxic):
    kind = "blackhole"
    action = "black-holed"

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        if ap.released.is_set():
            await send(chunk)
            return
        if chunk is not None:
            ap.state["swallowed_bytes"] = ap.state.get("swallowed_bytes", 0) + len(chunk)
            ap.state["swallowed_chunks"] = ap.state.get("swallowed_chunks", 0) + 1
            ap.stream.stats.dropped += 1
            return
        ap.stream.stats.held += 1
        await ap.hold(None)
        await send(chunk)

    def summary(self, ap: Applied) -> dict[str, int]:
        return {"swallowed_bytes": ap.state.get("swallowed_bytes", 0),
                "swallowed_chunks": ap.state.get("swallowed_chunks", 0)}
