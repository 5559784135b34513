"""Per-direction counters of a TCP proxy (the Stats RPC and the Status JSON).

The Stats RPC reuses the gRPC proxy's MethodStats message with the direction
as the "method": ``calls`` = chunks read from the source, ``forwarded`` =
writes to the destination, ``dropped`` = chunks swallowed (blackhole),
``delayed`` = chunks delayed (latency, bandwidth, slicer, a delayed close),
``errored`` = connections reset, ``upstream_errors`` = failed upstream
connects (on "upstream"), ``held`` = chunks held (partition, a held close),
``bytes_in`` / ``bytes_out``.
"""

from __future__ import annotations

COUNTERS = ("calls", "forwarded", "dropped", "duplicated", "delayed", "errored", "upstream_errors",
            "held", "bytes_in", "bytes_out")


class StreamStats:
    """Counters of one direction over every connection (plain ints: one event loop)."""

    __slots__ = COUNTERS

    def __init__(self) -> None:
        for c in COUNTERS:
            setattr(self, c, 0)

    def to_json(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in COUNTERS}
