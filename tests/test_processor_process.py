"""The processor node process end to end through real broker and sink processes.

A tiny test producer sends the orders with Produce RPCs (producer id -1, one
batch of up to 100 per partition). Drained = the processor's Status
``durable_positions`` equal the broker's high watermarks (ListOffsets); then
the sink's Snapshot is audited: every order applied exactly once, balances exact.
"""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest

from harness.process import NodeStartError
from nodes.common.channels import insecure_channel
from nodes.common.modes import TOPIC
from nodes.pb import broker_pb2, broker_pb2_grpc, node_pb2, node_pb2_grpc, sink_pb2, sink_pb2_grpc
from nodes.processor.checkpoint import Checkpoint, CheckpointStore
from processor_support import balances, make_orders

pytestmark = pytest.mark.timeout(120)
PARTITIONS = 4
N = 2000
FAST = ["--fetch-max-wait-ms", "100", "--retry-backoff-ms", "20"]


async def produce(broker_addr: str, orders) -> None:
    """Produce ``orders`` (keyed by account) in batches of <= 100 per partition."""
    by_part: dict[int, list] = {}
    for o in orders:
        by_part.setdefault(zlib.crc32(o.account.encode()) % PARTITIONS, []).append(o)
    async with insecure_channel(broker_addr) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        for p, part_orders in sorted(by_part.items()):
            for i in range(0, len(part_orders), 100):
                recs = [broker_pb2.Record(key=o.account.encode(), value=o.SerializeToString())
                        for o in part_orders[i:i + 100]]
                await stub.Produce(broker_pb2.ProduceRequest(topic=TOPIC, partition=p, producer_id=-1,
                                                             base_sequence=-1, records=recs), timeout=10)


async def status(addr: str) -> dict:
    async with insecure_channel(addr) as ch:
        resp = await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=5)
        return json.loads(resp.status_json)


async def wait_status(addr: str, pred, timeout_s: float = 60.0) -> dict:
    """Poll the processor's Status until ``pred(status)`` holds (raises TimeoutError)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        st = await status(addr)
        if pred(st):
            return st
        if loop.time() > deadline:
            raise TimeoutError(f"status condition not met within {timeout_s} s: {st}")
        await asyncio.sleep(0.05)  # poll interval, not synchronisation


async def high_watermarks(broker_addr: str) -> dict[str, int]:
    async with insecure_channel(broker_addr) as ch:
        resp = await broker_pb2_grpc.BrokerStub(ch).ListOffsets(broker_pb2.ListOffsetsRequest(topic=TOPIC),
                                                                timeout=5)
    return {str(po.partition): po.offset for po in resp.high_watermarks}


async def wait_drained(proc_addr: str, broker_addr: str, timeout_s: float = 60.0) -> dict:
    hw = await high_watermarks(broker_addr)
    return await wait_status(proc_addr, lambda st: st.get("durable_positions") == hw, timeout_s)


async def snapshot(sink_addr: str) -> tuple[dict[str, int], dict[str, int]]:
    """(applied count per order id, balance per account) from the sink's paged Snapshot."""
    counts: dict[str, int] = {}
    after, bals = "", {}
    async with insecure_channel(sink_addr) as ch:
        stub = sink_pb2_grpc.SinkStub(ch)
        while True:
            page = await stub.Snapshot(sink_pb2.SnapshotRequest(after_order_id=after, limit=1000), timeout=10)
            for oc in page.orders:
                counts[oc.order_id] = oc.applied_count
            bals = {b.account: b.balance_cents for b in page.balances}
            if page.done or not page.orders:
                return counts, bals
            after = page.orders[-1].order_id


async def cluster(spawn, mode: str, processor_args: list[str]):
    broker = await spawn("broker", ["--mode", mode, "--partitions", str(PARTITIONS)])
    sink = await spawn("sink", ["--mode", mode])
    proc = await spawn("processor", ["--mode", mode, "--broker", broker.address, "--sink", sink.address,
                                     *FAST, *processor_args])
    return broker, sink, proc


async def assert_exactly_once(sink_addr: str, orders) -> None:
    counts, bals = await snapshot(sink_addr)
    assert set(counts) == {o.order_id for o in orders}
    assert set(counts.values()) == {1}
    assert {a: c for a, c in bals.items() if c} == {a: c for a, c in balances(orders).items() if c}


@pytest.mark.parametrize("mode, args", [
    ("at-most-once", []),
    ("at-least-once", []),
    ("exactly-once", ["--sink-strategy", "idempotent"]),
    ("exactly-once", ["--sink-strategy", "transactional"]),
], ids=["at-most-once", "at-least-once", "exactly-once-idempotent", "exactly-once-transactional"])
async def test_no_fault_pipeline_applies_every_order_once(spawn, mode, args):
    orders = make_orders(N, seed=31)
    broker, sink, proc = await cluster(spawn, mode, args)
    await produce(broker.address, orders)
    st = await wait_drained(proc.address, broker.address)
    await assert_exactly_once(sink.address, orders)
    assert st["state"] == balances(orders) and st["records"] == N
    assert st["incarnation"] == 1 and st["phase"] == "running"
    if mode == "exactly-once":
        assert st["checkpoints"] >= 1 and st["pending_transaction"] is None
    assert await proc.stop() == 0  # SIGTERM: graceful stop


@pytest.mark.parametrize("strategy", ["idempotent", "transactional"])
async def test_kill_9_mid_stream_then_restart_applies_every_order_once(spawn, strategy):
    orders = make_orders(N, seed=32)
    broker, sink, proc = await cluster(spawn, "exactly-once", [
        "--sink-strategy", strategy, "--checkpoint-records", "300", "--checkpoint-ms", "60000",
        "--fetch-max-records", "50"])
    await produce(broker.address, orders[:1000])
    # 3 checkpoints by count (900 records); the last 100 are processed, not checkpointed.
    st = await wait_status(proc.address, lambda st: (st.get("last_checkpoint_id") or 0) >= 3
                           and st["records"] == 1000)
    assert st["checkpoints"] == 3 and sum(st["durable_positions"].values()) < 1000
    proc.kill()
    assert await proc.wait(10) == -9
    await produce(broker.address, orders[1000:])
    proc.args[proc.args.index("--checkpoint-ms") + 1] = "200"
    await proc.restart()
    st = await wait_drained(proc.address, broker.address)
    assert st["incarnation"] == 2 and st["records"] < N
    assert st["state"] == balances(orders)
    await assert_exactly_once(sink.address, orders)
    ck = CheckpointStore(proc.data_dir).load()
    assert {str(p): o for p, o in ck.offsets.items()} == await high_watermarks(broker.address)


async def test_corrupt_checkpoint_fails_loudly(spawn, tmp_path):
    data = tmp_path / "processor"
    data.mkdir()
    (data / "checkpoint.json").write_text('{"checkpoint_id": 4, "offs')
    p = await spawn("processor", ["--mode", "exactly-once", "--broker", "127.0.0.1:1",
                                  "--sink", "127.0.0.1:1"], data_dir=data, start=False)
    # NodeProcess.start reports "exited with code 2", or (a race in its health watch when
    # the node exits right after binding) "did not report SERVING within": either way the
    # process had already exited with 2 (refuses to start, naming the file).
    with pytest.raises(NodeStartError):
        await p.start(timeout_s=10)
    assert p.proc.returncode == 2
    assert "checkpoint.json is not valid JSON" in (data / "stderr.log").read_text()


async def test_unknown_pending_transaction_exits_1_without_advancing(spawn):
    """Scenario 5's outcome through real processes: the restored checkpoint's pending
    transaction is unknown to the sink (e.g. aborted by its prepared timeout): the
    processor logs an error and exits 1; the checkpoint is left as it was."""
    orders = make_orders(200, seed=33)
    broker = await spawn("broker", ["--mode", "exactly-once", "--partitions", str(PARTITIONS)])
    sink = await spawn("sink", ["--mode", "exactly-once"])
    await produce(broker.address, orders)
    proc = await spawn("processor", ["--mode", "exactly-once", "--sink-strategy", "transactional",
                                     "--broker", broker.address, "--sink", sink.address, *FAST],
                       start=False)
    proc.data_dir.mkdir(parents=True)
    store = CheckpointStore(proc.data_dir)
    store.save(Checkpoint(5, {0: 0, 1: 0, 2: 0, 3: 0}, {}, "processor-i1-c5"))
    before = store.path.read_bytes()
    try:
        await proc.start(timeout_s=20)
    except NodeStartError:
        pass  # it may exit before its SERVING was observed
    assert await proc.wait(20) == 1
    assert "processor-i1-c5" in (proc.data_dir / "stderr.log").read_text()
    assert store.path.read_bytes() == before
    counts, _ = await snapshot(sink.address)
    assert counts == {}
