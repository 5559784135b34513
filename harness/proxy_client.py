"""Client of a proxy's testbed.v1.ProxyControl service (async, plus sync wrappers for the CLI).

    async with ProxyControlClient("127.0.0.1:7001") as px:
        fid = await px.add("drop-response", method="Produce", probability=0.3)
        print(await px.list(), await px.stats())
        await px.heal()

Errors: every method raises :class:`grpc.aio.AioRpcError` as the proxy
answered it: INVALID_ARGUMENT ("<field>: <reason>") for a bad fault spec,
NOT_FOUND for an unknown fault id, UNAVAILABLE when the proxy is not running.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from google.protobuf.json_format import MessageToDict

from nodes.common.control_auth import control_channel
from nodes.pb import node_pb2, node_pb2_grpc, proxy_pb2, proxy_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0


class ProxyControlClient:
    """Control client of one proxy.

    Args:
        address: the proxy's "host:port".
        timeout_s: deadline of every control call (seconds).
        token: the control token (metadata x-testbed-token); default: the one the
            harness set for its cluster, or $TESTBED_CONTROL_TOKEN (UNAUTHENTICATED if wrong).
    """

    def __init__(self, address: str, timeout_s: float = DEFAULT_TIMEOUT_S, token: str | None = None) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = control_channel(address, token)  # the cluster's control token, if any
        self._stub = proxy_pb2_grpc.ProxyControlStub(self._channel)

    async def __aenter__(self) -> "ProxyControlClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def add(self, kind: str, *, method: str = "", probability: float | None = None,
                  count: int = 0, after: int = 0, delay_ms: int = 0, jitter_ms: int = 0,
                  side: str = "", code: str = "", link: str = "", hold_ms: int = 0,
                  match: dict[str, Any] | None = None, direction: str = "", rate_kbps: int = 0,
                  bytes: int = 0) -> str:
        """Add a fault; return its id ("f1"). See proxy.proto FaultSpec for the fields.

        ``direction``, ``rate_kbps``, ``bytes``: TCP proxy toxics only (nodes/tcpproxy);
        on a TCP proxy ``after`` counts connections.

        ``match``: {field: value} rules on the request (values sent as strings,
        e.g. {"partition": 2}); an unknown field is INVALID_ARGUMENT naming the valid ones.
        """
        spec = proxy_pb2.FaultSpec(kind=kind, method=method, count=count, after_calls=after,
                                   delay_ms=delay_ms, jitter_ms=jitter_ms, side=side, code=code,
                                   link=link, hold_ms=hold_ms, direction=direction,
                                   rate_kbps=rate_kbps, bytes=bytes,
                                   match={str(k): _match_value(v) for k, v in (match or {}).items()})
        if probability is not None:
            spec.probability = probability
        resp = await self._stub.AddFault(spec, timeout=self.timeout_s)
        return resp.fault_id

    async def remove(self, fault_id: str) -> None:
        """Remove one fault (NOT_FOUND if unknown)."""
        await self._stub.RemoveFault(proxy_pb2.RemoveFaultRequest(fault_id=fault_id),
                                     timeout=self.timeout_s)

    async def list(self) -> list[dict[str, Any]]:
        """The proxy's faults: [{"fault_id", "spec": {...}, "matched", "fired", "exhausted"}]."""
        resp = await self._stub.ListFaults(proxy_pb2.ListFaultsRequest(), timeout=self.timeout_s)
        out = []
        for f in resp.faults:
            d = MessageToDict(f, preserving_proto_field_name=True,
                              always_print_fields_with_no_presence=True)
            d["matched"], d["fired"] = f.matched, f.fired  # int64 would be a JSON string
            for k in ("count", "after_calls", "delay_ms", "jitter_ms", "hold_ms", "rate_kbps",
                      "bytes"):
                d["spec"][k] = getattr(f.spec, k)
            out.append(d)
        return out

    async def heal(self) -> int:
        """Remove every fault; return how many were removed."""
        resp = await self._stub.Heal(proxy_pb2.HealRequest(), timeout=self.timeout_s)
        return resp.removed

    async def set_down(self, down: bool) -> dict[str, Any]:
        """TCP proxy only: the down switch. Returns {"was_down", "closed"}.
        The gRPC proxy answers UNIMPLEMENTED."""
        resp = await self._stub.SetDown(proxy_pb2.SetDownRequest(down=down), timeout=self.timeout_s)
        return {"was_down": resp.was_down, "closed": resp.closed}

    async def stats(self) -> dict[str, Any]:
        """{"link", "calls", "methods": {full method: {calls, forwarded, dropped, ...}}}."""
        resp = await self._stub.Stats(proxy_pb2.StatsRequest(), timeout=self.timeout_s)
        methods = {}
        for m in resp.methods:
            d = MessageToDict(m, preserving_proto_field_name=True,
                              always_print_fields_with_no_presence=True)
            name = d.pop("method")
            methods[name] = {k: int(v) for k, v in d.items()}
        return {"link": resp.link, "calls": resp.calls, "methods": methods}

    async def status(self) -> dict[str, Any]:
        """The proxy's own NodeControl.Status JSON (see nodes/proxy/__main__.py)."""
        stub = node_pb2_grpc.NodeControlStub(self._channel)
        resp = await stub.Status(node_pb2.StatusRequest(), timeout=self.timeout_s)
        return json.loads(resp.status_json)


def _match_value(v: Any) -> str:
    """A match value as the proxy expects it: JSON booleans as "true"/"false"."""
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def call_sync(address: str, op: str, *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S,
              token: str | None = None, **kwargs: Any) -> Any:
    """Run one ProxyControlClient method (``op``: "add", "list"...) from synchronous code."""

    async def run() -> Any:
        async with ProxyControlClient(address, timeout_s, token) as px:
            return await getattr(px, op)(*args, **kwargs)

    return asyncio.run(run())


def add_sync(address: str, kind: str, **kwargs: Any) -> str:
    return call_sync(address, "add", kind, **kwargs)


def remove_sync(address: str, fault_id: str, token: str | None = None) -> None:
    call_sync(address, "remove", fault_id, token=token)


def list_sync(address: str, token: str | None = None) -> list[dict[str, Any]]:
    return call_sync(address, "list", token=token)


def heal_sync(address: str, token: str | None = None) -> int:
    return call_sync(address, "heal", token=token)


def set_down_sync(address: str, down: bool, token: str | None = None) -> dict[str, Any]:
    return call_sync(address, "set_down", down, token=token)


def stats_sync(address: str, token: str | None = None) -> dict[str, Any]:
    return call_sync(address, "stats", token=token)
