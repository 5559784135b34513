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
from tests.test_proxy_caller_gone import METHOD, upstream  # noqa: F401 (a fixture)

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


async def _apply_code(stub, i: int) -> str:
    try:
        await _apply(stub, i)
        return "OK"
    except grpc.aio.AioRpcError as e:
        return e.code().name


async def test_upstream_killed_then_restarted_calls_fail_unavailable_then_recover(spawn):
    """kill -9 of the sink: calls through the data port fail UNAVAILABLE (the forwarder
    answers while the sink is down); once it is back on its port, the probe sends a
    GOAWAY and the client's calls are relayed clean again."""
    sink, proxy = await _sink_and_proxy(spawn)
    async with insecure_channel(proxy.info["data_address"]) as ch:
        stub = sink_pb2_grpc.SinkStub(ch)
        assert await _apply_code(stub, 0) == "OK"
        sink.kill()
        await sink.wait()
        assert await _apply_code(stub, 1) == "UNAVAILABLE"
        assert await _apply_code(stub, 2) == "UNAVAILABLE"
        await sink.start()
        codes, i = [], 3
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20.0
        while loop.time() < deadline:   # the client's reconnect backoff is at most 1 s
            codes.append(await _apply_code(stub, i))
            i += 1
            if codes[-1] == "OK" and (await _status(proxy.address))["data_port"]["clean"] == 1:
                break
        assert codes[-1] == "OK" and set(codes) <= {"OK", "UNAVAILABLE"}
        st = await _status(proxy.address)
    assert st["data_port"]["clean"] == 1 and st["data_port"]["goaways"] >= 1
    assert st["totals"]["upstream_errors"] >= 1


async def test_partition_cuts_the_calls_in_flight_on_a_clean_connection(spawn, upstream):
    """A partition added while a call is held upstream: once the upstream answers, the
    response never reaches the caller (DEADLINE_EXCEEDED), recorded as black-holed-response
    on that call, as the forwarder's cut_in_flight does; new calls meet the partition."""
    proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", upstream.address,
                                  "--data-listen", "127.0.0.1:0"])
    async with insecure_channel(proxy.info["data_address"]) as ch, \
            ProxyControlClient(proxy.address) as px:
        call = ch.unary_unary(METHOD)(b"held-request", timeout=3.0)
        await upstream.until(lambda: upstream.arrived)
        await px.add("partition")
        upstream.release.set()
        await upstream.until(lambda: upstream.completed)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await call
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        st = await px.status()
    fired = [r for r in read_history(proxy.data_dir / "faults.jsonl") if r.get("type") == "fault"]
    assert [(r["action"], r["call"], r["method"]) for r in fired] == [("black-holed-response", 1, METHOD)]
    assert st["data_port"]["goaways"] == 1 and st["methods"][METHOD]["dropped"] == 1
