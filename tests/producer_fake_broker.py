"""An in-process fake Broker servicer (grpc.aio, loopback) for the producer's tests.

It keeps a per-partition log of orders, Kafka-style dedupe by (producer id,
partition, base_sequence) and epoch fencing, and can inject the faults the
producer must survive: drop the reply to a batch after appending it (the ACK is
lost; the call hangs until the client's deadline), or refuse every Produce
with "stale epoch". Tests wait on :meth:`FakeBroker.wait_for`, a condition
notified on every request, never on a sleep.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc

from nodes.common.channels import SERVER_OPTIONS
from nodes.pb import broker_pb2, broker_pb2_grpc
from nodes.pb.events_pb2 import Order


@dataclass
class Received:
    """One Produce request as the fake broker saw it."""

    partition: int
    producer_id: int
    epoch: int
    base_sequence: int
    orders: list[str]
    duplicate: bool = False
    base_offset: int = -1


@dataclass
class FakeBroker(broker_pb2_grpc.BrokerServicer):
    partitions: int = 4
    drop_reply_once: set[str] = field(default_factory=set)   # order ids: append, then never answer once
    fence_all: bool = False                                  # answer every Produce "stale epoch"
    lose_previous_at: set[str] = field(default_factory=set)  # order ids: before appending their batch,
    #   forget the partition's previous (ACKed) batch, as a broker that acknowledged before its
    #   fsync and crashed would (shared/scenarios.md, scenario 2)
    lost: list[Received] = field(default_factory=list)
    logs: dict[int, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    epochs: dict[int, int] = field(default_factory=dict)
    dropped: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.logs = {p: [] for p in range(self.partitions)}
        self._seen: dict[tuple[int, int, int], int] = {}     # (pid, partition, base_seq) -> offset
        self._next_seq: dict[tuple[int, int], int] = {}      # (pid, partition) -> next sequence
        self._last: dict[int, Received] = {}                  # partition -> last appended batch
        self._cond = asyncio.Condition()
        self._server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> str:
        self._server = grpc.aio.server(options=SERVER_OPTIONS)
        broker_pb2_grpc.add_BrokerServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        """Wait until ``predicate()`` is true (re-checked on every request); TimeoutError after ``timeout`` s."""
        async def _wait():
            async with self._cond:
                await self._cond.wait_for(predicate)
        await asyncio.wait_for(_wait(), timeout)

    def all_orders(self) -> list[str]:
        return [o for p in sorted(self.logs) for o in self.logs[p]]

    # -- Broker RPCs --------------------------------------------------------------------
    async def ListOffsets(self, request, context):
        return broker_pb2.ListOffsetsResponse(
            partition_count=self.partitions,
            high_watermarks=[broker_pb2.PartitionOffset(partition=p, offset=len(self.logs[p]))
                             for p in range(self.partitions)])

    async def InitProducer(self, request, context):
        pid = request.producer_id
        if pid < 0:
            pid = len(self.epochs)
            self.epochs[pid] = 0
        elif pid not in self.epochs:
            self.epochs[pid] = 0   # a fresh fake that never saw this id: accept it
        else:
            self.epochs[pid] += 1
        await self._notify()
        return broker_pb2.InitProducerResponse(
            producer_id=pid, producer_epoch=self.epochs[pid],
            next_sequences=[broker_pb2.PartitionOffset(partition=p, offset=s)
                            for (q, p), s in sorted(self._next_seq.items()) if q == pid])

    async def Produce(self, request, context):
        orders = [Order.FromString(r.value).order_id for r in request.records]
        rec = Received(request.partition, request.producer_id, request.producer_epoch,
                       request.base_sequence, orders)
        self.received.append(rec)
        await self._notify()
        if self.fence_all or (request.producer_id >= 0
                              and request.producer_epoch < self.epochs.get(request.producer_id, 0)):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"stale epoch: producer {request.producer_id} epoch {request.producer_epoch}")
        log = self.logs[request.partition]
        lose = self.lose_previous_at & set(orders)
        if lose and request.partition in self._last:
            self.lose_previous_at -= lose
            gone = self._last.pop(request.partition)
            del log[gone.base_offset:]
            self._seen.pop((gone.producer_id, gone.partition, gone.base_sequence), None)
            self._next_seq[(gone.producer_id, gone.partition)] = gone.base_sequence
            self.lost.append(gone)
        key = (request.producer_id, request.partition, request.base_sequence)
        if request.producer_id >= 0 and key in self._seen:
            rec.duplicate, rec.base_offset = True, self._seen[key]
        elif request.producer_id >= 0 and request.base_sequence > self._next_seq.get(key[:2], 0):
            await context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                f"sequence gap: expected {self._next_seq.get(key[:2], 0)}, "
                                f"got {request.base_sequence}")
        else:
            rec.base_offset = len(log)
            log.extend(orders)
            self._last[request.partition] = rec
            if request.producer_id >= 0:
                self._seen[key] = rec.base_offset
                self._next_seq[key[:2]] = request.base_sequence + len(orders)
        await self._notify()
        hit = self.drop_reply_once & set(orders)
        if hit:
            self.drop_reply_once -= hit
            self.dropped.append(rec)
            await self._notify()
            await asyncio.Event().wait()   # the ACK is lost: hang until the client gives up
        return broker_pb2.ProduceResponse(base_offset=rec.base_offset, duplicate=rec.duplicate,
                                          log_end_offset=len(log))
