"""The producer against the real broker process (nodes.broker), both on loopback."""

from __future__ import annotations

from collections import Counter

import pytest

from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2, broker_pb2_grpc
from nodes.pb.events_pb2 import Order
from nodes.producer.history import read_history
from nodes.producer.workload import generate
from test_producer_process import wait_status

pytestmark = pytest.mark.timeout(120)


async def broker_orders(address: str, partitions: int = 4) -> list[str]:
    """Every order id in the broker's log, read with Fetch from offset 0 up to the high watermarks."""
    async with insecure_channel(address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        ends = await stub.ListOffsets(broker_pb2.ListOffsetsRequest(topic="orders"), timeout=5)
        want = {po.partition: po.offset for po in ends.high_watermarks}
        pos = {p: 0 for p in range(partitions)}
        ids: list[str] = []
        while any(pos[p] < want.get(p, 0) for p in pos):
            req = broker_pb2.FetchRequest(topic="orders", max_records=1000, max_wait_ms=100, partitions=[
                broker_pb2.PartitionOffset(partition=p, offset=o) for p, o in pos.items() if o < want.get(p, 0)])
            resp = await stub.Fetch(req, timeout=10)
            for pr in resp.partitions:
                for r in pr.records:
                    ids.append(Order.FromString(r.value).order_id)
                    pos[pr.partition] = r.offset + 1
    return ids


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
async def test_delivers_every_order_to_the_real_broker(spawn, mode):
    b = await spawn("broker", ["--mode", mode, "--partitions", "4"])
    p = await spawn("producer", ["--mode", mode, "--broker", b.address, "--seed", "4", "--count", "2000"])
    st = await wait_status(p.address, lambda s: s["done"])
    assert st["batches_acked"] == st["batches_sent"] and st["given_up"] == 0
    ids = await broker_orders(b.address)
    expected = sorted(o.order_id for o in generate(4, 2000))
    if mode == "exactly-once" or st["retries"] == 0:
        assert sorted(ids) == expected
    else:   # a spurious timeout on a loaded machine: at-least-once may append a batch twice
        assert sorted(set(ids)) == expected


async def test_exactly_once_kill_and_restart_against_the_real_broker(spawn):
    b = await spawn("broker", ["--mode", "exactly-once", "--partitions", "4"])
    a = ["--mode", "exactly-once", "--broker", b.address, "--seed", "8", "--count", "3000",
         "--rate", "3000"]
    p = await spawn("producer", a)
    await wait_status(p.address, lambda s: s["position"] >= 1000)
    p.kill()
    assert await p.wait(10) == -9
    await p.restart()
    st = await wait_status(p.address, lambda s: s["done"])
    assert st["incarnation"] == 2 and st["epoch"] == 1
    ids = await broker_orders(b.address)
    counts = Counter(ids)
    assert set(counts) == {o.order_id for o in generate(8, 3000)}
    assert max(counts.values()) == 1
    hist = read_history(p.data_dir / "history.jsonl")
    assert not any(h["type"] == "fail" for h in hist)


async def test_broker_restart_under_exactly_once_producer(spawn):
    """kill -9 the broker mid-run: the producer retries (info, then ok) and nothing is duplicated."""
    b = await spawn("broker", ["--mode", "exactly-once", "--partitions", "4"])
    p = await spawn("producer", ["--mode", "exactly-once", "--broker", b.address, "--seed", "6",
                                 "--count", "3000", "--rate", "5000", "--ack-timeout-ms", "500"])
    await wait_status(p.address, lambda s: s["position"] >= 1000)
    b.kill()
    assert await b.wait(10) == -9
    await b.restart()
    st = await wait_status(p.address, lambda s: s["done"], timeout=60)
    assert st["position"] == 3000 and st["retries"] >= 1
    hist = read_history(p.data_dir / "history.jsonl")
    assert any(h["type"] == "info" for h in hist)
    assert any(h["type"] == "ok" and h["value"]["attempt"] > 1 for h in hist)
    counts = Counter(await broker_orders(b.address))
    assert set(counts) == {o.order_id for o in generate(6, 3000)}
    assert max(counts.values()) == 1
