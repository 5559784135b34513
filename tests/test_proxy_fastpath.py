"""The proxy's data port (nodes/proxy/fastpath.py): clean relay, GOAWAY switching, counts.

Real sink and proxy processes on loopback; calls through the data port.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from harness.proxy_client import ProxyControlClient
from nodes.common.channels import insecure_channel
from nodes.pb import sink_pb2, sink_pb2_grpc
from nodes.proxy.history import read_history
from tests.proxy_support import applied_counts, order

pytestmark = pytest.mark.asyncio


async def _sink_and_proxy(spawn):
    sink = await spawn("sink", ["--mode", "at-least-once"])
    proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", sink.address,
                                  "--seed", "7", "--data-listen", "127.0.0.1:0"])
    return sink, proxy


async def _status(address: str) -> dict:
    async with ProxyControlClient(address) as px:
        return await px.status()


async def _apply(stub, i: int) -> None:
    await stub.Apply(sink_pb2.WriteRequest(orders=[order(i)]), timeout=5.0)


async def test_clean_relay_counts_every_call_per_method(spawn):
    sink, proxy = await _sink_and_proxy(spawn)
    data = proxy.info["data_address"]
    assert data and data != proxy.address
    async with insecure_channel(data) as ch:
        stub = sink_pb2_grpc.SinkStub(ch)
        await asyncio.gather(*(_apply(stub, i) for i in range(50)))
        for i in range(50, 60):
            await _apply(stub, i)
    st = await _status(proxy.address)
    assert st["data_port"]["accepted"] == 1 and st["data_port"]["goaways"] == 0
    assert st["calls"] == 60
    assert st["methods"]["/testbed.v1.Sink/Apply"]["calls"] == 60
    counts = await applied_counts(sink.address)
    assert all(counts.get(f"order-{i:08d}") == 1 for i in range(60))


async def test_fault_added_mid_stream_fires_on_later_calls_then_the_link_returns_clean(spawn):
    """An error fault (count 2) added between calls: a GOAWAY moves the client to the
    forwarder, the fault fires on the next two calls; once exhausted, and again after a
    heal, a GOAWAY brings the client back to the clean relay."""
    sink, proxy = await _sink_and_proxy(spawn)
    data = proxy.info["data_address"]
    async with insecure_channel(data) as ch, ProxyControlClient(proxy.address) as px:
        stub = sink_pb2_grpc.SinkStub(ch)
        for i in range(5):
            await _apply(stub, i)
        fid = await px.add("error", method="Apply", code="UNAVAILABLE", count=2)
        codes = []
        for i in range(5, 9):
            try:
                await _apply(stub, i)
                codes.append("OK")
            except grpc.aio.AioRpcError as e:
                codes.append(e.code().name)
        assert codes == ["UNAVAILABLE", "UNAVAILABLE", "OK", "OK"]
        st = await px.status()
        assert st["faults_fired"][fid] == 2
        assert st["data_port"]["goaways"] == 2 and st["data_port"]["mode"] == "clean"
        await px.add("delay", method="Apply", delay_ms=1)
        for i in range(9, 11):
            await _apply(stub, i)
        assert (await px.status())["data_port"]["mode"] == "faulty"
        await px.heal()
        for i in range(11, 13):
            await _apply(stub, i)
        st = await px.status()
    assert st["data_port"]["goaways"] == 4 and st["data_port"]["mode"] == "clean"
    assert st["data_port"]["clean"] == 1   # the client's connection now is a clean one
    fired = [r for r in read_history(proxy.data_dir / "faults.jsonl") if r.get("type") == "fault"]
    assert [(r["fault"], r["call"]) for r in fired] == [("error", 6), ("error", 7), ("delay", 10), ("delay", 11)]
    assert st["methods"]["/testbed.v1.Sink/Apply"]["calls"] == 13
    counts = await applied_counts(sink.address)
    assert sorted(k for k, v in counts.items() if v == 1) == [f"order-{i:08d}" for i in range(13) if i not in (5, 6)]
