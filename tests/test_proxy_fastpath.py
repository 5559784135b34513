"""The proxy's data port (nodes/proxy/fastpath.py): clean relay, GOAWAY switching, counts.

Real sink and proxy processes on loopback; calls through the data port.
"""

from __future__ import annotations

import asyncio

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


DETAILS: dict = {}


async def _code(stub, i: int) -> str:
    try:
        await stub.Apply(sink_pb2.WriteRequest(orders=[order(i)]), timeout=2.0)
    except grpc.aio.AioRpcError as e:
        DETAILS[i] = e.details()
        return e.code().name
    return "OK"


async def _until(predicate, what: str, timeout_s: float = 15.0):
    """Poll ``predicate`` (an async callable returning a truthy value when done) every
    20 ms; fail the test after ``timeout_s``."""
    async def loop():
        while True:
            v = await predicate()
            if v:
                return v
            await asyncio.sleep(0.02)   # a poll interval: the condition is checked each time
    try:
        return await asyncio.wait_for(loop(), timeout_s)
    except asyncio.TimeoutError:
        pytest.fail(f"never: {what}")


async def test_upstream_killed_and_restarted_fails_unavailable_then_recovers_clean(spawn):
    """kill -9 of the upstream: calls through the data port fail UNAVAILABLE (the clean
    connection is closed; the next one falls back to the forwarder, which answers
    UNAVAILABLE); once the upstream is back on its port, the probe's GOAWAY brings the
    client back to a clean connection."""
    sink, proxy = await _sink_and_proxy(spawn)
    data = proxy.info["data_address"]
    async with insecure_channel(data) as ch:
        stub = sink_pb2_grpc.SinkStub(ch)
        assert await _code(stub, 0) == "OK"
        assert (await _status(proxy.address))["data_port"]["clean"] == 1
        sink.kill()
        await asyncio.wait_for(sink.proc.wait(), 10)
        assert await _code(stub, 1) == "UNAVAILABLE"
        assert await _code(stub, 2) == "UNAVAILABLE"
        st = await _status(proxy.address)
        assert st["data_port"]["mode"] == "clean" and st["data_port"]["clean"] == 0
        # the client's reconnection fell back to the forwarder (upstream refused), unless
        # its channel failed those calls in its reconnect backoff without connecting
        fell_back = st["data_port"]["faulty"] >= 1
        await sink.start()
        await _until(lambda: _is_ok(stub, 3), "a call succeeded after the upstream restart")

        polls = iter(range(1000, 2000))

        async def back_clean():   # a call each time: after a GOAWAY the client reconnects on demand
            assert await _code(stub, next(polls)) == "OK"
            s = await _status(proxy.address)
            return s if s["data_port"]["faulty"] == 0 and s["data_port"]["clean"] == 1 else None
        st = await _until(back_clean, "the client's connection is clean again")
        assert st["data_port"]["goaways"] >= (1 if fell_back else 0)
        assert await _code(stub, 4) == "OK"
    counts = await applied_counts(sink.address)
    assert counts.get("order-00000004") == 1


async def _is_ok(stub, i: int) -> bool:
    return await _code(stub, i) == "OK"


async def test_restarted_proxy_keeps_both_ports(spawn, tmp_path, monkeypatch):
    """The harness's proxy process (harness/proxy_process.py, TESTBED_PROXY_FAST=1) binds
    the same gRPC and data ports again after a kill -9, so its clients' address stays valid."""
    from harness.proxy_process import FAST_ENV, GrpcProxyProcess
    monkeypatch.setenv(FAST_ENV, "1")
    sink = await spawn("sink", ["--mode", "at-least-once"])
    proxy = GrpcProxyProcess("processor-sink", sink.address, tmp_path / "px", seed=7,
                             )
    spawn.procs.append(proxy)
    await proxy.start()
    before = (proxy.address, proxy.data_address)
    assert before[1] and before[1] != before[0] and proxy.dial_address == before[1]
    async with insecure_channel(proxy.dial_address) as ch:
        assert await _code(sink_pb2_grpc.SinkStub(ch), 0) == "OK"
    proxy.kill()
    await asyncio.wait_for(proxy.proc.wait(), 10)
    await proxy.start()
    assert (proxy.address, proxy.data_address) == before
    async with insecure_channel(proxy.dial_address) as ch:
        assert await _code(sink_pb2_grpc.SinkStub(ch), 1) == "OK"
    assert proxy.manifest_entry()["listen"] == before[1]


async def test_fault_added_while_calls_are_in_flight_acts_on_later_calls_only_and_runs_none_twice(spawn):
    """Waves of 20 concurrent calls; an error fault (count 3) is added while a wave is in
    flight. The fault fires on 3 calls numbered after the ones counted before it was
    added; a call the client opened on the clean connection after the GOAWAY (before it
    read it) is not relayed: it fails UNAVAILABLE "GOAWAY received" and never runs (the
    nodes' channels disable grpc-core's transparent retry: the documented limit of the
    data port); no call runs twice; once the fault is exhausted the link is clean again."""
    sink, proxy = await _sink_and_proxy(spawn)
    data = proxy.info["data_address"]
    codes: dict[int, str] = {}

    async def one(stub, i):
        codes[i] = await _code(stub, i)

    async with insecure_channel(data) as ch, ProxyControlClient(proxy.address) as px:
        stub = sink_pb2_grpc.SinkStub(ch)
        for w in range(3):
            await asyncio.gather(*(one(stub, w * 20 + k) for k in range(20)))
        before = (await px.status())["calls"]
        wave = [asyncio.ensure_future(one(stub, 60 + k)) for k in range(20)]
        fid = await px.add("error", method="Apply", code="UNAVAILABLE", count=3)
        await asyncio.gather(*wave)
        for w in range(4, 7):
            await asyncio.gather(*(one(stub, w * 20 + k) for k in range(20)))
        st = await px.status()
    failed = sorted(i for i, c in codes.items() if c != "OK")
    refused = [i for i in failed if "GOAWAY" in (DETAILS.get(i) or "")]
    assert all(codes[i] == "UNAVAILABLE" for i in failed), {i: (codes[i], DETAILS.get(i)) for i in failed}
    assert len(failed) - len(refused) == 3 and all(60 <= i < 80 for i in refused)
    assert st["faults_fired"][fid] == 3 and st["data_port"]["goaways"] >= 2
    assert st["data_port"]["mode"] == "clean"
    assert st["calls"] == 140 - len(refused)
    fired = [r["call"] for r in read_history(proxy.data_dir / "faults.jsonl") if r.get("type") == "fault"]
    assert len(fired) == 3 and min(fired) > before
    counts = await applied_counts(sink.address)
    assert {i for i in range(140) if counts.get(f"order-{i:08d}", 0) == 0} == set(failed)
    assert all(v == 1 for v in counts.values()), {k: v for k, v in counts.items() if v != 1}


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
