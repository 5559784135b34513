"""The ProxyControl servicer of a TCP proxy: a thin gRPC shell over its ToxicTable.

The same API as the gRPC proxy (nodes/proxy/control.py), so harness/proxy_client.py
and ``testbed fault`` drive both. Status codes: AddFault answers
INVALID_ARGUMENT "<field>: <reason>" for a bad spec (an unknown toxic, a
negative or too large value, a NaN probability, a field the toxic does not
take, or a gRPC-only field: method, side, code, hold_ms, match) and
RESOURCE_EXHAUSTED beyond MAX_PROXY_FAULTS toxics; RemoveFault NOT_FOUND for an
unknown id; SetDown FAILED_PRECONDITION when coming up cannot bind the data
address again. Heal removes every toxic, releases what they hold and brings
the proxy up (Toxiproxy's reset). ``after_calls`` in the messages counts
connections here.
"""

from __future__ import annotations

import grpc

from nodes.common.limits import MAX_PROXY_FAULTS
from nodes.pb import proxy_pb2, proxy_pb2_grpc
from nodes.proxy.fault import InvalidFault
from nodes.tcpproxy.proxy import TcpProxy
from nodes.tcpproxy.stats import COUNTERS
from nodes.tcpproxy.table import ActiveToxic, make_spec
from nodes.tcpproxy.toxic import TcpSpec

GRPC_ONLY = ("method", "side", "code", "hold_ms")


def spec_from_pb(link: str, req: proxy_pb2.FaultSpec) -> TcpSpec:
    """Validate a FaultSpec message for a TCP link. Raises: InvalidFault naming the field."""
    for name in GRPC_ONLY:
        if getattr(req, name):
            raise InvalidFault(name, "a TCP proxy has no gRPC calls: "
                                     f"{name} is for the gRPC proxy only")
    if req.match:
        raise InvalidFault("match", "a TCP proxy does not decode requests")
    return make_spec(link, kind=req.kind, direction=req.direction,
                     probability=req.probability if req.HasField("probability") else None,
                     count=req.count, after=req.after_calls, delay_ms=req.delay_ms,
                     jitter_ms=req.jitter_ms, rate_kbps=req.rate_kbps, bytes=req.bytes,
                     spec_link=req.link)


def fault_to_pb(at: ActiveToxic) -> proxy_pb2.Fault:
    s = at.spec
    spec = proxy_pb2.FaultSpec(kind=s.kind, direction=s.direction, probability=s.probability,
                               count=s.count, after_calls=s.after, delay_ms=s.delay_ms,
                               jitter_ms=s.jitter_ms, rate_kbps=s.rate_kbps, bytes=s.bytes)
    return proxy_pb2.Fault(fault_id=at.fault_id, spec=spec, matched=at.matched, fired=at.fired,
                           exhausted=at.exhausted)


class TcpProxyControlServicer(proxy_pb2_grpc.ProxyControlServicer):
    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self.table = proxy.table

    async def AddFault(self, request, context):
        try:
            spec = spec_from_pb(self.table.link, request)
        except InvalidFault as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if len(self.table.faults) >= MAX_PROXY_FAULTS:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this proxy already holds {len(self.table.faults)} toxics (at most "
                                f"{MAX_PROXY_FAULTS}); remove some or heal first")
        return proxy_pb2.AddFaultResponse(fault_id=self.table.add(spec))

    async def RemoveFault(self, request, context):
        try:
            self.table.remove(request.fault_id)
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"fault_id: no toxic {request.fault_id!r} on {self.table.link}")
        return proxy_pb2.RemoveFaultResponse()

    async def ListFaults(self, request, context):
        return proxy_pb2.ListFaultsResponse(
            link=self.table.link, faults=[fault_to_pb(at) for at in self.table.faults.values()])

    async def Heal(self, request, context):
        removed = self.table.heal()
        await self._set_down(False, context)
        return proxy_pb2.HealResponse(removed=len(removed))

    async def Stats(self, request, context):
        methods = [proxy_pb2.MethodStats(method=d, **{c: getattr(s, c) for c in COUNTERS})
                   for d, s in self.proxy.stats.items()]
        return proxy_pb2.StatsResponse(link=self.table.link, calls=self.proxy.accepted,
                                       methods=methods)

    async def SetDown(self, request, context):
        was, closed = await self._set_down(request.down, context)
        return proxy_pb2.SetDownResponse(was_down=was, closed=closed)

    async def _set_down(self, down: bool, context) -> tuple[bool, int]:
        try:
            return await self.proxy.set_down(down)
        except OSError as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"cannot bind {self.proxy.address} again: {e.strerror or e}")
            raise AssertionError("unreachable")
