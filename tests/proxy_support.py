"""Helpers for the proxy tests: a real sink behind a real proxy, and calls through them."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from harness.process import NodeProcess
from nodes.common.channels import insecure_channel
from nodes.pb import events_pb2, sink_pb2, sink_pb2_grpc
from nodes.proxy.history import read_history

CALL_TIMEOUT_S = 2.0
"""Deadline of a call through the proxy in the tests (s); a black-holed call costs this much."""


async def sink_behind_proxy(spawn, *, seed: int = 7, name: str = "proxy",
                            link: str = "processor-sink") -> tuple[NodeProcess, NodeProcess]:
    """Start a real sink process and a proxy process in front of it."""
    sink = await spawn("sink", ["--mode", "at-least-once"])
    proxy = await spawn("proxy", ["--link", link, "--upstream", sink.address,
                                  "--seed", str(seed)], name=name)
    return sink, proxy


def order(i: int) -> events_pb2.Order:
    return events_pb2.Order(order_id=f"order-{i:08d}", account=f"acct-{i % 5}", amount_cents=100 + i)


async def apply(address: str, i: int, timeout_s: float = CALL_TIMEOUT_S,
                metadata=None) -> sink_pb2.WriteResponse:
    """Sink.Apply of order ``i`` through ``address``; raises AioRpcError."""
    async with insecure_channel(address) as ch:
        return await sink_pb2_grpc.SinkStub(ch).Apply(
            sink_pb2.WriteRequest(orders=[order(i)]), timeout=timeout_s, metadata=metadata)


async def apply_code(address: str, i: int, timeout_s: float = CALL_TIMEOUT_S) -> grpc.StatusCode:
    """The status code of an Apply of order ``i`` through ``address`` (OK on success)."""
    try:
        await apply(address, i, timeout_s)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def timed_apply_code(address: str, i: int, timeout_s: float = CALL_TIMEOUT_S):
    t0 = time.monotonic()
    code = await apply_code(address, i, timeout_s)
    return code, time.monotonic() - t0


async def applied_counts(sink_address: str) -> dict[str, int]:
    """order id -> applied_count, read from the sink directly (Snapshot pages)."""
    out: dict[str, int] = {}
    after = ""
    async with insecure_channel(sink_address) as ch:
        stub = sink_pb2_grpc.SinkStub(ch)
        while True:
            page = await stub.Snapshot(sink_pb2.SnapshotRequest(after_order_id=after, limit=500),
                                       timeout=5)
            for o in page.orders:
                out[o.order_id] = o.applied_count
            if page.done or not page.orders:
                return out
            after = page.orders[-1].order_id


def fault_records(proxy: NodeProcess) -> list[dict]:
    """The "fault" records of a proxy's faults.jsonl."""
    return [r for r in read_history(Path(proxy.data_dir) / "faults.jsonl") if r["type"] == "fault"]
