"""In-process fakes of the broker and the sink for the processor's plain-class tests.

Both are real grpc.aio servers on 127.0.0.1:0 implementing the contracts in
proto/nodes/pb/{broker,sink}.proto, with a shared *journal* (every state
change, in order) and per-method fault hooks:

- ``faults.errors[method]``: status codes returned by the next calls (before any effect);
- ``faults.lost_acks[method]``: the next N calls take effect, then answer UNAVAILABLE;
- ``faults.gates[method]``: an asyncio.Event the call waits on (closed = held in flight).

The sink's Apply and Commit are non-idempotent increments, so a duplicate
shows as ``applied[order_id] == 2``.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter, defaultdict
from contextlib import asynccontextmanager

import grpc

from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2, broker_pb2_grpc, sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order


def make_orders(n: int, seed: int = 7, accounts: int = 10) -> list[Order]:
    """A deterministic workload: order ids ``order-00000000``..., signed amounts in cents."""
    rng = random.Random(seed)
    return [Order(order_id=f"order-{i:08d}", account=f"acct-{rng.randrange(accounts):02d}",
                  amount_cents=rng.randint(-500, 5000)) for i in range(n)]


def balances(orders) -> dict[str, int]:
    out: Counter = Counter()
    for o in orders:
        out[o.account] += o.amount_cents
    return dict(out)


class Faults:
    def __init__(self) -> None:
        self.errors: dict[str, list[grpc.StatusCode]] = defaultdict(list)
        self.lost_acks: Counter = Counter()
        self.gates: dict[str, asyncio.Event] = {}
        self.calls: Counter = Counter()

    def gate(self, method: str) -> asyncio.Event:
        """Close ``method``'s gate (calls hold until the returned event is set)."""
        ev = asyncio.Event()
        self.gates[method] = ev
        return ev

    async def before(self, method: str, context) -> None:
        self.calls[method] += 1
        gate = self.gates.get(method)
        if gate is not None:
            await gate.wait()
        if self.errors[method]:
            await context.abort(self.errors[method].pop(0), f"injected error on {method}")

    async def after(self, method: str, context) -> None:
        if self.lost_acks[method] > 0:
            self.lost_acks[method] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"injected lost ACK on {method}")


class FakeBroker(broker_pb2_grpc.BrokerServicer):
    def __init__(self, partitions: int, journal: list) -> None:
        self.logs: list[list[broker_pb2.Record]] = [[] for _ in range(partitions)]
        self.committed: dict[str, dict[int, int]] = defaultdict(dict)
        self.journal = journal
        self.faults = Faults()
        self._appended = asyncio.Event()

    def append(self, orders) -> None:
        for o in orders:
            p = zlib.crc32(o.account.encode()) % len(self.logs)
            log = self.logs[p]
            log.append(broker_pb2.Record(offset=len(log), key=o.account.encode(),
                                         value=o.SerializeToString(), producer_id=-1, sequence=-1))
        self._appended.set()
        self._appended = asyncio.Event()

    def high_watermarks(self) -> dict[int, int]:
        return {p: len(log) for p, log in enumerate(self.logs)}

    async def Fetch(self, request, context):
        await self.faults.before("Fetch", context)
        deadline = asyncio.get_running_loop().time() + request.max_wait_ms / 1000.0
        while True:
            resp = broker_pb2.FetchResponse()
            found = False
            for po in request.partitions:
                log = self.logs[po.partition]
                recs = log[po.offset:po.offset + request.max_records]
                found |= bool(recs)
                resp.partitions.append(broker_pb2.PartitionRecords(
                    partition=po.partition, records=recs, high_watermark=len(log)))
            remaining = deadline - asyncio.get_running_loop().time()
            if found or remaining <= 0:
                return resp
            try:
                await asyncio.wait_for(self._appended.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def CommitOffset(self, request, context):
        await self.faults.before("CommitOffset", context)
        offsets = {po.partition: po.offset for po in request.offsets}
        self.committed[request.group].update(offsets)
        self.journal.append(("CommitOffset", sum(self.committed[request.group].values())))
        await self.faults.after("CommitOffset", context)
        return broker_pb2.CommitOffsetResponse()

    async def FetchCommittedOffset(self, request, context):
        await self.faults.before("FetchCommittedOffset", context)
        return broker_pb2.FetchCommittedOffsetResponse(offsets=[
            broker_pb2.PartitionOffset(partition=p, offset=o)
            for p, o in sorted(self.committed[request.group].items())])

    async def ListOffsets(self, request, context):
        await self.faults.before("ListOffsets", context)
        return broker_pb2.ListOffsetsResponse(partition_count=len(self.logs), high_watermarks=[
            broker_pb2.PartitionOffset(partition=p, offset=o) for p, o in self.high_watermarks().items()])


class FakeSink(sink_pb2_grpc.SinkServicer):
    def __init__(self, journal: list) -> None:
        self.applied: Counter = Counter()
        self.balances: Counter = Counter()
        self.prepared: dict[str, list[Order]] = {}
        self.committed: set[str] = set()
        self.aborted: set[str] = set()
        self.journal = journal
        self.faults = Faults()

    def _apply(self, o: Order) -> None:
        self.applied[o.order_id] += 1
        self.balances[o.account] += o.amount_cents

    @property
    def total_applied(self) -> int:
        return sum(self.applied.values())

    async def Apply(self, request, context):
        await self.faults.before("Apply", context)
        for o in request.orders:
            self._apply(o)
        self.journal.append(("Apply", self.total_applied))
        await self.faults.after("Apply", context)
        return sink_pb2.WriteResponse(applied=len(request.orders))

    async def Upsert(self, request, context):
        await self.faults.before("Upsert", context)
        applied = skipped = 0
        for o in request.orders:
            if self.applied[o.order_id]:
                skipped += 1
            else:
                self._apply(o)
                applied += 1
        self.journal.append(("Upsert", self.total_applied))
        await self.faults.after("Upsert", context)
        return sink_pb2.WriteResponse(applied=applied, skipped=skipped)

    async def PreCommit(self, request, context):
        await self.faults.before("PreCommit", context)
        txn = request.transaction_id
        if txn in self.committed or txn in self.aborted:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{txn} already finished")
        self.prepared[txn] = list(request.orders)
        self.journal.append(("PreCommit", txn))
        await self.faults.after("PreCommit", context)
        return sink_pb2.PreCommitResponse()

    async def Commit(self, request, context):
        await self.faults.before("Commit", context)
        txn = request.transaction_id
        if txn in self.committed:
            self.journal.append(("Commit", txn, "already"))
            return sink_pb2.CommitResponse(already_committed=True)
        if txn in self.aborted:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{txn} was aborted")
        if txn not in self.prepared:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{txn} unknown")
        orders = self.prepared.pop(txn)
        for o in orders:
            self._apply(o)
        self.committed.add(txn)
        self.journal.append(("Commit", txn))
        await self.faults.after("Commit", context)
        return sink_pb2.CommitResponse(applied=len(orders))

    async def Abort(self, request, context):
        await self.faults.before("Abort", context)
        txn = request.transaction_id
        if txn in self.aborted:
            return sink_pb2.AbortResponse(already_aborted=True)
        if txn not in self.prepared:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{txn} unknown")
        del self.prepared[txn]
        self.aborted.add(txn)
        self.journal.append(("Abort", txn))
        return sink_pb2.AbortResponse()

    async def ListPrepared(self, request, context):
        await self.faults.before("ListPrepared", context)
        return sink_pb2.ListPreparedResponse(transaction_ids=sorted(self.prepared))


class FakeCluster:
    """A fake broker and sink on loopback plus a client channel to each."""

    def __init__(self, partitions: int) -> None:
        self.journal: list = []
        self.broker = FakeBroker(partitions, self.journal)
        self.sink = FakeSink(self.journal)
        self.server = grpc.aio.server()
        broker_pb2_grpc.add_BrokerServicer_to_server(self.broker, self.server)
        sink_pb2_grpc.add_SinkServicer_to_server(self.sink, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.channels: list[grpc.aio.Channel] = []

    def channel(self) -> grpc.aio.Channel:
        ch = insecure_channel(self.address)
        self.channels.append(ch)
        return ch


@asynccontextmanager
async def fake_cluster(partitions: int = 4):
    c = FakeCluster(partitions)
    await c.server.start()
    try:
        yield c
    finally:
        for ch in c.channels:
            await ch.close()
        await c.server.stop(0)


# --- driving a Processor (plain class) against the fakes -----------------------------------

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from nodes.processor.processor import Processor, ProcessorConfig  # noqa: E402

FAST = dict(fetch_max_wait_ms=50, checkpoint_ms=100, sink_timeout_ms=1000, rpc_timeout_ms=1000,
            retry_backoff_ms=5, sink_batch=50)


def make_processor(cluster: FakeCluster, data_dir: Path, **knobs) -> Processor:
    """A Processor on fresh channels to ``cluster``, with fast timeouts unless overridden."""
    config = ProcessorConfig(**{**FAST, **knobs})
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return Processor(config, data_dir, cluster.channel(), cluster.channel(),
                     logging.getLogger("processor.test"))


@asynccontextmanager
async def running(proc: Processor):
    """Run ``proc`` in a task; cancel it on exit (a cancel is our in-process kill -9:
    nothing is flushed, the next Processor on the same data dir recovers)."""
    task = asyncio.ensure_future(proc.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def drained(cluster: FakeCluster):
    """Predicate: the processor's durable positions reached the broker's high watermarks."""
    hw = cluster.broker.high_watermarks()
    return lambda p: all(p.durable_positions.get(q) == o for q, o in hw.items())


class SimulatedCrash(Exception):
    """Raised by :func:`crash_on` at a precise point: the processor stops right there."""


def crash_on(obj, name: str, nth: int = 1, *, before: bool = True):
    """Patch async method ``obj.name`` to raise SimulatedCrash on its ``nth`` call
    (``before`` the real call, or after it returned). Returns the call counter."""
    real = getattr(obj, name)
    calls = {"n": 0}

    async def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth and before:
            raise SimulatedCrash(f"{name} call {nth}")
        result = await real(*args, **kwargs)
        if calls["n"] == nth:
            raise SimulatedCrash(f"after {name} call {nth}")
        return result

    setattr(obj, name, patched)
    return calls


def journal_saves(proc: Processor, journal: list) -> None:
    """Record each checkpoint save in ``journal`` as ("Save", id, pending, offsets total)."""
    real = proc.store.save

    def save(ck):
        real(ck)
        journal.append(("Save", ck.checkpoint_id, ck.pending_transaction, sum(ck.offsets.values())))

    proc.store.save = save
