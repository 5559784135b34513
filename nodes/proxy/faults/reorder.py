"""reorder: call N is held until call N+1 of the same method came back from upstream.

Two requests overtake each other in the network: the upstream executes the
later one first (a commit of offset 800 before the one of 500, a Produce of
batch 7 before batch 6). The fired call N waits until the NEXT call of the
same method (any number > N, fired or not) has been forwarded AND answered by
upstream, so the upstream surely saw it first; then N is forwarded and its
caller gets N's own answer.

The hold is bounded so nothing stalls: at most ``hold_ms`` (default 1000 ms),
and never past 100 ms before the caller's deadline (a caller that gave up
would turn the reorder into a drop). Without a next call in time N is
forwarded anyway. A caller that sends one call at a time never produces N+1
while N is held, so reorder needs concurrent callers (the producer's
per-partition sends, the sink pipeline's in-flight Upserts).

faults.jsonl: the firing ("held-for-reorder"), then when N is let go:
``"reordered"`` with ``after_call`` (the call that overtook it),
``"reorder-timeout"`` (no next call within the bound), or ``"released"``
(RemoveFault / Heal), each with ``held_ms``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nodes.proxy.fault import Call, Fault, Forward

DEFAULT_HOLD_MS = 1000
DEADLINE_MARGIN_S = 0.1


class Reorder(Fault):
    kind = "reorder"
    action = "held-for-reorder"
    stat = "held"

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self.waiting: list[list[Any]] = []  # [method, number, event, overtaking call number]

    @property
    def watching(self) -> bool:
        return bool(self.waiting)

    def draw(self, rng) -> dict[str, Any]:
        return {"max_hold_ms": self.spec.hold_ms or DEFAULT_HOLD_MS}

    def on_forwarded(self, method: str, number: int) -> None:
        for w in self.waiting:
            if w[0] == method and number > w[1] and not w[2].is_set():
                w[3] = number
                w[2].set()

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        wait_s = params["max_hold_ms"] / 1000.0
        remaining = call.time_remaining()
        if remaining is not None:
            wait_s = max(0.0, min(wait_s, remaining - DEADLINE_MARGIN_S))
        entry: list[Any] = [call.method, call.number, asyncio.Event(), None]
        self.waiting.append(entry)
        self._changed()
        try:
            ended = await self.hold(wait_s, entry[2])
        finally:
            self.waiting.remove(entry)
            self._changed()
        held_ms = round((time.monotonic() - call.arrived) * 1000)
        if ended == "event":
            self.record(call, "reordered", after_call=entry[3], held_ms=held_ms)
        else:
            self.record(call, "reorder-timeout" if ended == "timeout" else "released",
                        held_ms=held_ms)
        return await forward()
