"""Bad wire input answers INVALID_ARGUMENT, never UNKNOWN (issue 11): one server
interceptor installed by the runtime (nodes/common/runtime.py) on every node and on
the proxy's control API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc


class _Malformed:
    """What the guarded deserializer hands over instead of raising on malformed bytes."""

    __slots__ = ("error", "size")

    def __init__(self, error: Exception, size: int) -> None:
        self.error, self.size = error, size


class WireGuard(grpc.aio.ServerInterceptor):
    """Bad wire input answers INVALID_ARGUMENT; an unexpected exception is never UNKNOWN.

    grpc.aio deserializes a request before any servicer code runs, and answers a
    deserializer exception with UNKNOWN. This interceptor wraps every unary
    handler with a request deserializer (every node's services, NodeControl, the
    proxy's ProxyControl; not the proxy's raw-bytes forwarder, which passes bytes
    upstream untouched): malformed protobuf bytes reach the behaviour as a
    marker that is answered INVALID_ARGUMENT ("malformed request"). An exception a
    servicer did not turn into a status (a bug) is logged with its traceback and
    answered INTERNAL, never UNKNOWN; the node keeps serving. Wrapped handlers
    are cached per registered method (names from the wire that match no handler
    are not cached: the cache stays bounded).
    """

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger("runtime")
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        wrapped = self._wrap(method, handler)
        self._cache[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        deserialize, behaviour, log = handler.request_deserializer, handler.unary_unary, self.log

        def guarded_deserialize(data: bytes) -> Any:
            try:
                return deserialize(data)
            except Exception as e:  # google.protobuf.message.DecodeError and friends
                return _Malformed(e, len(data) if data is not None else 0)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"malformed request for {method}: {request.size} bytes that do not "
                                    f"decode ({type(request.error).__name__})")
            try:
                return await behaviour(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as e:
                log.error("unexpected error in %s: %r", method, e, exc_info=True)
                await context.abort(grpc.StatusCode.INTERNAL, f"{method}: internal error "
                                    f"({type(e).__name__}); see the node's log")

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=guarded_deserialize,
            response_serializer=handler.response_serializer)
