"""The proxy's control API and forwarding contract: seeds, Heal, bad input, upstream down,
metadata / deadline / status pass-through, and the fault table's wrapper logic."""

from __future__ import annotations

import asyncio
import socket
import time

import grpc
import pytest

from harness.proxy_client import ProxyControlClient
from nodes.common.channels import SERVER_OPTIONS
from nodes.pb import sink_pb2, sink_pb2_grpc
from nodes.proxy.fault import InvalidFault
from nodes.proxy.history import FaultHistory
from nodes.proxy.table import FaultTable, make_spec
from tests.proxy_support import (apply, apply_code, applied_counts, fault_records, order,
                                 sink_behind_proxy, timed_apply_code)

pytestmark = pytest.mark.timeout(90)

APPLY = "/testbed.v1.Sink/Apply"


def decisions(proxy) -> list[tuple]:
    return [(r["call"], r["fault_id"], r["action"], r.get("delay_ms"), r.get("code"))
            for r in fault_records(proxy)]


async def run_sequence(address: str, first: int, n: int) -> list:
    async with ProxyControlClient(address) as px:
        await px.add("error", method="Apply", probability=0.5, code="ABORTED")
        await px.add("delay", method="Apply", probability=0.3, delay_ms=1, jitter_ms=20)
    return [await apply_code(address, i, timeout_s=5) for i in range(first, first + n)]


async def test_same_seed_same_decisions_other_seed_others(spawn):
    sink = await spawn("sink", ["--mode", "at-least-once"])
    proxies = []
    for name, seed in (("proxy-a", 42), ("proxy-b", 42), ("proxy-c", 43)):
        proxies.append(await spawn("proxy", ["--link", "processor-sink", "--upstream", sink.address,
                                             "--seed", str(seed)], name=name))
    codes = [await run_sequence(p.address, 1000 * k, 40) for k, p in enumerate(proxies)]
    a, b, c = (decisions(p) for p in proxies)
    assert a == b and codes[0] == codes[1]
    assert 5 < sum(1 for d in a if d[2] == "errored") < 35  # p=0.5 over 40 calls, seed 42
    assert any(d[2] == "delayed" for d in a)
    assert a != c  # another seed, other decisions
    counts = await applied_counts(sink.address)
    # Every call the error fault did not answer was executed exactly once.
    for k, cs in enumerate(codes):
        ok = sum(1 for i in range(40) if counts.get(order(1000 * k + i).order_id) == 1)
        assert ok == cs.count(grpc.StatusCode.OK) == 40 - cs.count(grpc.StatusCode.ABORTED)


async def test_heal_restores_forwarding_and_list_shows_counters(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        f1 = await px.add("error", method="Apply", code="INTERNAL", after=2)
        f2 = await px.add("delay", delay_ms=200, count=1)
        assert await apply_code(proxy.address, 1, timeout_s=5) == grpc.StatusCode.OK  # delayed only
        assert await apply_code(proxy.address, 2, timeout_s=5) == grpc.StatusCode.INTERNAL
        listed = {f["fault_id"]: f for f in await px.list()}
        assert listed[f1]["matched"] == 2 and listed[f1]["fired"] == 1
        assert listed[f2]["fired"] == 1 and listed[f2]["exhausted"] is True
        assert await px.heal() == 2
        assert await px.list() == []
        assert await apply_code(proxy.address, 3, timeout_s=5) == grpc.StatusCode.OK
        stats = (await px.stats())["methods"][APPLY]
    assert [r["call"] for r in fault_records(proxy)] == [1, 2]  # nothing fired after Heal
    assert (stats["calls"], stats["forwarded"], stats["errored"], stats["delayed"]) == (3, 2, 1, 1)
    assert await applied_counts(sink.address) == {order(1).order_id: 1, order(3).order_id: 1}


async def test_remove_one_fault_and_unknown_id(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        fid = await px.add("error")
        assert await apply_code(proxy.address, 1) == grpc.StatusCode.UNAVAILABLE
        await px.remove(fid)
        assert await apply_code(proxy.address, 2) == grpc.StatusCode.OK
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await px.remove(fid)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_faults_chain_on_one_call(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("delay", delay_ms=200, count=1)
        await px.add("duplicate", count=1)
    code, elapsed = await timed_apply_code(proxy.address, 1, timeout_s=5)
    assert code == grpc.StatusCode.OK and elapsed >= 0.2
    assert (await applied_counts(sink.address))[order(1).order_id] == 2
    assert [r["action"] for r in fault_records(proxy)] == ["delayed", "duplicated"]


BAD_SPECS = [
    ({"kind": "bogus"}, "kind"),
    ({"kind": "error", "probability": 1.5}, "probability"),
    ({"kind": "error", "probability": -0.1}, "probability"),
    ({"kind": "error", "method": "Produce"}, "method"),
    ({"kind": "error", "count": -1}, "count"),
    ({"kind": "error", "after": -3}, "after_calls"),
    ({"kind": "delay", "delay_ms": -5}, "delay_ms"),
    ({"kind": "delay"}, "delay_ms"),
    ({"kind": "delay", "delay_ms": 5, "side": "sideways"}, "side"),
    ({"kind": "error", "code": "NOPE"}, "code"),
    ({"kind": "error", "code": "OK"}, "code"),
    ({"kind": "error", "link": "producer-broker"}, "link"),
    ({"kind": "error", "link": "nowhere"}, "link"),
]


async def test_bad_fault_spec_is_invalid_argument_naming_the_field(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        for spec, field in BAD_SPECS:
            spec = dict(spec)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await px.add(spec.pop("kind"), **spec)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, spec
            assert e.value.details().startswith(f"{field}:"), (spec, e.value.details())
        assert await px.list() == []
    assert await apply_code(proxy.address, 1) == grpc.StatusCode.OK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_upstream_down_is_unavailable_and_proxy_keeps_serving(spawn):
    port = free_port()
    proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", f"127.0.0.1:{port}"])
    code, elapsed = await timed_apply_code(proxy.address, 1, timeout_s=5)
    assert code == grpc.StatusCode.UNAVAILABLE and elapsed < 4
    async with ProxyControlClient(proxy.address) as px:
        status = await px.status()
        assert status["totals"]["upstream_errors"] == 1
        # The upstream comes up on that port: the same proxy forwards again.
        sink = await spawn("sink", ["--mode", "at-least-once"], start=False)
        sink.listen = f"127.0.0.1:{port}"
        await sink.start()
        deadline = time.monotonic() + 15
        i = 2
        while await apply_code(proxy.address, i, timeout_s=2) != grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "proxy did not reconnect to the upstream"
            i += 1
            await asyncio.sleep(0.05)  # retry pacing while polling a condition with a deadline
    assert (await applied_counts(sink.address))[order(i).order_id] == 1


class _EchoSink(sink_pb2_grpc.SinkServicer):
    """In-process upstream that records what arrives and fails on demand."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict, float | None]] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def Apply(self, request, context):
        self.seen.append((dict(context.invocation_metadata()), context.time_remaining()))
        self.arrived.set()
        await self.release.wait()
        if request.orders[0].order_id.endswith("13"):
            context.set_trailing_metadata((("x-reason", "unlucky"),))
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "order 13 refused")
        return sink_pb2.WriteResponse(applied=7)


async def start_echo() -> tuple[grpc.aio.Server, _EchoSink, int]:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    echo = _EchoSink()
    sink_pb2_grpc.add_SinkServicer_to_server(echo, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, echo, port


async def test_metadata_deadline_and_upstream_status_pass_through(spawn):
    server, echo, port = await start_echo()
    try:
        proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", f"127.0.0.1:{port}"])
        resp = await apply(proxy.address, 1, timeout_s=3, metadata=(("x-trace", "abc-1"),))
        assert resp.applied == 7  # the upstream's response bytes, unchanged
        md, remaining = echo.seen[0]
        assert md.get("x-trace") == "abc-1"
        assert remaining is not None and 0 < remaining <= 3.1  # wire timeouts round up slightly
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await apply(proxy.address, 13, timeout_s=3)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert e.value.details() == "order 13 refused"
        assert ("x-reason", "unlucky") in tuple(e.value.trailing_metadata() or ())
    finally:
        await server.stop(0)


async def test_partition_cuts_the_response_of_a_call_in_flight(spawn):
    server, echo, port = await start_echo()
    try:
        proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", f"127.0.0.1:{port}"])
        echo.release.clear()
        in_flight = asyncio.ensure_future(apply_code(proxy.address, 1, timeout_s=3))
        await asyncio.wait_for(echo.arrived.wait(), 5)  # the call is upstream now
        async with ProxyControlClient(proxy.address) as px:
            await px.add("partition")
            echo.release.set()  # the upstream answers, into the partition
            assert await in_flight == grpc.StatusCode.DEADLINE_EXCEEDED
            assert len(echo.seen) == 1  # it was executed upstream
            assert await apply_code(proxy.address, 2, timeout_s=0.5) == \
                grpc.StatusCode.DEADLINE_EXCEEDED
            assert len(echo.seen) == 1  # the new call never left the proxy
            await px.heal()
            assert await apply_code(proxy.address, 3) == grpc.StatusCode.OK
        assert [(r["call"], r["action"]) for r in fault_records(proxy)] == \
            [(1, "black-holed-response"), (2, "black-holed")]
    finally:
        await server.stop(0)


# --- the fault table's shared wrapper, driven without processes ---

def test_table_after_count_probability(tmp_path):
    table = FaultTable("producer-broker", 5, FaultHistory(tmp_path, "producer-broker"))
    table.add(make_spec("producer-broker", kind="drop-response", method="Produce", after_calls=3,
                        count=2))
    fired = [n for n in range(1, 11) if table.select("/testbed.v1.Broker/Produce", n)]
    assert fired == [3, 4]
    assert table.active == ()  # exhausted: the lean path again
    assert not table.select("/testbed.v1.Broker/Fetch", 11)

    def run(seed: int) -> list[int]:
        t = FaultTable("producer-broker", seed, FaultHistory(tmp_path, "producer-broker"))
        t.add(make_spec("producer-broker", kind="error", probability=0.25))
        return [n for n in range(1, 401) if t.select("/testbed.v1.Broker/Produce", n)]

    assert run(9) == run(9) != run(10)
    assert 60 < len(run(9)) < 140
    with pytest.raises(InvalidFault) as e:
        make_spec("producer-broker", kind="error", method="Apply")
    assert e.value.field == "method"
