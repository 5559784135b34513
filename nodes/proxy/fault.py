"""The one small interface every fault kind implements, and the call it acts on.

A fault is Toxiproxy's *toxic* moved from TCP bytes to single gRPC calls:
it receives the intercepted :class:`Call` and a ``forward`` continuation
(``async () -> bytes``: send the request upstream, return the response bytes,
raise :class:`grpc.aio.AioRpcError` on an upstream error status) and decides
what the caller sees. Several faults that fire on the same call are chained
in the order they were added, each wrapping the next one's ``forward``.

Probability, the count limit and the ``after_calls`` trigger are NOT handled
here: the fault table's wrapper applies them once for every kind
(Toxiproxy's ``toxicity``). The contract for a new kind (Toxiproxy's
CREATING_TOXICS.md):

- every wait is interruptible: it ends when the caller's deadline passes or
  the caller cancels (the handler task is cancelled by gRPC);
- random choices are made in :meth:`Fault.draw`, synchronously, when the call
  arrives, from the link's seeded generator, so a seed replays the same story;
- the spec is read-only once validated; a bad field raises
  :class:`InvalidFault` naming the field.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ClassVar, NoReturn

import grpc

Forward = Callable[[], Awaitable[bytes]]
"""Send the call's request upstream; return the response bytes (raises AioRpcError)."""

HANG_MARGIN_S = 1.0
"""A black-holed call gives up this long after the caller's deadline, in case
the caller's cancellation never reaches the proxy."""


class InvalidFault(ValueError):
    """A fault spec field is invalid; answered as INVALID_ARGUMENT.

    Attributes:
        field: the offending FaultSpec field ("probability", "method"...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Spec:
    """A validated fault spec (the FaultSpec message, with defaults filled in).

    Attributes:
        kind: fault kind, a key of ``nodes.proxy.faults.FAULTS``.
        method: full method name ("/testbed.v1.Broker/Produce") or "" for all.
        probability: chance in [0, 1] that a matching, eligible call fires it.
        count: fire at most this many times; 0 = unlimited.
        after_calls: eligible from the Nth matching call on (1-based); 0 = first.
        delay_ms, jitter_ms, side, code: kind-specific parameters.
    """

    kind: str
    method: str = ""
    probability: float = 1.0
    count: int = 0
    after_calls: int = 0
    delay_ms: int = 0
    jitter_ms: int = 0
    side: str = ""
    code: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", 0) or k == "probability"}


class Call:
    """One intercepted unary call, as a fault sees it.

    Attributes:
        link: the proxy's link name ("producer-broker").
        method: full method name ("/testbed.v1.Broker/Produce").
        number: the call's number on this link (1-based, in arrival order).
        context: the server-side context of the caller's call.
    """

    __slots__ = ("link", "method", "number", "context")

    def __init__(self, link: str, method: str, number: int,
                 context: grpc.aio.ServicerContext) -> None:
        self.link, self.method, self.number, self.context = link, method, number, context

    def time_remaining(self) -> float | None:
        """Seconds until the caller's deadline; None when the caller set none."""
        return self.context.time_remaining()

    async def hang(self) -> NoReturn:
        """Black-hole the call: never answer; the caller sees DEADLINE_EXCEEDED.

        Ends by cancellation when the caller's deadline passes (gRPC cancels
        the handler). As a safety net, aborts with DEADLINE_EXCEEDED itself
        ``HANG_MARGIN_S`` after the deadline. Without a deadline it waits
        until the caller cancels or the proxy stops.
        """
        remaining = self.time_remaining()
        if remaining is None:
            await asyncio.get_running_loop().create_future()
        else:
            await asyncio.sleep(max(remaining, 0.0) + HANG_MARGIN_S)
        await self.context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "black-holed by proxy")
        raise AssertionError("unreachable")  # context.abort raises

    async def sleep(self, delay_s: float) -> None:
        """Wait ``delay_s`` seconds (interrupted by the caller's deadline or cancel)."""
        if delay_s > 0:
            await asyncio.sleep(delay_s)


class Fault:
    """Base class of one fault kind. Subclasses set ``kind`` and ``action``.

    Attributes:
        kind: the name users type ("drop-response").
        action: what firing does, written to faults.jsonl ("dropped-response").
        stat: the Stats counter a firing increments ("dropped", "delayed"...).
        cuts_in_flight: see below (partition only).
    """

    kind: ClassVar[str]
    action: ClassVar[str]
    stat: ClassVar[str]
    cuts_in_flight: ClassVar[bool] = False
    """True: calls already upstream when the fault was added lose their response
    (answered by the forwarder, see ``FaultTable.cut_in_flight``)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.validate(spec)

    @classmethod
    def validate(cls, spec: Spec) -> None:
        """Check kind-specific fields. Raises: InvalidFault naming the field."""

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """Per-call random parameters, drawn when the call arrives (default: none).

        The returned dict is passed to :meth:`apply` and written to faults.jsonl.
        """
        return {}

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        """Act on one call; return the response bytes the caller sees.

        Raises:
            grpc.aio.AioRpcError: an upstream error, passed on to the caller.
            asyncio.CancelledError: the caller's deadline passed or it cancelled.
        """
        raise NotImplementedError


def now() -> float:
    """Wall-clock time (unix seconds) for the history."""
    return time.time()
