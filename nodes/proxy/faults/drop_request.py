"""drop-request: the request is never forwarded; the caller hangs until its deadline.

The network lost the request on its way to the upstream node: the upstream
never executes it, the caller sees DEADLINE_EXCEEDED (an indefinite outcome
from the caller's point of view, though here surely not executed).
"""

from __future__ import annotations

from typing import Any

from nodes.proxy.fault import Call, Fault, Forward


class DropRequest(Fault):
    kind = "drop-request"
    action = "dropped-request"
    stat = "dropped"

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        await call.hang()
