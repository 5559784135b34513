"""The one small interface every TCP toxic implements, and the stream it acts on.

A toxic is Toxiproxy's: it sits on one *stream* (one direction of one proxied
TCP connection: ``upstream`` = client -> server, ``downstream`` = server ->
client) and sees that stream's *chunks* (one read from the source socket,
at most READ_BYTES, stamped with its arrival time) and finally its end
(``None``: the source closed its side). :meth:`Toxic.transmit` decides what
reaches the destination by calling ``send`` (the next toxic of the stream, or
the socket) zero, one or several times. Toxics on a stream are chained in the
order they were added.

Probability (``toxicity``), the count limit and the ``after`` trigger are NOT
handled here: the toxic table's wrapper (nodes/tcpproxy/table.py) decides once
per connection whether a toxic fires on it, for every kind. The contract for a
new kind (Toxiproxy's CREATING_TOXICS.md):

- every wait is :meth:`Applied.hold`, which ends when the toxic is removed or
  healed (and is cancelled when the connection closes);
- no data dropped on the floor by accident: a chunk a toxic does not pass on is
  counted (``blackhole``) and the connection is closed on purpose
  (:class:`CloseConnection`), never silently cut;
- random choices come from the stream's own generator (:attr:`Applied.rng`),
  seeded from (seed, link, fault id, connection id, direction);
- the spec is read-only once validated; a bad field raises
  :class:`~nodes.proxy.fault.InvalidFault` naming the field.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Optional

from nodes.proxy.fault import InvalidFault

if TYPE_CHECKING:
    from nodes.tcpproxy.link import Stream

DIRECTIONS = ("upstream", "downstream")
"""upstream: client -> server bytes; downstream: server -> client bytes."""
DIRECTION_CHOICES = DIRECTIONS + ("both",)

PARAMS = ("delay_ms", "jitter_ms", "rate_kbps", "bytes")
"""The kind-specific FaultSpec fields; each kind lists the ones it reads in ``params``."""


class CloseConnection(Exception):
    """Raised by a toxic to end the whole connection on purpose (limit-data, reset).

    Attributes:
        reset: True = RST (SO_LINGER 0) on both sockets; False = a normal close (FIN).
    """

    def __init__(self, reset: bool) -> None:
        super().__init__("reset" if reset else "close")
        self.reset = reset


@dataclass(frozen=True)
class TcpSpec:
    """A validated toxic spec (the FaultSpec message, with defaults filled in).

    Attributes:
        kind: a key of ``nodes.tcpproxy.toxics.TOXICS``.
        direction: "upstream", "downstream" or "both".
        probability: chance in [0, 1] that an eligible connection fires it.
        count: fire on at most this many connections; 0 = unlimited.
        after: eligible from the Nth connection it sees on (1-based; the
            connections open when it is added come first, oldest first); 0 = first.
        delay_ms, jitter_ms, rate_kbps, bytes: kind-specific (see each toxic).
    """

    kind: str
    direction: str = "both"
    probability: float = 1.0
    count: int = 0
    after: int = 0
    delay_ms: int = 0
    jitter_ms: int = 0
    rate_kbps: int = 0
    bytes: int = 0

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS if self.direction == "both" else (self.direction,)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0) or k == "probability"}


Chunk = Optional[bytes]
"""A chunk's bytes, or None for the end of the stream (the source closed its side)."""
Send = Callable[[Chunk], Awaitable[None]]


class Applied:
    """One toxic fired on one stream (Toxiproxy's ToxicStub): its generator, state and waits.

    Attributes:
        toxic: the toxic. stream: the stream it acts on. rng: the stream's generator.
        params: what the wrapper drew when it fired (in faults.jsonl).
        released: set when the toxic is removed or healed.
        state: per-stream counters of the toxic (bytes seen, bytes swallowed...).
    """

    def __init__(self, toxic: "Toxic", fault_id: str, stream: "Stream", rng: random.Random,
                 params: dict[str, Any]) -> None:
        self.toxic, self.fault_id, self.stream, self.rng = toxic, fault_id, stream, rng
        self.params = params
        self.released = asyncio.Event()
        self.state: dict[str, int] = {}
        self.timer: asyncio.Task | None = None

    async def hold(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None = until released). Returns True if released first."""
        if self.released.is_set():
            return True
        if seconds is not None and seconds <= 0:
            return False
        try:
            await asyncio.wait_for(self.released.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def record(self, action: str, **params: Any) -> None:
        """Write a follow-up record (what the toxic did on this stream; not a firing)."""
        self.stream.conn.record(self.toxic.kind, self.fault_id, self.stream.direction, action,
                                {**params, "follow_up": True})

    def release(self) -> None:
        self.released.set()
        if self.timer is not None and not self.timer.done():
            self.timer.cancel()


class Toxic:
    """Base class of one toxic kind. Subclasses set ``kind``, ``action``, ``params``.

    Attributes:
        kind: the name users type ("slow-close").
        action: what firing does, written to faults.jsonl ("delayed").
        params: the FaultSpec fields the kind reads; any other one set is INVALID_ARGUMENT.
        required: of ``params``, those that must be > 0 (one of them, if several).
    """

    kind: ClassVar[str]
    action: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: TcpSpec) -> None:
        self.validate(spec)
        self.spec = spec

    @classmethod
    def validate(cls, spec: TcpSpec) -> None:
        """Check the kind's fields. Raises: InvalidFault naming the field."""
        for name in PARAMS:
            if getattr(spec, name) and name not in cls.params:
                raise InvalidFault(name, f"{cls.kind} does not take {name} "
                                         f"(it takes: {', '.join(cls.params) or 'nothing'})")
        if cls.required and not any(getattr(spec, n) > 0 for n in cls.required):
            raise InvalidFault(cls.required[0], f"{cls.kind} needs {' or '.join(cls.required)} > 0")

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """Per-connection parameters drawn (link generator) when it fires; default none."""
        return {}

    def summary(self, ap: Applied) -> dict[str, int]:
        """What the toxic did on a stream, for the "released" follow-up record ({} = none)."""
        return {}

    def start(self, ap: Applied) -> None:
        """Called once when the toxic is attached to a stream (reset's timer)."""

    async def transmit(self, ap: Applied, chunk: Chunk, send: Send) -> None:
        """Pass ``chunk`` on (or not). Default: unchanged.

        Raises:
            CloseConnection: end the connection now (reset, limit-data).
            asyncio.CancelledError: the connection is closing.
        """
        await send(chunk)
