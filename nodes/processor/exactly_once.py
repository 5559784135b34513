"""Exactly-once processing: periodic checkpoints plus an idempotent or transactional sink.

A checkpoint (Flink's asynchronous barrier snapshot, reduced to one operator)
is taken between two records, every ``--checkpoint-records`` records or
``--checkpoint-ms`` ms (also when idle, if anything changed). It holds
{checkpoint id, input offsets, operator state, pending transaction id} and is
written atomically (checkpoint.py). After it completes, its offsets are also
committed to the broker (informational, one attempt, as Flink does).

Recovery restores the last checkpoint and replays from ITS offsets; with no
checkpoint yet it starts from the group's committed offsets (Flink's default
start position), fetched with retry.

Sink strategies:

- ``idempotent``: Upsert keyed by order id, pipelined (``--sink-inflight``
  concurrent RPCs), each retried until ACKed. A checkpoint completes only
  after every write in flight is ACKed (scenario 4); ablation
  ``--no-drain-before-checkpoint`` skips that wait.
- ``transactional`` (Flink's TwoPhaseCommitSinkFunction): the orders since the
  last checkpoint are buffered; at the checkpoint PreCommit(txn, orders)
  (retried with the same id), then persist the checkpoint with
  pending_transaction = txn, then Commit(txn) (retried). Ids are
  ``{group}-i{incarnation}-c{checkpoint id}``. Recovery re-commits the restored
  pending transaction (already_committed is fine, scenario 6; NOT_FOUND /
  FAILED_PRECONDITION raises TransactionLostError: the node exits 1 and does
  not advance, scenario 5), aborts every other prepared transaction of the
  group, then replays. Ablation ``--twopc-order``: ``commit-before-checkpoint``
  (a crash between Commit and the write replays a committed batch under a new
  id: duplicates) and ``checkpoint-before-precommit`` (a crash between the
  write and PreCommit loses the batch; recovery then skips the unknown txn).

Ablation ``--no-checkpoint``: no checkpoint and no persisted state; offsets
are committed to the broker after each batch's sink ACK (idempotent), or each
fetched batch is its own transaction committed right away (transactional).
"""

from __future__ import annotations

import asyncio

from nodes.common.failpoints import FAILPOINTS
from nodes.common.modes import SINK_TRANSACTIONAL
from nodes.pb.events_pb2 import Order
from nodes.processor.checkpoint import Checkpoint
from nodes.processor.delivery import chunks
from nodes.processor.processor import (TWOPC_CHECKPOINT_BEFORE_PRECOMMIT, TWOPC_COMMIT_BEFORE_CHECKPOINT)
from nodes.processor.sinks import TransactionLostError, WritePipeline


def make_exactly_once(p):
    """The strategy object for ``p.config`` (sink strategy x --no-checkpoint)."""
    tx = p.config.sink_strategy == SINK_TRANSACTIONAL
    if getattr(p, "member", None) is not None:   # a consumer-group member: checkpoints in the sink
        from nodes.processor.group_exactly_once import GroupCheckpointing
        return GroupCheckpointing(p)
    if p.config.no_checkpoint:
        return UncheckpointedTransactional(p) if tx else UncheckpointedIdempotent(p)
    return TransactionalCheckpointing(p) if tx else IdempotentCheckpointing(p)


def txn_prefix(group: str) -> str:
    """Prefix of every transaction id of ``group`` (``{group}-i``)."""
    return f"{group}-i"


async def abort_stale_prepared(p, keep: str | None) -> list[str]:
    """ListPrepared, then Abort each prepared transaction of this group except ``keep``."""
    aborted = []
    for txn in await p.sink.list_prepared():
        if txn.startswith(txn_prefix(p.config.group)) and txn != keep:
            await p.sink.abort(txn)
            aborted.append(txn)
    if aborted:
        p.log.info("aborted stale prepared transactions", extra={"transactions": aborted})
    return aborted


async def _hit(name: str) -> None:
    """A failpoint of the checkpoint / two-phase-commit path (free when nothing is armed)."""
    if FAILPOINTS.armed:
        await FAILPOINTS.hit(name)


class _Checkpointing:
    """Record loop with checkpoint barriers; subclasses say how orders reach the sink."""

    def __init__(self, p) -> None:
        self.p = p
        self.loop = asyncio.get_running_loop()
        self.since = 0          # records since the last completed checkpoint
        self.dirty = False      # positions moved since the last completed checkpoint
        self.last_time = self.loop.time()
        self.next_id = 1

    async def start(self) -> None:
        p = self.p
        n = await p.consumer.partition_count()
        ck = p.restored
        if ck is None:
            offsets = await p.consumer.committed_offsets(n)
        else:
            offsets = {q: 0 for q in range(n)}
            offsets.update(ck.offsets)
            self.next_id = ck.checkpoint_id + 1
        p.consumer.positions.update(offsets)
        p.durable_positions = dict(offsets)
        p.log.info("replaying", extra={"offsets": offsets,
                                       "checkpoint_id": ck.checkpoint_id if ck else None})
        self.last_time = self.loop.time()

    def _ms_until_due(self) -> float:
        return self.p.config.checkpoint_ms - (self.loop.time() - self.last_time) * 1000.0

    async def step(self) -> None:
        p, cfg = self.p, self.p.config
        wait = cfg.fetch_max_wait_ms
        if self.dirty:
            wait = int(max(0.0, min(wait, self._ms_until_due())))
        fetched = await p.consumer.fetch(wait)
        i = 0
        while i < len(fetched):
            # Records up to the next checkpoint boundary are folded in one process_batch
            # (issue 16), then added; the checkpoint comes after the same record as before.
            seg = fetched[i:i + max(1, cfg.checkpoint_records - self.since)]
            i += len(seg)
            orders = p.process_batch(seg)
            self.since += len(seg)
            self.dirty = True
            for order in orders:
                await self.add(order)
            if self.since >= cfg.checkpoint_records:
                await self.checkpoint()
        await self.end_of_batch()
        if self.dirty and self._ms_until_due() <= 0:
            await self.checkpoint()

    async def add(self, order: Order) -> None:
        raise NotImplementedError

    async def end_of_batch(self) -> None:
        pass

    async def checkpoint(self) -> None:
        raise NotImplementedError

    def snapshot(self, pending: str | None) -> Checkpoint:
        return Checkpoint(self.next_id, dict(self.p.positions), self.p.state.snapshot(), pending)

    async def completed(self, ck: Checkpoint) -> None:
        """Bookkeeping after checkpoint ``ck`` completed; then the informational CommitOffset."""
        p = self.p
        p.checkpoints += 1
        p.last_checkpoint_id = ck.checkpoint_id
        p.durable_positions = dict(ck.offsets)
        self.next_id = ck.checkpoint_id + 1
        self.since, self.dirty, self.last_time = 0, False, self.loop.time()
        p.log.info("checkpoint completed", extra={"checkpoint_id": ck.checkpoint_id,
                                                  "offsets": ck.offsets,
                                                  "pending_transaction": ck.pending_transaction})
        p.notify()
        await p.consumer.commit(ck.offsets, retry=False)

    def close(self) -> None:
        pass


class IdempotentCheckpointing(_Checkpointing):
    """Upserts pipelined between checkpoints; a checkpoint drains them first."""

    def __init__(self, p) -> None:
        super().__init__(p)
        self.pipeline = WritePipeline(p.sink, "Upsert", inflight=p.config.sink_inflight,
                                      retry=not p.config.no_sink_retry)
        self.buffer: list[Order] = []

    async def add(self, order: Order) -> None:
        self.buffer.append(order)
        if len(self.buffer) >= self.p.config.sink_batch:
            await self.end_of_batch()

    async def end_of_batch(self) -> None:
        if self.buffer:
            batch, self.buffer = self.buffer, []
            await self.pipeline.submit(batch)

    async def checkpoint(self) -> None:
        if FAILPOINTS.armed:
            await FAILPOINTS.hit("processor.before-checkpoint")
        await self.end_of_batch()
        if not self.p.config.no_drain_before_checkpoint:
            await self.pipeline.drain()
        await self.p.flush_dead_letters()
        ck = self.snapshot(None)
        self.p.store.save(ck)
        if FAILPOINTS.armed and self.pipeline.in_flight:
            await FAILPOINTS.hit("processor.after-checkpoint-writes-outstanding")
        await self.completed(ck)

    def close(self) -> None:
        self.pipeline.cancel()


class TransactionalCheckpointing(_Checkpointing):
    """Two-phase commit of the orders between two checkpoints."""

    def __init__(self, p) -> None:
        super().__init__(p)
        self.buffer: list[Order] = []

    async def start(self) -> None:
        p = self.p
        ck = p.restored
        pending = ck.pending_transaction if ck else None
        if pending:
            try:
                resp = await p.sink.commit(pending)
                p.log.info("re-committed the restored pending transaction",
                           extra={"transaction": pending, "already_committed": resp.already_committed})
            except TransactionLostError as e:
                if p.config.twopc_order != TWOPC_CHECKPOINT_BEFORE_PRECOMMIT:
                    p.log.error("recovery failed: %s; not advancing", e)
                    raise
                p.log.warning("ablation checkpoint-before-precommit: skipping lost transaction %s", pending)
            p.pending_transaction = None
        await abort_stale_prepared(p, keep=pending)
        await super().start()

    async def add(self, order: Order) -> None:
        self.buffer.append(order)

    async def checkpoint(self) -> None:
        p = self.p
        if FAILPOINTS.armed:
            await FAILPOINTS.hit("processor.before-checkpoint")
        await p.flush_dead_letters()
        orders, self.buffer = self.buffer, []
        txn = f"{p.config.group}-i{p.incarnation}-c{self.next_id}" if orders else None
        ck = self.snapshot(txn)
        order = p.config.twopc_order
        if txn is None:
            p.store.save(ck)
        elif order == TWOPC_COMMIT_BEFORE_CHECKPOINT:
            await p.sink.precommit(txn, orders)
            await _hit("processor.after-precommit-before-checkpoint")
            await p.sink.commit(txn)
            await _hit("processor.after-sink-commit")
            p.store.save(ck)
        else:
            if order == TWOPC_CHECKPOINT_BEFORE_PRECOMMIT:
                p.store.save(ck)
                p.pending_transaction = txn
                await _hit("processor.after-checkpoint-before-commit")
                await p.sink.precommit(txn, orders)
            else:
                await p.sink.precommit(txn, orders)
                await _hit("processor.after-precommit-before-checkpoint")
                p.store.save(ck)
                p.pending_transaction = txn
                await _hit("processor.after-checkpoint-before-commit")
            p.notify()
            await p.sink.commit(txn)
            await _hit("processor.after-sink-commit")
        p.pending_transaction = None
        await self.completed(ck)


class UncheckpointedIdempotent:
    """Ablation --no-checkpoint, idempotent: Upsert each batch, then commit its offsets."""

    def __init__(self, p) -> None:
        self.p = p
        self.pipeline = WritePipeline(p.sink, "Upsert", inflight=p.config.sink_inflight,
                                      retry=not p.config.no_sink_retry)

    async def start(self) -> None:
        await self.p.init_positions()

    async def step(self) -> None:
        p = self.p
        fetched = await p.consumer.fetch()
        if not fetched:
            return
        orders = p.process_batch(fetched)
        for batch in chunks(orders, p.config.sink_batch):
            await self.pipeline.submit(batch)
        await self.pipeline.drain()
        await p.flush_dead_letters()
        offsets = dict(p.positions)
        await p.consumer.commit(offsets)
        p.durable_positions = offsets

    def close(self) -> None:
        self.pipeline.cancel()


class UncheckpointedTransactional:
    """Ablation --no-checkpoint, transactional: each fetched batch is one transaction,
    committed right away, then its offsets are committed to the broker."""

    def __init__(self, p) -> None:
        self.p = p
        self.batches = 0

    async def start(self) -> None:
        await abort_stale_prepared(self.p, keep=None)
        await self.p.init_positions()

    async def step(self) -> None:
        p = self.p
        fetched = await p.consumer.fetch()
        if not fetched:
            return
        orders = p.process_batch(fetched)
        if orders:
            self.batches += 1
            txn = f"{p.config.group}-i{p.incarnation}-b{self.batches}"
            await p.sink.precommit(txn, orders)
            p.pending_transaction = txn
            await p.sink.commit(txn)
            p.pending_transaction = None
        await p.flush_dead_letters()
        offsets = dict(p.positions)
        await p.consumer.commit(offsets)
        p.durable_positions = offsets
