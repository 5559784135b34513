"""The per-mode send strategies: what to persist when, and whether to retry.

A workload batch (``--batch-size`` events), split by partition, is handed to
``send_batch``; each partition batch goes out through ``attempt.Sender``. The
strategies implement the producer column of the mode table in shared/DESIGN.md:

* :class:`AtMostOnce` - persist the source position *before* sending, then
  fire-and-forget: the sends run in the background (at most ``max_in_flight``
  at once, as back-pressure), are never retried, and their outcome is only
  recorded in the history.
* :class:`AtLeastOnce` - send every partition's batch concurrently, await each
  ACK within the ack timeout, retry on timeout or error after a backoff until
  ACKed; persist the position *after* every partition ACKed. ``no_retry`` (an
  ablation) gives a timed-out or failed batch up instead.
* :class:`ExactlyOnce` - at-least-once plus Kafka's idempotent producer
  (KIP-98): a producer id and epoch from InitProducer, per-partition sequence
  numbers, a retry re-sends the same records with the same base_sequence, and
  {position, producer id, epoch, next sequences} is persisted atomically after
  the ACK. A duplicate answer counts as ACKed; FAILED_PRECONDITION "stale epoch"
  (fenced by a newer incarnation) raises :class:`ProducerFenced`.

Retries follow nodes/common/retry.py: only transient codes are retried, with
capped exponential backoff (``retry_backoff`` doubling up to 1 s). A batch
refused with any other permanent code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED: a
10 MB order id over the broker's 1 MiB record limit) is recorded as ``fail``
(definite) and is never re-sent as it was: at-least-once and exactly-once split
it in halves, each sent on its own (the idempotent producer numbers the halves
from the batch's base sequence, consuming a sequence number only for what the
broker took), until the refused order is alone; that order is given up
(``refused_orders`` in Status, an error line in the log) and the producer moves
on. The audit reports it as ``lost`` at the producer->broker hop: a workload
order the system could not carry IS lost. At-most-once never re-sends anything:
the refused batch's ``fail`` is its outcome.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from nodes.common.failpoints import FAILPOINTS
from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from nodes.common.retry import backoff_s, is_permanent
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order
from nodes.producer.attempt import PartitionBatch, ProducerFenced, Sender, SequenceGap, is_fenced
from nodes.producer.state import ProducerState, StateStore

log = logging.getLogger("producer")


class AtMostOnce:
    """Position persisted before the send; fire-and-forget; never retried."""

    def __init__(self, sender: Sender, state: ProducerState, store: StateStore,
                 max_in_flight: int = 64) -> None:
        self.sender, self.state, self.store = sender, state, store
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[asyncio.Task] = set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def start(self) -> None:
        """Nothing to set up: no producer id."""

    async def send_batch(self, batch: int, groups: dict[int, list[Order]], end: int) -> None:
        self.state.position, self.state.batch = end, batch + 1
        self.store.save(self.state)   # BEFORE the send: a crash now loses the batch
        if FAILPOINTS.armed:
            await FAILPOINTS.hit("producer.after-persist-before-send")
        for partition, orders in sorted(groups.items()):
            await self._slots.acquire()
            pb = PartitionBatch(batch, partition, orders)
            task = asyncio.ensure_future(self.sender.attempt(pb, pb.request(), 1))
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("send failed: %r", task.exception())

    async def drain(self) -> None:
        """Wait until every fire-and-forget send has its outcome recorded."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))


class AtLeastOnce:
    """Await every ACK, retry with backoff until ACKed; position persisted after the ACKs."""

    in_flight = 0

    def __init__(self, sender: Sender, state: ProducerState, store: StateStore, *,
                 retry_backoff_s: float, no_retry: bool = False) -> None:
        self.sender, self.state, self.store = sender, state, store
        self.retry_backoff_s = retry_backoff_s
        self.no_retry = no_retry

    async def start(self) -> None:
        """Nothing to set up: no producer id."""

    def _request(self, pb: PartitionBatch) -> broker_pb2.ProduceRequest:
        return pb.request()

    def _partition_batches(self, batch: int, groups: dict[int, list[Order]]) -> list[PartitionBatch]:
        return [PartitionBatch(batch, p, orders) for p, orders in sorted(groups.items())]

    async def send_batch(self, batch: int, groups: dict[int, list[Order]], end: int) -> None:
        pbs = self._partition_batches(batch, groups)
        await self._deliver_all(pbs)
        self._after_ack(pbs)
        if FAILPOINTS.armed:          # ACKed, not yet persisted: a crash re-sends the batch
            await FAILPOINTS.hit("producer.after-ack-before-persist")
        self.state.position, self.state.batch = end, batch + 1
        self.store.save(self.state)   # AFTER every partition's ACK

    sequential = False
    """Deliver a batch's partitions one after another (``--sequential-sends``): which
    send a broker crash catches in flight is then the same in every run."""

    async def _deliver_all(self, pbs: list[PartitionBatch]) -> None:
        """Deliver every partition's batch concurrently (one after another when
        ``sequential``); the first fatal error cancels the rest."""
        if self.sequential:
            self.in_flight = 1
            try:
                for pb in pbs:
                    await self._deliver(pb)
            finally:
                self.in_flight = 0
            return
        self.in_flight = len(pbs)
        try:
            async with asyncio.TaskGroup() as tg:
                for pb in pbs:
                    tg.create_task(self._deliver(pb))
        except* (ProducerFenced, SequenceGap) as eg:
            raise eg.exceptions[0] from None
        finally:
            self.in_flight = 0

    def _after_ack(self, pbs: list[PartitionBatch]) -> None:
        """Hook: the idempotent producer advances its sequence numbers here."""

    async def _deliver(self, pb: PartitionBatch) -> None:
        request = self._request(pb)   # built once: a retry re-sends the very same records
        attempt = 1
        while True:
            out = await self.sender.attempt(pb, request, attempt)
            if out.type == "ok":
                pb.appended = len(pb.orders)
                return
            if is_fenced(out.code, request.producer_id):
                raise ProducerFenced(f"refused by the broker: {out.details} (producer id "
                                     f"{request.producer_id}, epoch {request.producer_epoch})")
            if out.code == grpc.StatusCode.OUT_OF_RANGE and request.producer_id >= 0:
                raise SequenceGap(pb.partition, out.details)
            if out.type == "fail" and is_permanent(out.code):
                await self._refused(pb, out)
                return
            if self.no_retry:
                self.sender.counters.given_up += 1
                log.warning("batch given up (--no-retry)", extra={
                    "batch": pb.batch, "partition": pb.partition, "outcome": out.type,
                    "error": f"{out.code.name if out.code else 'UNKNOWN'}: {out.details}"})
                return
            log.info("retrying batch", extra={"batch": pb.batch, "partition": pb.partition,
                                              "attempt": attempt + 1, "outcome": out.type,
                                              "details": out.details})
            await asyncio.sleep(backoff_s(int(self.retry_backoff_s * 1000), attempt))
            attempt += 1

    async def _refused(self, pb: PartitionBatch, out) -> None:
        """A permanent refusal: split the batch until the refused order is alone (module doc)."""
        if len(pb.orders) == 1:
            self.sender.counters.refused_orders += 1
            pb.appended = 0
            log.error("order refused by the broker, given up", extra={
                "batch": pb.batch, "partition": pb.partition, "order_id": pb.orders[0].order_id[:64],
                "order_id_chars": len(pb.orders[0].order_id),
                "error": f"{out.code.name}: {out.details[:200]}"})
            return
        mid = len(pb.orders) // 2
        first = PartitionBatch(pb.batch, pb.partition, pb.orders[:mid], pb.base_sequence)
        await self._deliver(first)
        second = PartitionBatch(pb.batch, pb.partition, pb.orders[mid:],
                                None if pb.base_sequence is None else pb.base_sequence + first.appended)
        await self._deliver(second)
        pb.appended = first.appended + second.appended

    async def drain(self) -> None:
        """Nothing in flight between batches."""


class ExactlyOnce(AtLeastOnce):
    """The idempotent producer: producer id, epoch and per-partition sequence numbers."""

    def __init__(self, sender: Sender, state: ProducerState, store: StateStore, *,
                 retry_backoff_s: float, no_retry: bool = False, init_producer=None) -> None:
        super().__init__(sender, state, store, retry_backoff_s=retry_backoff_s, no_retry=no_retry)
        self._init_producer = init_producer

    async def start(self) -> dict[int, int]:
        """InitProducer with the persisted producer id (-1 the first time); persist id and epoch.

        Returns the broker's next expected sequence per partition.

        The persisted sequences are kept: the batch that was in flight at a crash is
        re-sent with its original sequences and the broker answers it as a duplicate.
        """
        pid = -1 if self.state.producer_id is None else self.state.producer_id
        resp = await self._init_producer(broker_pb2.InitProducerRequest(producer_id=pid))
        broker_next = {po.partition: po.offset for po in resp.next_sequences}
        if pid != -1 and resp.producer_id != pid:
            log.warning("broker gave a new producer id; sequences restart at 0",
                        extra={"old": pid, "new": resp.producer_id})
            self.state.next_sequences = {}
        self.state.producer_id, self.state.epoch = resp.producer_id, resp.producer_epoch
        for p, s in sorted(broker_next.items()):
            mine = self.state.next_sequences.get(p, 0)
            if s != mine:
                log.info("broker's next sequence differs from the persisted one", extra={
                    "partition": p, "broker": s, "persisted": mine})
        self.store.save(self.state)
        log.info("producer id", extra={"producer_id": resp.producer_id,
                                       "epoch": resp.producer_epoch})
        return broker_next

    def _partition_batches(self, batch: int, groups: dict[int, list[Order]]) -> list[PartitionBatch]:
        return [PartitionBatch(batch, p, orders, self.state.next_sequences.get(p, 0))
                for p, orders in sorted(groups.items())]

    async def _deliver_all(self, pbs: list[PartitionBatch]) -> None:
        """As at-least-once; on a sequence gap, re-initialise and rebase (Kafka's KIP-360).

        A gap means the broker lost acknowledged records (the checker reports them as
        lost-acknowledged). InitProducer bumps the epoch and returns the broker's next
        sequence per partition; a partition batch whose base_sequence is ahead of it is
        rebased there (nothing at or after it is in the log, so this cannot duplicate);
        the others keep theirs and are answered as duplicates if already appended.
        """
        while True:
            try:
                return await super()._deliver_all(pbs)
            except SequenceGap as gap:
                log.error("sequence gap: the broker lost acknowledged records; re-initialising",
                          extra={"partition": gap.partition, "details": str(gap)})
                broker_next = await self.start()
                for pb in pbs:
                    nxt = broker_next.get(pb.partition, 0)
                    if pb.base_sequence > nxt:
                        log.error("rebasing partition batch", extra={
                            "batch": pb.batch, "partition": pb.partition,
                            "from": pb.base_sequence, "to": nxt})
                        pb.base_sequence = nxt

    def _request(self, pb: PartitionBatch) -> broker_pb2.ProduceRequest:
        return pb.request(self.state.producer_id, self.state.epoch)

    def _after_ack(self, pbs: list[PartitionBatch]) -> None:
        for pb in pbs:
            used = len(pb.orders) if pb.appended is None else pb.appended
            self.state.next_sequences[pb.partition] = pb.base_sequence + used


def make_strategy(mode: str, sender: Sender, state: ProducerState, store: StateStore, *,
                  retry_backoff_s: float, no_retry: bool, max_in_flight: int = 64,
                  init_producer=None):
    """The send strategy of ``mode`` (nodes.common.modes).

    Raises:
        ValueError: unknown mode.
    """
    if mode == AT_MOST_ONCE:
        return AtMostOnce(sender, state, store, max_in_flight)
    if mode == AT_LEAST_ONCE:
        return AtLeastOnce(sender, state, store, retry_backoff_s=retry_backoff_s, no_retry=no_retry)
    if mode == EXACTLY_ONCE:
        return ExactlyOnce(sender, state, store, retry_backoff_s=retry_backoff_s, no_retry=no_retry,
                           init_producer=init_producer)
    raise ValueError(f"unknown mode {mode!r}")
