"""delay: latency with jitter, on the request side (before forwarding) or the response side.

Each firing waits ``delay_ms + uniform(0, jitter_ms)`` milliseconds, drawn
from the link's seeded generator when the call arrives. A delay longer than
the caller's deadline ends as DEADLINE_EXCEEDED (request side: the upstream
never sees the call; response side: it executed it). Toxiproxy's ``latency``.
"""

from __future__ import annotations

import random
from typing import Any

from nodes.proxy.fault import Call, Fault, Forward, InvalidFault, Spec

SIDES = ("request", "response")


class Delay(Fault):
    kind = "delay"
    action = "delayed"
    stat = "delayed"

    @classmethod
    def validate(cls, spec: Spec) -> None:
        if spec.side and spec.side not in SIDES:
            raise InvalidFault("side", f"must be one of {', '.join(SIDES)}, got {spec.side!r}")
        if spec.delay_ms == 0 and spec.jitter_ms == 0:
            raise InvalidFault("delay_ms", "a delay needs delay_ms > 0 or jitter_ms > 0")

    def draw(self, rng: random.Random) -> dict[str, Any]:
        jitter = rng.randint(0, self.spec.jitter_ms) if self.spec.jitter_ms else 0
        return {"delay_ms": self.spec.delay_ms + jitter, "side": self.spec.side or "request"}

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        delay_s = params["delay_ms"] / 1000.0
        if params["side"] == "request":
            await call.sleep(delay_s)
            return await forward()
        response = await forward()
        await call.sleep(delay_s)
        return response
