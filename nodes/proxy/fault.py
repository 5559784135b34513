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
  :class:`InvalidFault` naming the field;
- a kind that holds a request past the handler (``late``, a delayed
  ``duplicate``) runs it in a task of its own (:meth:`Fault.spawn`) and waits
  with :meth:`Fault.hold`, which :meth:`Fault.release` (RemoveFault, Heal)
  ends at once: held requests are then delivered, never silently dropped;
  :meth:`Fault.close` (proxy stop) cancels them and records it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Coroutine, NoReturn

import grpc

Forward = Callable[[], Awaitable[bytes]]
"""Send the call's request upstream; return the response bytes (raises AioRpcError)."""

Deliver = Callable[[float], Awaitable[bytes]]
"""Send the call's request upstream again with a fresh timeout (s), detached from the
caller's deadline; return the response bytes (raises AioRpcError)."""

RELEASE_WAIT_S = 3.0
"""RemoveFault / Heal wait at most this long for the held requests they release to be delivered."""

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
        delay_ms, jitter_ms, side, code, hold_ms: kind-specific parameters.
        match: (FIELD, VALUE) rules on the decoded request (nodes/proxy/match.py); () = none.
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
    hold_ms: int = 0
    match: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()
               if v not in ("", 0, ()) or k == "probability"}
        if self.match:
            out["match"] = dict(self.match)
        return out


class Call:
    """One intercepted unary call, as a fault sees it.

    Attributes:
        link: the proxy's link name ("producer-broker").
        method: full method name ("/testbed.v1.Broker/Produce").
        number: the call's number on this link (1-based, in arrival order).
        context: the server-side context of the caller's call.
        deliver: send the request upstream detached from the caller (see ``Deliver``);
            None when the call was built without it (a cut in-flight call).
        budget_s: the caller's deadline budget when the call arrived (s), None if none.
        arrived: monotonic time of arrival (s).
    """

    __slots__ = ("link", "method", "number", "context", "deliver", "budget_s", "arrived")

    def __init__(self, link: str, method: str, number: int,
                 context: grpc.aio.ServicerContext, deliver: Deliver | None = None) -> None:
        self.link, self.method, self.number, self.context = link, method, number, context
        self.deliver = deliver
        self.budget_s = context.time_remaining()
        self.arrived = time.monotonic()

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
        self.fault_id = ""
        self._history: "FaultHistory | None" = None
        self._changed: Callable[[], None] = lambda: None
        self._released = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    def bind(self, fault_id: str, history: "FaultHistory", changed: Callable[[], None]) -> None:
        """Called by the fault table on add: the id, where to record, whom to tell
        when :attr:`watching` changes."""
        self.fault_id, self._history, self._changed = fault_id, history, changed

    @property
    def watching(self) -> bool:
        """True while the fault must see every forwarded call of the link
        (:meth:`on_forwarded`), even once its count is exhausted (reorder)."""
        return False

    def on_forwarded(self, method: str, number: int) -> None:
        """Call ``number`` of ``method`` came back from upstream (only while :attr:`watching`)."""

    def record(self, call: Call, action: str, **params: Any) -> None:
        """Write a follow-up record of this fault on ``call`` to faults.jsonl: what
        became of a call it fired on (``"follow_up": true``; not a firing)."""
        if self._history is not None:
            self._history.fault(method=call.method, fault=self.kind, fault_id=self.fault_id,
                                call=call.number, action=action,
                                params={**params, "follow_up": True})

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in a task owned by this fault (it outlives the caller's handler)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def hold(self, seconds: float | None, event: asyncio.Event | None = None) -> str:
        """Wait ``seconds`` (None = forever), ended early by :meth:`release` or ``event``.

        Returns: "timeout", "released" or "event" (what ended the wait).
        """
        waiters = {asyncio.ensure_future(self._released.wait()): "released"}
        if event is not None:
            waiters[asyncio.ensure_future(event.wait())] = "event"
        try:
            done, _ = await asyncio.wait(waiters, timeout=seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        ends = {waiters[w] for w in done}
        return "event" if "event" in ends else "released" if ends else "timeout"

    async def release(self, wait_s: float = RELEASE_WAIT_S) -> None:
        """End every hold now (RemoveFault, Heal); wait up to ``wait_s`` for the
        spawned deliveries to reach upstream and be recorded."""
        self._released.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_s)

    async def close(self) -> None:
        """Proxy stop: cancel what is still held (each kind records the cancellation)."""
        tasks = set(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

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


def outcome(e: BaseException | None) -> str:
    """"OK" or the status code name of an upstream error, for faults.jsonl."""
    if e is None:
        return "OK"
    if isinstance(e, grpc.aio.AioRpcError):
        return e.code().name
    return type(e).__name__


if TYPE_CHECKING:
    from nodes.proxy.history import FaultHistory


def now() -> float:
    """Wall-clock time (unix seconds) for the history."""
    return time.time()
