"""Retry an RPC with capped exponential backoff while its errors are transient.

Every retry in the processor is an explicit decision made here (the gRPC
channels have retries off: nodes/common/channels.py); which codes are
transient, and the backoff cap, are the one rule of nodes/common/retry.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Collection, TypeVar

import grpc

from nodes.common.retry import MAX_BACKOFF_MS, PermanentRpcError, backoff_s, is_permanent  # noqa: F401

T = TypeVar("T")


async def retry_rpc(call: Callable[[], Awaitable[T]], *, what: str, base_ms: int,
                    log: logging.Logger, fatal: Collection[grpc.StatusCode] = (),
                    on_error: Callable[[grpc.aio.AioRpcError], None] | None = None) -> T:
    """Await ``call()`` until it returns; retry transient errors only.

    Raises:
        grpc.aio.AioRpcError: the call failed with a code in ``fatal`` (the caller handles it).
        PermanentRpcError: the call failed with any other permanent code
            (nodes/common/retry.py): never retried.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() in fatal:
                raise
            if on_error is not None:
                on_error(e)
            if is_permanent(e.code()):
                log.error("%s failed with a permanent error, not retried", what,
                          extra={"code": e.code().name, "details": e.details()})
                raise PermanentRpcError(what, e.code(), e.details() or "") from None
            attempt += 1
            log.info("%s failed, retrying", what,
                     extra={"code": e.code().name, "details": e.details(), "attempt": attempt})
            await asyncio.sleep(backoff_s(base_ms, attempt))
