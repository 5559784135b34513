"""Committed offsets never move backwards (incident 9), unless the ablation is on.

Plain-class tests of ConsumerOffsets / Broker.commit_offsets, and one gRPC
round trip through a real broker process for the response's ``kept`` field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.broker.broker import Broker
from nodes.broker.offsets import OFFSETS_FILE, ConsumerOffsets
from nodes.common.channels import insecure_channel
from nodes.common.durable import read_json
from nodes.pb import broker_pb2 as pb
from nodes.pb import broker_pb2_grpc

pytestmark = pytest.mark.timeout(60)


async def test_a_late_commit_below_the_committed_offset_is_kept_out(tmp_path: Path) -> None:
    offs = ConsumerOffsets(tmp_path)
    assert await offs.commit("g", "orders", {0: 500, 1: 40}) == {}
    assert await offs.commit("g", "orders", {0: 800, 1: 40}) == {}
    # The commit of 500 arrives late: partition 0 keeps 800; partition 1 (equal) is fine.
    assert await offs.commit("g", "orders", {0: 500, 1: 40}) == {0: 800}
    # Mixed: a partition that moves forward is committed, the regressing one is not.
    assert await offs.commit("g", "orders", {0: 700, 1: 90}) == {0: 800}
    assert offs.fetch("g", "orders") == {0: 800, 1: 90}
    assert offs.kept == 2
    # Durable, and other groups are independent.
    assert ConsumerOffsets(tmp_path).fetch("g", "orders") == {0: 800, 1: 90}
    assert await offs.commit("h", "orders", {0: 3}) == {}
    assert read_json(tmp_path / OFFSETS_FILE, {})["h"] == {"orders": {"0": 3}}


async def test_ablation_lets_the_last_commit_win(tmp_path: Path) -> None:
    offs = ConsumerOffsets(tmp_path, monotonic=False)
    await offs.commit("g", "orders", {0: 800})
    assert await offs.commit("g", "orders", {0: 500}) == {}
    assert offs.fetch("g", "orders") == {0: 500}


@pytest.mark.parametrize("monotonic", [True, False])
async def test_broker_commit_offsets(tmp_path: Path, monotonic: bool) -> None:
    broker = Broker(tmp_path, 2, "at-most-once", monotonic_commits=monotonic)
    broker.recover()
    for p, n in ((0, 800), (1, 6)):   # commits beyond the log end are refused: fill the log
        await broker.produce("orders", p, -1, 0, -1, [(b"k", b"v")] * n)
    await broker.commit_offsets("g", "orders", [(0, 800), (1, 5)])
    kept = await broker.commit_offsets("g", "orders", [(0, 500), (1, 6)])
    assert kept == ({0: 800} if monotonic else {})
    assert broker.committed_offsets("g", "orders") == {0: 800 if monotonic else 500, 1: 6}
    assert broker.status()["monotonic_commits"] is monotonic


async def test_commit_offset_response_names_the_kept_partitions(spawn) -> None:
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "2"])
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)

        async def commit(**offsets: int) -> list[tuple[int, int]]:
            resp = await stub.CommitOffset(pb.CommitOffsetRequest(group="g", topic="orders", offsets=[
                pb.PartitionOffset(partition=int(p[1:]), offset=o) for p, o in offsets.items()]), timeout=5)
            return [(po.partition, po.offset) for po in resp.kept]

        for p, n in ((0, 800), (1, 3)):   # commits beyond the log end are refused: fill the log
            await stub.Produce(pb.ProduceRequest(topic="orders", partition=p, producer_id=-1, records=[
                pb.Record(key=b"k", value=b"v")] * n), timeout=5)
        assert await commit(p0=800, p1=2) == []
        assert await commit(p0=500, p1=3) == [(0, 800)]
        c = await stub.FetchCommittedOffset(pb.FetchCommittedOffsetRequest(group="g", topic="orders"), timeout=5)
        assert [(po.partition, po.offset) for po in c.offsets] == [(0, 800), (1, 3)]
