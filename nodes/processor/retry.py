"""Retry an RPC with capped exponential backoff, until it succeeds.

Every retry in the processor is an explicit decision made here (the gRPC
channels have retries off: nodes/common/channels.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Collection, TypeVar

import grpc

T = TypeVar("T")
MAX_BACKOFF_MS = 1000


def backoff_s(base_ms: int, attempt: int) -> float:
    """Delay before retry ``attempt`` (1, 2, ...): ``base_ms * 2**(attempt-1)``, capped at 1 s."""
    return min(base_ms * (2 ** min(attempt - 1, 10)), MAX_BACKOFF_MS) / 1000.0


async def retry_rpc(call: Callable[[], Awaitable[T]], *, what: str, base_ms: int,
                    log: logging.Logger, fatal: Collection[grpc.StatusCode] = (),
                    on_error: Callable[[grpc.aio.AioRpcError], None] | None = None) -> T:
    """Await ``call()`` until it returns; retry on every gRPC error except ``fatal`` codes.

    Raises:
        grpc.aio.AioRpcError: the call failed with a code in ``fatal``.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() in fatal:
                raise
            attempt += 1
            if on_error is not None:
                on_error(e)
            log.info("%s failed, retrying", what,
                     extra={"code": e.code().name, "details": e.details(), "attempt": attempt})
            await asyncio.sleep(backoff_s(base_ms, attempt))
