"""late: the caller gives up at its deadline, and the request still reaches upstream later.

A request held up in the network arrives after its sender has moved on: the
caller sees DEADLINE_EXCEEDED at its own deadline (it retries or goes on),
and ``hold_ms`` after that deadline the proxy delivers the same request
bytes upstream, which executes it; the upstream's answer is discarded. This
is the case of Kafka's late transaction markers (KIP-890) and of a late
offset commit overwriting a newer one (shared/incidents-2.md #9). Toxiproxy
cannot express it: it holds bytes, not calls.

Timing (``hold_ms`` > 0 required):

- the caller set a deadline: DEADLINE_EXCEEDED at that deadline (gRPC ends
  the handler); delivery upstream at deadline + hold_ms;
- no deadline: the proxy answers DEADLINE_EXCEEDED itself after hold_ms, and
  delivers hold_ms after that (2 x hold_ms after arrival).

The held delivery runs in a task of the fault, detached from the caller: its
upstream deadline is the caller's original budget (5 s without one). On
RemoveFault / Heal the held request is delivered AT ONCE (the realistic
choice: a network that heals hands over what it held; the control call
returns once it reached upstream, bounded by RELEASE_WAIT_S). On proxy stop it
is cancelled. faults.jsonl gets the firing ("held-late") when the call
arrives, then one record when the request actually reached upstream:
``"late-delivered"`` with ``outcome`` ("OK" or the upstream's status code),
``held_ms`` (since arrival) and ``released_by`` ("hold" or "release"), or
``"late-cancelled"`` if the proxy stopped first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from nodes.proxy.fault import Call, Fault, Forward, InvalidFault, Spec, outcome

NO_DEADLINE_UPSTREAM_S = 5.0
"""Upstream deadline of a late delivery whose caller had no deadline (s)."""


class Late(Fault):
    kind = "late"
    action = "held-late"
    stat = "held"

    @classmethod
    def validate(cls, spec: Spec) -> None:
        if spec.hold_ms <= 0:
            raise InvalidFault("hold_ms", "late needs hold_ms > 0 (ms after the caller's deadline)")

    def draw(self, rng) -> dict[str, Any]:
        return {"hold_ms": self.spec.hold_ms}

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        hold_s = params["hold_ms"] / 1000.0
        budget = call.budget_s
        answer_s = hold_s if budget is None else max(budget, 0.0)
        self.spawn(self._deliver_late(call, answer_s + hold_s,
                                      NO_DEADLINE_UPSTREAM_S if budget is None else max(budget, 0.5)))
        if budget is not None:
            await call.hang()
        await asyncio.sleep(answer_s)
        await call.context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"held late by proxy on {call.link} (no deadline: {params['hold_ms']} ms)")
        raise AssertionError("unreachable")  # context.abort raises

    async def _deliver_late(self, call: Call, after_s: float, timeout_s: float) -> None:
        assert call.deliver is not None
        try:
            ended = await self.hold(max(0.0, call.arrived + after_s - time.monotonic()))
            error: BaseException | None = None
            try:
                await call.deliver(timeout_s)
            except grpc.aio.AioRpcError as e:
                error = e
        except asyncio.CancelledError:
            self.record(call, "late-cancelled",
                        held_ms=round((time.monotonic() - call.arrived) * 1000))
            raise
        self.record(call, "late-delivered", outcome=outcome(error),
                    held_ms=round((time.monotonic() - call.arrived) * 1000),
                    released_by="release" if ended == "released" else "hold")
