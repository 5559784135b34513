"""One test per fault kind: a real proxy process in front of a real sink process.

The sink's Apply is not idempotent (each execution increments applied_count),
so the number of executions upstream is read from its Snapshot.
"""

from __future__ import annotations

import grpc
import pytest

from harness.proxy_client import ProxyControlClient
from tests.proxy_support import (apply, apply_code, applied_counts,
                                 fault_records, order, sink_behind_proxy, timed_apply_code)

pytestmark = pytest.mark.timeout(60)


async def test_no_fault_forwards_and_keeps_response(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    for i in range(20):
        resp = await apply(proxy.address, i)
        assert resp.applied == 1
    counts = await applied_counts(sink.address)
    assert counts == {order(i).order_id: 1 for i in range(20)}
    async with ProxyControlClient(proxy.address) as px:
        stats = await px.stats()
    apply_stats = stats["methods"]["/testbed.v1.Sink/Apply"]
    assert apply_stats["calls"] == 20 and apply_stats["forwarded"] == 20
    assert apply_stats["dropped"] == 0 and stats["calls"] == 20
    assert fault_records(proxy) == []


async def test_drop_request_is_never_executed(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        fid = await px.add("drop-request", method="Apply", count=1)
    assert await apply_code(proxy.address, 1) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await apply_code(proxy.address, 2) == grpc.StatusCode.OK  # count=1: only one dropped
    counts = await applied_counts(sink.address)
    assert order(1).order_id not in counts
    assert counts[order(2).order_id] == 1
    [rec] = fault_records(proxy)
    assert (rec["fault"], rec["fault_id"], rec["action"], rec["call"]) == \
        ("drop-request", fid, "dropped-request", 1)


async def test_drop_response_executes_upstream_and_caller_times_out(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("drop-response", method="/testbed.v1.Sink/Apply", after=2, count=1)
        codes = [await apply_code(proxy.address, i) for i in range(1, 4)]
        stats = await px.stats()
    # The lost ACK: the second call executed upstream, its caller saw a timeout.
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OK]
    counts = await applied_counts(sink.address)
    assert counts == {order(i).order_id: 1 for i in range(1, 4)}
    assert stats["methods"]["/testbed.v1.Sink/Apply"]["dropped"] == 1
    assert [(r["call"], r["action"]) for r in fault_records(proxy)] == [(2, "dropped-response")]


async def test_duplicate_executes_twice_caller_sees_one_answer(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("duplicate", method="Apply", count=1)
        resp = await apply(proxy.address, 1)
        stats = await px.stats()
    assert resp.applied == 1
    counts = await applied_counts(sink.address)
    assert counts[order(1).order_id] == 2
    s = stats["methods"]["/testbed.v1.Sink/Apply"]
    assert (s["calls"], s["forwarded"], s["duplicated"]) == (1, 2, 1)


@pytest.mark.parametrize("side", ["request", "response"])
async def test_delay_adds_latency(spawn, side):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("delay", method="Apply", delay_ms=300, jitter_ms=50, side=side, count=1)
    code, elapsed = await timed_apply_code(proxy.address, 1, timeout_s=5)
    assert code == grpc.StatusCode.OK
    [rec] = fault_records(proxy)
    assert rec["side"] == side and 300 <= rec["delay_ms"] <= 350
    assert elapsed >= rec["delay_ms"] / 1000
    assert await apply_code(proxy.address, 2, timeout_s=5) == grpc.StatusCode.OK
    assert len(fault_records(proxy)) == 1  # count=1: the next call is not delayed
    assert (await applied_counts(sink.address))[order(1).order_id] == 1


async def test_delay_longer_than_deadline_on_response_side_executes(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("delay", delay_ms=3000, side="response")
    assert await apply_code(proxy.address, 1, timeout_s=0.5) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (await applied_counts(sink.address))[order(1).order_id] == 1


@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED"])
async def test_error_returns_chosen_code_without_forwarding(spawn, code):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("error", method="Apply", code=code)
    assert await apply_code(proxy.address, 1) == grpc.StatusCode[code]
    assert order(1).order_id not in await applied_counts(sink.address)


async def test_partition_black_holes_until_healed(spawn):
    sink, proxy = await sink_behind_proxy(spawn)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("partition")
        codes = [await apply_code(proxy.address, i, timeout_s=0.5) for i in range(1, 4)]
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 3
        assert await applied_counts(sink.address) == {}
        # The proxy itself still answers while its link is partitioned.
        assert (await px.status())["faults_active"] == ["f1"]
        assert await px.heal() == 1
    assert await apply_code(proxy.address, 4) == grpc.StatusCode.OK
    assert await applied_counts(sink.address) == {order(4).order_id: 1}
    assert [r["call"] for r in fault_records(proxy)] == [1, 2, 3]
