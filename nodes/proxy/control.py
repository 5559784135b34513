"""The ProxyControl servicer: a thin gRPC shell over the link's FaultTable and stats.

Status codes: AddFault answers INVALID_ARGUMENT with "<field>: <reason>" for a
bad spec (an unknown ``match`` field lists the valid ones); RemoveFault answers
NOT_FOUND for an unknown fault id. RemoveFault and Heal deliver what the
removed faults still hold (late requests, delayed duplicate copies) and answer
once those deliveries came back from upstream (at most RELEASE_WAIT_S).
"""

from __future__ import annotations

import grpc

from nodes.common.limits import MAX_PROXY_FAULTS

from nodes.pb import proxy_pb2, proxy_pb2_grpc
from nodes.proxy.fault import InvalidFault, Spec
from nodes.proxy.stats import COUNTERS, LinkStats
from nodes.proxy.table import ActiveFault, FaultTable, make_spec


def spec_from_pb(link: str, req: proxy_pb2.FaultSpec) -> Spec:
    """Validate a FaultSpec message for ``link``. Raises: InvalidFault naming the field
    (also for the TCP proxy's fields direction, rate_kbps, bytes: not for gRPC calls)."""
    for name in ("direction", "rate_kbps", "bytes"):
        if getattr(req, name):
            raise InvalidFault(name, f"{name} is for TCP proxy toxics (nodes/tcpproxy) only")
    return make_spec(link, kind=req.kind, method=req.method,
                     probability=req.probability if req.HasField("probability") else None,
                     count=req.count, after_calls=req.after_calls, delay_ms=req.delay_ms,
                     jitter_ms=req.jitter_ms, side=req.side, code=req.code, spec_link=req.link,
                     hold_ms=req.hold_ms, match=dict(req.match))


def fault_to_pb(af: ActiveFault) -> proxy_pb2.Fault:
    s = af.spec
    spec = proxy_pb2.FaultSpec(kind=s.kind, method=s.method, probability=s.probability,
                               count=s.count, after_calls=s.after_calls, delay_ms=s.delay_ms,
                               jitter_ms=s.jitter_ms, side=s.side, code=s.code,
                               hold_ms=s.hold_ms, match=dict(s.match))
    return proxy_pb2.Fault(fault_id=af.fault_id, spec=spec, matched=af.matched, fired=af.fired,
                           exhausted=af.exhausted)


class ProxyControlServicer(proxy_pb2_grpc.ProxyControlServicer):
    def __init__(self, table: FaultTable, stats: LinkStats, calls) -> None:
        self.table, self.stats, self._calls = table, stats, calls

    async def AddFault(self, request, context):
        try:
            spec = spec_from_pb(self.table.link, request)
        except InvalidFault as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if len(self.table.faults) >= MAX_PROXY_FAULTS:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this proxy already holds {len(self.table.faults)} faults (at most "
                                f"{MAX_PROXY_FAULTS}); remove some or heal first")
        return proxy_pb2.AddFaultResponse(fault_id=self.table.add(spec, self._calls()))

    async def RemoveFault(self, request, context):
        try:
            removed = self.table.remove(request.fault_id)
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"fault_id: no fault {request.fault_id!r} on {self.table.link}")
        await self.table.release([removed])
        return proxy_pb2.RemoveFaultResponse()

    async def ListFaults(self, request, context):
        return proxy_pb2.ListFaultsResponse(
            link=self.table.link, faults=[fault_to_pb(af) for af in self.table.faults.values()])

    async def Heal(self, request, context):
        removed = self.table.heal()
        await self.table.release(removed)
        return proxy_pb2.HealResponse(removed=len(removed))

    async def SetDown(self, request, context):
        """The TCP proxy's down switch: UNIMPLEMENTED here (use a partition fault)."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"{self.table.link} is a gRPC proxy: no down switch (TCP proxies only); "
                            "add a partition fault instead")

    async def Stats(self, request, context):
        methods = [proxy_pb2.MethodStats(method=m, **{c: getattr(s, c) for c in COUNTERS})
                   for m, s in sorted(self.stats.methods.items())]
        return proxy_pb2.StatsResponse(link=self.table.link, calls=self._calls(), methods=methods)
