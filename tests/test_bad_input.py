"""Bad input never stalls, crashes or grows without bound (issue 11), one test per defect:

- a 10 MB order id: the producer does not retry the broker's refusal forever and its
  history stays small;
- Fetch listing a partition 100,000 times, a 1 MiB group name, an offset commit beyond
  the log end: refused at once (and the refused commit does not stick);
- malformed protobuf bytes: INVALID_ARGUMENT (was UNKNOWN) on every node;
- ``--rate nan``: one error line, exit code 2;
- a processor whose commit is refused with OUT_OF_RANGE stops with that error
  (was: retried forever); the sink refuses a balance overflow with INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from nodes.common.channels import insecure_channel
from nodes.common.limits import INT64_MAX
from nodes.common.retry import PermanentRpcError
from nodes.common.modes import AT_LEAST_ONCE
from nodes.pb import broker_pb2 as bpb
from nodes.pb import broker_pb2_grpc, node_pb2, node_pb2_grpc, sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order
from harness.process import NodeStartError
from nodes.producer.history import read_history
from processor_support import fake_cluster, make_orders, make_processor, running

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent
T = 10


async def status(address: str) -> dict:
    async with insecure_channel(address) as ch:
        r = await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=T)
    return json.loads(r.status_json)


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def test_a_10_mb_order_id_is_refused_at_the_door_in_one_line(spawn, tmp_path):
    """A workload line of 10 MB never reaches the broker (it used to be retried forever and
    written into the history on every attempt): the producer refuses the file at start,
    naming the line, exit 2."""
    rows = [{"order_id": f"order-{i}", "account": f"a{i % 3}", "amount_cents": i} for i in range(6)]
    rows.insert(3, {"order_id": "x" * (10 * 1024 * 1024), "account": "a0", "amount_cents": 1})
    wl = tmp_path / "w.jsonl"
    wl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "1"])
    with pytest.raises(NodeStartError) as e:
        await spawn("producer", ["--mode", "at-least-once", "--broker", broker.address, "--workload", str(wl)])
    assert "exited with code 2" in str(e.value) and "w.jsonl:4: line is 10,485,812 bytes" in str(e.value)


def test_a_huge_order_id_is_hashed_in_the_history_line():
    """Whatever an order id holds, the producer's history line names it by hash and length."""
    from nodes.producer.attempt import history_id
    huge = "x" * (10 * 1024 * 1024)
    assert history_id("order-1") == "order-1"
    hid = history_id(huge)
    assert hid.startswith("<sha256:") and hid.endswith(f"len:{len(huge)}>") and len(hid) < 100


async def test_broker_refuses_unbounded_fetch_group_and_commit_requests(spawn):
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "2"])
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        await stub.Produce(bpb.ProduceRequest(topic="orders", partition=0, producer_id=-1, records=[
            bpb.Record(key=b"k", value=b"v")] * 5), timeout=T)
        t0 = time.monotonic()
        same = [bpb.PartitionOffset(partition=0, offset=0)] * 100_000
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.Fetch(bpb.FetchRequest(topic="orders", partitions=same, max_wait_ms=0), timeout=T)
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
        assert time.monotonic() - t0 < 2
        twice = [bpb.PartitionOffset(partition=0, offset=0), bpb.PartitionOffset(partition=0, offset=1)]
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.Fetch(bpb.FetchRequest(topic="orders", partitions=twice), timeout=T)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "more than once" in ei.value.details()
        big_group = "g" * (1 << 20)
        for call in (stub.CommitOffset(bpb.CommitOffsetRequest(group=big_group, topic="orders", offsets=[
                         bpb.PartitionOffset(partition=0, offset=1)]), timeout=T),
                     stub.FetchCommittedOffset(bpb.FetchCommittedOffsetRequest(group=big_group, topic="orders"),
                                               timeout=T)):
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await call
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(ei.value.details()) < 300
        await stub.CommitOffset(bpb.CommitOffsetRequest(group="g", topic="orders", offsets=[
            bpb.PartitionOffset(partition=0, offset=3)]), timeout=T)
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await stub.CommitOffset(bpb.CommitOffsetRequest(group="g", topic="orders", offsets=[
                bpb.PartitionOffset(partition=0, offset=1_000_000)]), timeout=T)
        assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE and "log end offset 5" in ei.value.details()
        # The refused commit did not stick: a legitimate commit below it still moves forward.
        r = await stub.CommitOffset(bpb.CommitOffsetRequest(group="g", topic="orders", offsets=[
            bpb.PartitionOffset(partition=0, offset=4)]), timeout=T)
        assert list(r.kept) == []
        c = await stub.FetchCommittedOffset(bpb.FetchCommittedOffsetRequest(group="g", topic="orders"), timeout=T)
        assert [(po.partition, po.offset) for po in c.offsets] == [(0, 4)]


async def test_malformed_protobuf_bytes_answer_invalid_argument_on_every_node(spawn):
    broker = await spawn("broker", ["--mode", "at-least-once"])
    sink = await spawn("sink", ["--mode", "at-least-once"])
    proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", sink.address])
    targets = [(broker.address, "/testbed.v1.Broker/Produce"), (broker.address, "/testbed.v1.Broker/Fetch"),
               (sink.address, "/testbed.v1.Sink/Apply"), (sink.address, "/testbed.v1.Sink/DeadLetter"),
               (sink.address, "/testbed.v1.NodeControl/ArmFailpoint"),
               (proxy.address, "/testbed.v1.ProxyControl/AddFault"),
               (proxy.address, "/testbed.v1.Sink/Apply")]   # forwarded as bytes: the sink answers
    for address, method in targets:
        async with insecure_channel(address) as ch:
            call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
            code = await code_of(call(b"\x0a\xff\xff\xff\xff\x0f", timeout=T))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code)


@pytest.mark.parametrize("argv", [
    ["-m", "harness.cli", "campaign", "--rate", "nan"],
    ["-m", "harness.cli", "campaign", "--drain-timeout", "inf"],
    ["-m", "harness.cli", "up", "--rate", "-inf"],
    ["-m", "harness.cli", "fault", "add", "drop-request", "--link", "producer-broker", "--probability", "nan"],
    ["-m", "nodes.producer", "--data-dir", "{tmp}/p", "--broker", "127.0.0.1:1", "--rate", "nan"],
])
def test_nan_and_infinity_options_exit_2_with_one_error_line(argv, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2, r
    # the harness CLI prints one line ("error: testbed ...: ..."); a node prints click's
    # usage lines and one "Error: ..." line
    errors = [ln for ln in r.stderr.splitlines() if ln.lower().startswith("error")]
    assert len(errors) == 1 and "not a finite number" in errors[0] and "Traceback" not in r.stderr


async def test_processor_stops_on_a_commit_beyond_the_log_end(tmp_path):
    """A broker that lost its log tail answers OUT_OF_RANGE to the processor's commit:
    a permanent error, so the processor stops with it (it used to retry forever)."""
    async with fake_cluster() as c:
        c.broker.append(make_orders(40, seed=5))
        c.broker.faults.errors["CommitOffset"] = [grpc.StatusCode.OUT_OF_RANGE]
        p = make_processor(c, tmp_path, mode=AT_LEAST_ONCE)
        async with running(p) as task:
            with pytest.raises(PermanentRpcError) as ei:
                await asyncio.wait_for(asyncio.shield(task), 10)
        assert ei.value.code == grpc.StatusCode.OUT_OF_RANGE and "CommitOffset" in str(ei.value)
        assert p.phase == "failed"


async def test_sink_refuses_a_balance_overflow_and_snapshots_still_work(spawn):
    sink = await spawn("sink", ["--mode", "at-least-once"])
    async with insecure_channel(sink.address) as ch:
        stub = sink_pb2_grpc.SinkStub(ch)
        await stub.Apply(sink_pb2.WriteRequest(orders=[Order(order_id="o1", account="a",
                                                             amount_cents=INT64_MAX)]), timeout=T)
        for method in (stub.Apply, stub.Upsert):
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await method(sink_pb2.WriteRequest(orders=[
                    Order(order_id="o2", account="b", amount_cents=5),
                    Order(order_id="o3", account="a", amount_cents=1)]), timeout=T)
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "overflow" in ei.value.details()
        snap = await stub.Snapshot(sink_pb2.SnapshotRequest(), timeout=T)
        assert [(b.account, b.balance_cents) for b in snap.balances] == [("a", INT64_MAX)]
        assert [o.order_id for o in snap.orders] == ["o1"]   # nothing of the refused calls applied
