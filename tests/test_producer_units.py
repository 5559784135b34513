"""The producer's plain classes without processes: history writer, state store, and the
batch loop over an in-memory stub that checks WHEN the source position was persisted."""

from __future__ import annotations

import json

import grpc
import pytest

from nodes.common.partitioning import partition_for
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order
from nodes.producer.history import HistoryWriter, completion_type, read_history
from nodes.producer.producer import Producer, ProducerConfig
from nodes.producer.attempt import ProducerFenced
from nodes.producer.state import ProducerState, StateStore, WorkloadMismatch
from nodes.producer.workload import generate, identity

pytestmark = pytest.mark.timeout(30)
IDENT = identity(seed=1, count=500, accounts=16)


def test_history_lines_have_the_documented_shape(tmp_path):
    h = HistoryWriter(tmp_path, incarnation=1)
    v = {"batch": 0, "partition": 2, "base_sequence": None, "attempt": 1, "orders": ["order-00000000"]}
    h.invoke(v)
    h.ok(v, offset=17, duplicate=False)
    h.info(v, "DEADLINE_EXCEEDED: Deadline Exceeded")
    h.fail(v, "INVALID_ARGUMENT: empty batch")
    h.close()
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    ops = [json.loads(line) for line in lines]
    assert [o["index"] for o in ops] == [0, 1, 2, 3]
    assert [o["type"] for o in ops] == ["invoke", "ok", "info", "fail"]
    for o in ops:
        assert o["process"] == "producer" and o["f"] == "produce" and o["incarnation"] == 1
        assert o["value"] == v and isinstance(o["time"], float)
    assert ops[1]["offset"] == 17 and ops[1]["duplicate"] is False and "error" not in ops[1]
    assert "offset" not in ops[0] and "error" not in ops[0]
    assert ops[2]["error"].startswith("DEADLINE_EXCEEDED") and "offset" not in ops[2]


def test_history_index_continues_across_restarts_and_drops_a_torn_line(tmp_path):
    h = HistoryWriter(tmp_path, incarnation=1)
    for i in range(3):
        h.invoke({"batch": i})
    h._f.write('{"index": 3, "time": 1.0, "proc')   # kill -9 in the middle of a line
    h._f.flush()
    h2 = HistoryWriter(tmp_path, incarnation=2)
    h2.invoke({"batch": 9})
    h2.close()
    ops = read_history(tmp_path / "history.jsonl")
    assert [(o["index"], o["incarnation"]) for o in ops] == [(0, 1), (1, 1), (2, 1), (3, 2)]


def test_completion_type_definite_vs_indefinite():
    assert completion_type(grpc.StatusCode.INVALID_ARGUMENT) == "fail"
    assert completion_type(grpc.StatusCode.FAILED_PRECONDITION) == "fail"
    for code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE,
                 grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, None):
        assert completion_type(code) == "info"


def test_state_store_round_trip_and_workload_mismatch(tmp_path):
    store = StateStore(tmp_path)
    st = store.load(IDENT, 500)
    assert (st.position, st.producer_id, st.next_sequences) == (0, None, {})
    st.position, st.batch, st.producer_id, st.epoch, st.next_sequences = 300, 3, 7, 2, {0: 40, 3: 12}
    store.save(st)
    again = store.load(IDENT, 500)
    assert again == st
    with pytest.raises(WorkloadMismatch, match="seed=1.*not.*seed=2"):
        store.load(identity(seed=2, count=500, accounts=16), 500)
    with pytest.raises(ValueError, match="outside"):
        store.load(IDENT, 200)


class MemoryBroker:
    """A Broker stub in memory: records, per Produce, the position persisted at that moment."""

    def __init__(self, store: StateStore, partitions: int = 4, fail_first: int = 0,
                 code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.store, self.partitions = store, partitions
        self.fail_first, self.code = fail_first, code
        self.calls: list[tuple[broker_pb2.ProduceRequest, int]] = []
        self.appended: list[str] = []

    async def ListOffsets(self, request, timeout=None):
        return broker_pb2.ListOffsetsResponse(partition_count=self.partitions)

    async def InitProducer(self, request, timeout=None):
        return broker_pb2.InitProducerResponse(producer_id=5, producer_epoch=0)

    async def Produce(self, request, timeout=None):
        persisted = json.loads(self.store.path.read_text())["position"]
        self.calls.append((request, persisted))
        if len(self.calls) <= self.fail_first:
            raise grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       details="injected")
        self.appended += [Order.FromString(r.value).order_id for r in request.records]
        return broker_pb2.ProduceResponse(base_offset=0)


def make(tmp_path, mode: str, broker_kwargs=None, **config):
    orders = generate(1, 500)
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = StateStore(tmp_path)
    state = store.load(IDENT, len(orders))
    state.incarnation = 1
    store.save(state)
    broker = MemoryBroker(store, **(broker_kwargs or {}))
    history = HistoryWriter(tmp_path, 1)
    cfg = ProducerConfig(mode=mode, batch_size=100, retry_backoff_ms=0, **config)
    return Producer(orders, state, store, history, broker, cfg), broker, orders


def batch_end(request: broker_pb2.ProduceRequest, orders) -> tuple[int, int]:
    """(start, end) of the workload batch a request belongs to (batch size 100)."""
    first = int(Order.FromString(request.records[0].value).order_id.split("-")[1])
    return first // 100 * 100, first // 100 * 100 + 100


async def test_at_most_once_persists_position_before_each_send(tmp_path):
    p, broker, orders = make(tmp_path, "at-most-once")
    await p.run()
    assert p.done and p.status()["batches_acked"] == len(broker.calls)
    for req, persisted in broker.calls:
        assert persisted >= batch_end(req, orders)[1]   # already past this batch (fire-and-forget)


async def test_at_least_once_persists_position_after_the_acks(tmp_path):
    p, broker, orders = make(tmp_path, "at-least-once")
    await p.run()
    for req, persisted in broker.calls:
        assert persisted == batch_end(req, orders)[0]   # still at this batch's start
        assert req.producer_id == -1 and req.base_sequence == -1
        parts = {partition_for(Order.FromString(r.value).account, 4) for r in req.records}
        assert parts == {req.partition}
    assert sorted(broker.appended) == sorted(o.order_id for o in orders)
    assert json.loads(p.store.path.read_text())["position"] == 500


async def test_at_most_once_never_retries_and_at_least_once_does(tmp_path):
    p, broker, _ = make(tmp_path / "amo", "at-most-once", {"fail_first": 3})
    await p.run()
    st = p.status()
    assert st["retries"] == 0 and len(broker.calls) == st["batches_sent"]
    assert len(broker.appended) < 500                    # the failed sends are lost
    q, broker2, orders = make(tmp_path / "alo", "at-least-once", {"fail_first": 3})
    await q.run()
    assert q.status()["retries"] == 3
    assert sorted(broker2.appended) == sorted(o.order_id for o in orders)


async def test_no_retry_ablation_gives_batches_up(tmp_path):
    p, broker, _ = make(tmp_path, "at-least-once", {"fail_first": 2}, no_retry=True)
    await p.run()
    st = p.status()
    assert st["given_up"] == 2 and st["retries"] == 0 and st["done"]
    assert len(broker.appended) < 500


async def test_exactly_once_sequences_and_fencing(tmp_path):
    p, broker, _ = make(tmp_path / "ok", "exactly-once")
    await p.run()
    nxt: dict[int, int] = {}
    for req, _ in broker.calls:
        assert (req.producer_id, req.producer_epoch) == (5, 0)
        assert req.base_sequence == nxt.get(req.partition, 0)
        nxt[req.partition] = req.base_sequence + len(req.records)
    assert p.state.next_sequences == nxt
    q, _, _ = make(tmp_path / "fenced", "exactly-once",
                   {"fail_first": 1, "code": grpc.StatusCode.FAILED_PRECONDITION})
    with pytest.raises(ProducerFenced):
        await q.run()
    assert json.loads(q.store.path.read_text())["position"] == 0


async def test_rate_paces_batches_on_the_loop_clock(tmp_path):
    import asyncio
    p, broker, _ = make(tmp_path, "at-least-once", rate=5000.0)
    loop = asyncio.get_running_loop()
    t = loop.time()
    await p.run()
    # 5 batches of 100: the last leaves at t0 + 400 / 5000 s = 80 ms at the earliest.
    assert loop.time() - t >= 0.08
    assert p.done and len(broker.appended) == 500


def test_history_line_text_is_the_standard_librarys():
    """The history writer's orjson fast path writes exactly what json.dumps wrote (issue 16)."""
    import json

    from nodes.producer.history import _dumps

    ids = ["order-00000001", "caf\u00e9", "del\x7f", "ctl\x00\x1f\n", "\ud800", "x" * 300]
    for value in ({"orders": ids[:1], "base_sequence": None, "attempt": 1},
                  {"orders": ids}, {"orders": [2**70]}, {"orders": [-(2**63)], "ok": True}):
        op = {"index": 7, "time": 1796093534.994225, "process": "producer", "type": "ok",
              "f": "produce", "value": value, "offset": 2**40, "duplicate": False}
        assert _dumps(op) == json.dumps(op, separators=(",", ":"))
