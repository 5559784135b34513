"""duplicate: the request is forwarded twice; the caller sees the first answer.

A network (or a too-eager retry layer) delivered the same request twice.
The second copy is sent after the first answer arrived, so the upstream
executes the call twice in a row; its answer (or error) is discarded. A
non-idempotent upstream (the sink's Apply) applies the increment twice; a
deduplicating one (the broker with producer id + sequence number) answers
the copy as a duplicate.
"""

from __future__ import annotations

from typing import Any

import grpc

from nodes.proxy.fault import Call, Fault, Forward


class Duplicate(Fault):
    kind = "duplicate"
    action = "duplicated"
    stat = "duplicated"

    async def apply(self, call: Call, forward: Forward, params: dict[str, Any]) -> bytes:
        first: bytes | None = None
        error: grpc.aio.AioRpcError | None = None
        try:
            first = await forward()
        except grpc.aio.AioRpcError as e:
            error = e
        try:
            await forward()
        except grpc.aio.AioRpcError:
            pass
        if error is not None:
            raise error
        assert first is not None
        return first
