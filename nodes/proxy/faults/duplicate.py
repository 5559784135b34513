"""duplicate: the request is forwarded twice; the caller sees the first answer.

A network (or a too-eager retry layer) delivered the same request twice.
The upstream executes the call twice; the copy's answer (or error) is
discarded. A non-idempotent upstream (the sink's Apply) applies the increment
twice; a deduplicating one (the broker with producer id + sequence number)
answers the copy as a duplicate.

- ``delay_ms`` = 0: the copy is sent right after the first answer arrived,
  before the caller gets it (the caller waits for both).
- ``delay_ms`` > 0: the caller gets the first answer at once, and the copy is
  sent ``delay_ms`` after that, from a task of the fault (a retransmission
  that arrives after the sender already moved on). Its upstream deadline is
  the caller's original budget (5 s without one); RemoveFault / Heal send a
  waiting copy at once; a proxy stop cancels it. faults.jsonl gets
  ``"duplicate-delivered"`` with ``outcome`` and ``delay_ms`` (measured from
  the caller's answer) when the copy came back, or ``"duplicate-cancelled"``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from nodes.proxy.fault import Call, Fault, Forward, outcome

NO_DEADLINE_UPSTREAM_S = 5.0


class Duplicate(Fault):
    kind = "duplicate"
    action = "duplicated"
    stat = "duplicated"

    def draw(self, rng) -> dict[str, Any]:
        return {"delay_ms": self.spec.delay_ms} if self.spec.delay_ms else {}

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        first: bytes | None = None
        error: grpc.aio.AioRpcError | None = None
        try:
            first = await forward()
        except grpc.aio.AioRpcError as e:
            error = e
        if self.spec.delay_ms:
            self.spawn(self._delayed_copy(call, time.monotonic(), self.spec.delay_ms / 1000.0))
        else:
            try:
                await forward()
            except grpc.aio.AioRpcError:
                pass
        if error is not None:
            raise error
        assert first is not None
        return first

    async def _delayed_copy(self, call: Call, answered: float, delay_s: float) -> None:
        assert call.deliver is not None
        try:
            await self.hold(delay_s)
            sent = time.monotonic()
            err: BaseException | None = None
            try:
                await call.deliver(NO_DEADLINE_UPSTREAM_S if call.budget_s is None
                                   else max(call.budget_s, 0.5))
            except grpc.aio.AioRpcError as e:
                err = e
        except asyncio.CancelledError:
            self.record(call, "duplicate-cancelled")
            raise
        self.record(call, "duplicate-delivered", outcome=outcome(err),
                    delay_ms=round((sent - answered) * 1000))
