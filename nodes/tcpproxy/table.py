"""The toxic table of one TCP link: validation, add / remove / heal, per-connection decisions.

The wrapper every toxic shares (Toxiproxy's toxic collection and its
``toxicity``), with the connection as the unit the gRPC proxy's call is: a
toxic *sees* every connection, those open when it is added first (oldest
first) and then each new one as it is accepted; from the ``after``-th
connection it saw on, a connection is *eligible*; an eligible connection fires
the toxic with ``probability`` (one draw from the link's generator when
0 < p < 1), on at most ``count`` connections. A toxic that fires on a
connection is attached to its stream(s) in the spec's direction and acts on
every chunk from then on, until removed or healed (or the connection ends).

Determinism: the link's generator is ``random.Random(seed ^ crc32(link))``
(as the gRPC proxy's), consulted only here, synchronously, in the order
connections are accepted and toxics added; each stream a toxic fires on gets
its own generator seeded from (link seed, fault id, connection id,
direction), so per-chunk draws (jitter, slice sizes) do not depend on how
other connections interleave.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterable

from nodes.common.limits import MAX_FAULT_MS, short
from nodes.proxy.fault import InvalidFault
from nodes.proxy.history import FaultHistory
from nodes.proxy.table import link_seed
from nodes.tcpproxy.link import Connection
from nodes.tcpproxy.toxic import DIRECTION_CHOICES, Applied, TcpSpec, Toxic
from nodes.tcpproxy.toxics import TOXICS

MAX_RATE_KBPS = 10_000_000
"""bandwidth: at most 10 GB/s (INVALID_ARGUMENT above)."""
MAX_BYTES = 1 << 40
"""limit-data / reset / slicer ``bytes``: at most 1 TiB (INVALID_ARGUMENT above)."""


def make_spec(link: str, *, kind: str, direction: str = "", probability: float | None = None,
              count: int = 0, after: int = 0, delay_ms: int = 0, jitter_ms: int = 0,
              rate_kbps: int = 0, bytes: int = 0, spec_link: str = "") -> TcpSpec:
    """Validate a toxic spec for a TCP proxy on ``link``.

    Raises:
        InvalidFault: naming the field: kind (unknown), link (not this proxy's),
            direction, probability (NaN or outside [0, 1]), count / after /
            delay_ms / jitter_ms / rate_kbps / bytes (negative or too large),
            or a field the kind does not take / needs.
    """
    if kind not in TOXICS:
        raise InvalidFault("kind", f"unknown toxic {short(kind)} (one of {', '.join(TOXICS)})")
    if spec_link and spec_link != link:
        raise InvalidFault("link", f"{short(spec_link)} is not this proxy's link {link!r}")
    direction = direction or "both"
    if direction not in DIRECTION_CHOICES:
        raise InvalidFault("direction", f"must be one of {', '.join(DIRECTION_CHOICES)}, "
                                        f"got {short(direction)}")
    p = 1.0 if probability is None else float(probability)
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise InvalidFault("probability", f"must be in [0, 1], got {probability}")
    limits = {"count": None, "after": None, "delay_ms": MAX_FAULT_MS, "jitter_ms": MAX_FAULT_MS,
              "rate_kbps": MAX_RATE_KBPS, "bytes": MAX_BYTES}
    values = {"count": count, "after": after, "delay_ms": delay_ms, "jitter_ms": jitter_ms,
              "rate_kbps": rate_kbps, "bytes": bytes}
    for name, value in values.items():
        if value < 0:
            raise InvalidFault(name, f"must be >= 0, got {value}")
        if limits[name] is not None and value > limits[name]:
            raise InvalidFault(name, f"must be <= {limits[name]}, got {value}")
    spec = TcpSpec(kind=kind, direction=direction, probability=p, **values)
    TOXICS[kind].validate(spec)
    return spec


class ActiveToxic:
    """One added toxic, its counters and the streams it is attached to."""

    __slots__ = ("fault_id", "spec", "toxic", "matched", "fired", "applied")

    def __init__(self, fault_id: str, toxic: Toxic) -> None:
        self.fault_id, self.toxic, self.spec = fault_id, toxic, toxic.spec
        self.matched = 0
        self.fired = 0
        self.applied: list[Applied] = []

    @property
    def exhausted(self) -> bool:
        return self.spec.count > 0 and self.fired >= self.spec.count

    def to_json(self) -> dict[str, Any]:
        return {"fault_id": self.fault_id, **self.spec.to_json(), "matched": self.matched,
                "fired": self.fired, "exhausted": self.exhausted}


class ToxicTable:
    """The toxics of one TCP link and its seeded generator.

    Args:
        link: the link's name. seed: the run's seed. history: faults.jsonl.
        connections: the proxy's open connections by id (read, never changed here).
    """

    def __init__(self, link: str, seed: int, history: FaultHistory,
                 connections: dict[int, Connection]) -> None:
        self.link, self.seed, self.history = link, seed, history
        self.seed_of_link = link_seed(seed, link)
        self.rng = random.Random(self.seed_of_link)
        self.faults: dict[str, ActiveToxic] = {}
        self.connections = connections
        self._next_id = 1

    def add(self, spec: TcpSpec) -> str:
        """Add a validated toxic, decide it on every open connection; return its id ("f1"...)."""
        fault_id = f"f{self._next_id}"
        self._next_id += 1
        at = ActiveToxic(fault_id, TOXICS[spec.kind](spec))
        self.faults[fault_id] = at
        self.history.control("add", fault_id=fault_id, spec=spec.to_json())
        for conn_id in sorted(self.connections):
            conn = self.connections[conn_id]
            if not conn.closing and conn.streams:
                self._decide(at, conn)
        return fault_id

    def on_connection(self, conn: Connection) -> None:
        """A new connection was accepted and wired: decide every toxic on it."""
        for at in list(self.faults.values()):
            self._decide(at, conn)

    def _decide(self, at: ActiveToxic, conn: Connection) -> None:
        spec = at.spec
        if at.exhausted:
            return
        at.matched += 1
        if at.matched < spec.after:
            return
        p = spec.probability
        if p <= 0.0 or (p < 1.0 and self.rng.random() >= p):
            return
        at.fired += 1
        params = at.toxic.draw(self.rng)
        self.history.fault(method="tcp", fault=spec.kind, fault_id=at.fault_id, call=conn.conn_id,
                           action=at.toxic.action,
                           params={"direction": spec.direction, "connection": conn.conn_id,
                                   **params})
        at.applied = [ap for ap in at.applied if not ap.stream.conn.closing]  # bounded
        for d in spec.directions:
            stream = conn.streams[d]
            rng = random.Random(f"{self.seed_of_link}:{at.fault_id}:{conn.conn_id}:{d}")
            ap = Applied(at.toxic, at.fault_id, stream, rng, params)
            at.applied.append(ap)
            stream.attach(ap)

    def remove(self, fault_id: str) -> ActiveToxic:
        """Remove one toxic and release its waits. Raises: KeyError if the id is unknown."""
        at = self.faults.pop(fault_id)
        self.history.control("remove", fault_id=fault_id)
        self._release([at])
        return at

    def heal(self) -> list[ActiveToxic]:
        """Remove every toxic and release everything held; return them."""
        removed = list(self.faults.values())
        self.faults.clear()
        self.history.control("heal", removed=[at.fault_id for at in removed])
        self._release(removed)
        return removed

    def _release(self, removed: Iterable[ActiveToxic]) -> None:
        for at in removed:
            for ap in at.applied:
                ap.stream.detach(ap)
                ap.release()
                if not ap.stream.conn.closing:
                    summary = at.toxic.summary(ap)
                    if summary:
                        ap.record("released", **summary)
            at.applied = []
