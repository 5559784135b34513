"""Forwarding of unary calls as raw bytes, with the link's faults applied per call.

A grpc.aio generic handler catches every ``/testbed.v1.*`` method the proxy
does not serve itself (its own NodeControl/Status, ProxyControl and health
are registered handlers and answer for the proxy). The request bytes go
upstream unparsed (request_deserializer / response_serializer = None), with:

- the caller's metadata, minus pseudo-headers, ``grpc-*`` and hop-by-hop
  headers (the upstream channel sets its own);
- the caller's deadline (``context.time_remaining()``) as the upstream timeout;
- the upstream's status code, details and trailing metadata on error
  (``context.abort`` with the upstream code). Upstream down: the upstream
  channel fails fast with UNAVAILABLE, the caller gets UNAVAILABLE, and the
  proxy keeps serving and reconnects by itself (backoff <= 1 s).

Only unary-unary calls are forwarded: every RPC the nodes use is unary
(Fetch is a unary long-poll, Snapshot is paged), so streaming is not needed.

Like a network, a caller that goes away does not recall what it sent: a
request the proxy has received is forwarded upstream and that upstream call
runs to its end (the caller's deadline still bounds it) even when the caller
cancels, passes its deadline or dies (kill -9: its connection closes) while
the request is upstream; the response is then discarded and counted in
``Forwarder.caller_gone``. Before, the caller's cancellation was passed on: the
upstream node's handler was cancelled mid-call, or not, depending on how far it
had got and on the order in which the proxy's event loop saw the response and
the closed connection (issue 16, docs/bench.md). A fault that waits before
forwarding (a request-side delay, a partition) still ends with the caller.

The no-fault path does no JSON, takes no lock and makes no random draw:
one counter update, one upstream call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Sequence

import grpc

from nodes.common.channels import insecure_channel
from nodes.proxy.fault import Call, Forward
from nodes.proxy.links import FORWARDED_PREFIX, service_methods
from nodes.proxy.stats import LinkStats, MethodStats
from nodes.proxy.table import FaultTable

_HOP_HEADERS = frozenset({"user-agent", "te", "content-type", "host", "connection", "keep-alive",
                          "transfer-encoding", "upgrade", "proxy-connection", "accept-encoding"})


def forwardable_metadata(metadata: Sequence[Any] | None) -> tuple[tuple[str, Any], ...]:
    """Metadata to pass on: drop pseudo-headers, ``grpc-*`` and hop-by-hop headers."""
    if not metadata:
        return ()
    return tuple((k, v) for k, v in metadata
                 if not k.startswith(":") and not k.startswith("grpc-") and k not in _HOP_HEADERS)


class Forwarder(grpc.GenericRpcHandler):
    """The generic handler of one proxy: forwards calls to ``upstream`` through ``table``.

    Args:
        link: the link name.
        upstream: "host:port" of the upstream node.
        table: the link's fault table.
        stats: the link's counters.
    """

    def __init__(self, link: str, upstream: str, table: FaultTable, stats: LinkStats,
                 log: logging.Logger) -> None:
        self.link, self.upstream, self.table, self.stats, self.log = link, upstream, table, stats, log
        self.calls = 0
        self.caller_gone = 0
        """Calls whose caller went away (cancelled, deadline, died) while the request was
        upstream: the upstream call ran on, its response was discarded."""
        self._orphans: set[grpc.aio.Call] = set()
        self._channel: grpc.aio.Channel | None = None
        self._known = frozenset(service_methods(link))
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._callables: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    def open(self) -> None:
        """Create the upstream channel (inside the running event loop)."""
        self._channel = insecure_channel(self.upstream)

    async def close(self, wait_s: float = 1.0) -> None:
        """Proxy stop: give orphaned upstream calls up to ``wait_s`` to end, then close."""
        if self._orphans:
            waits = [asyncio.ensure_future(_settled(c)) for c in self._orphans]
            _, pending = await asyncio.wait(waits, timeout=wait_s)
            for w in pending:
                w.cancel()  # the channel's close below cancels their calls
        if self._channel is not None:
            await self._channel.close()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            if not method.startswith(FORWARDED_PREFIX):
                return None
            handler = grpc.unary_unary_rpc_method_handler(functools.partial(self._handle, method))
            if method in self._known:  # bounded cache: only the upstream service's methods
                self._handlers[method] = handler
        return handler

    def _callable(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        mc = self._callables.get(method)
        if mc is None:
            assert self._channel is not None, "Forwarder.open() not called"
            mc = self._channel.unary_unary(method, request_serializer=None,
                                           response_deserializer=None)
            if method in self._known:
                self._callables[method] = mc
        return mc

    async def _send(self, method: str, request: bytes, context: grpc.aio.ServicerContext,
                    st: MethodStats) -> bytes:
        """One upstream call, not cancelled with the caller (module doc).

        Raises: grpc.aio.AioRpcError with the upstream's status;
        asyncio.CancelledError when the caller went away (the upstream call runs on).
        """
        st.forwarded += 1
        call = self._callable(method)(
            request, timeout=context.time_remaining(),
            metadata=forwardable_metadata(context.invocation_metadata()))
        # Await the call's end through a future of our own: cancelling the handler then
        # cancels that future only. Awaiting the call itself would cancel the call.
        done = asyncio.get_running_loop().create_future()
        call.add_done_callback(functools.partial(_set_done, done))
        try:
            await done
        except asyncio.CancelledError:
            if not call.done():
                self.caller_gone += 1
                self._orphans.add(call)  # a grpc.aio call cancels itself when collected
                call.add_done_callback(self._orphans.discard)
            raise
        try:
            return await call
        except grpc.aio.AioRpcError:
            st.upstream_errors += 1
            raise

    async def _deliver(self, method: str, request: bytes, metadata: tuple, st: MethodStats,
                       timeout_s: float) -> bytes:
        """Send ``request`` upstream detached from the caller's deadline (late, delayed
        duplicate). Raises: grpc.aio.AioRpcError with the upstream's status."""
        st.forwarded += 1
        try:
            return await self._callable(method)(request, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError:
            st.upstream_errors += 1
            raise

    async def _send_watched(self, method: str, number: int, request: bytes,
                            context: grpc.aio.ServicerContext, st: MethodStats) -> bytes:
        """:meth:`_send`, then tell watching faults (reorder) the call came back."""
        try:
            return await self._send(method, request, context, st)
        finally:
            self.table.forwarded(method, number)

    async def _handle(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        number = self.calls
        st = self.stats.of(method)
        st.calls += 1
        try:
            if not self.table.active:
                response = await self._send(method, request, context, st)
            else:
                response = await self._with_faults(method, number, request, context, st)
        except grpc.aio.AioRpcError as e:
            if self.table.active and self.table.cut_in_flight(method, number):
                st.dropped += 1
                await Call(self.link, method, number, context).hang()
            trailing = forwardable_metadata(e.trailing_metadata())
            if trailing:
                context.set_trailing_metadata(trailing)
            await context.abort(e.code(), e.details() or "")
            raise AssertionError("unreachable")  # context.abort raises
        if self.table.active and self.table.cut_in_flight(method, number):
            st.dropped += 1  # a partition came up while the call was upstream
            await Call(self.link, method, number, context).hang()
        return response

    async def _with_faults(self, method: str, number: int, request: bytes,
                           context: grpc.aio.ServicerContext, st: MethodStats) -> bytes:
        fired = self.table.select(method, number, request)
        if not fired:
            return await self._send_watched(method, number, request, context, st)
        deliver = functools.partial(self._deliver, method, request,
                                    forwardable_metadata(context.invocation_metadata()), st)
        call = Call(self.link, method, number, context, deliver)
        forward: Forward = functools.partial(self._send_watched, method, number, request,
                                             context, st)
        for af, params in reversed(fired):
            setattr(st, af.fault.stat, getattr(st, af.fault.stat) + 1)
            forward = functools.partial(af.fault.apply, call, forward, params)
        return await forward()


def _set_done(done: asyncio.Future, _call: grpc.aio.Call) -> None:
    if not done.done():
        done.set_result(None)


async def _settled(call: grpc.aio.Call) -> None:
    """Wait for ``call`` to end, whatever its outcome."""
    try:
        await call
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        pass
