"""drop-response: forwarded and executed upstream, the response discarded (the lost ACK).

The seed's "their reply got stuck": the broker appended the batch (or the
sink applied the write), but the answer never reaches the caller, who hangs
until its deadline and sees DEADLINE_EXCEEDED. An at-least-once caller
retries and creates a duplicate; Kafka's idempotent producer exists for this.
An upstream error answer is discarded the same way.
"""

from __future__ import annotations

from typing import Any

import grpc

from nodes.proxy.fault import Call, Fault, Forward


class DropResponse(Fault):
    kind = "drop-response"
    action = "dropped-response"
    stat = "dropped"

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        try:
            await forward()
        except grpc.aio.AioRpcError:
            pass
        await call.hang()
