"""Exactly-once for one consumer-group member: per-partition checkpoints kept in the sink, fenced.

With several processors a partition moves from member to member, so its checkpoint
cannot live in one member's data dir. Each partition's checkpoint {offset, operator
state of the partition's accounts, checkpoint id} is stored in the sink
(nodes/sink/partitions.py), the shared durable store the next owner restores from,
under the owner epoch = the group generation that assigned it:

- start (each new generation): ``Fence(partitions, generation)`` claims the partitions
  (a zombie's later pre-commit, commit or checkpoint save is refused: FENCED), aborts
  the prepared transactions older owners left, and returns the checkpoints; positions
  and operator state are restored from them (no checkpoint yet: offset 0, empty state).
- transactional (Kafka's KIP-447: the consumed offsets commit with the output): at a
  checkpoint the orders since the last one and the new partition checkpoints are
  pre-committed in ONE transaction, then committed; the checkpoint is durable exactly
  when the orders are applied, so no pending transaction is ever carried over.
- idempotent: Upserts pipelined (keyed by order id: a zombie's late upsert changes
  nothing); at a checkpoint they are drained, then ``SaveCheckpoints`` (fenced).
- revoke (a rebalance): a last checkpoint of what the member owns, then it rejoins.

After a checkpoint completes its offsets are also committed to the broker with the
member's generation (informational, one attempt, as the single processor does).
Transaction ids: ``{group}-{client id}-i{incarnation}-j{join}-c{checkpoint id}``,
unique per data dir. Not supported with the ``--no-checkpoint`` ablation.
"""

from __future__ import annotations

from nodes.common.failpoints import FAILPOINTS
from nodes.common.modes import SINK_TRANSACTIONAL
from nodes.common.partitioning import partition_for
from nodes.pb import sink_pb2
from nodes.pb.events_pb2 import Order
from nodes.processor.checkpoint import Checkpoint
from nodes.processor.exactly_once import _Checkpointing
from nodes.processor.sinks import WritePipeline


async def _hit(name: str) -> None:
    if FAILPOINTS.armed:
        await FAILPOINTS.hit(name)


class GroupCheckpointing(_Checkpointing):
    """The exactly-once strategy of a group member (both sink strategies)."""

    def __init__(self, p) -> None:
        super().__init__(p)
        self.tx = p.config.sink_strategy == SINK_TRANSACTIONAL
        self.pipeline = None if self.tx else WritePipeline(
            p.sink, "Upsert", inflight=p.config.sink_inflight, retry=not p.config.no_sink_retry)
        self.buffer: list[Order] = []
        self.partitions = 0

    async def start(self) -> None:
        p = self.p
        self.partitions = await p.consumer.partition_count()
        mine = list(p.member.partitions)
        resp = await p.sink.fence(mine)
        offsets = {q: 0 for q in mine}
        state: dict[str, int] = {}
        for ck in resp.checkpoints:
            offsets[ck.partition] = ck.offset
            state.update(ck.state)
            self.next_id = max(self.next_id, ck.checkpoint_id + 1)
        p.state.restore(state)
        p.consumer.positions.update(offsets)
        p.durable_positions = dict(offsets)
        p.log.info("partitions restored from the sink", extra={
            "generation": p.member.generation, "offsets": offsets, "aborted": list(resp.aborted),
            "from": {ck.partition: f"{ck.member_id}@{ck.epoch}" for ck in resp.checkpoints}})
        self.last_time = self.loop.time()

    async def add(self, order: Order) -> None:
        self.buffer.append(order)
        if not self.tx and len(self.buffer) >= self.p.config.sink_batch:
            await self.end_of_batch()

    async def end_of_batch(self) -> None:
        if not self.tx and self.buffer:
            batch, self.buffer = self.buffer, []
            await self.pipeline.submit(batch)

    def partition_checkpoints(self) -> list[sink_pb2.PartitionCheckpoint]:
        p, n = self.p, self.partitions
        snap = p.state.snapshot()
        return [sink_pb2.PartitionCheckpoint(
            partition=q, offset=p.positions.get(q, 0), checkpoint_id=self.next_id,
            state={a: c for a, c in snap.items() if partition_for(a, n) == q})
            for q in p.member.partitions]

    async def checkpoint(self) -> None:
        p = self.p
        await _hit("processor.before-checkpoint")
        await _hit("processor.member-before-output")
        if not self.tx:
            await self.end_of_batch()
            await self.pipeline.drain()
        await p.flush_dead_letters()
        cks = self.partition_checkpoints()
        orders, self.buffer = (self.buffer, []) if self.tx else ([], self.buffer)
        if orders:
            m = p.member
            txn = f"{p.config.group}-{m.client_id}-i{p.incarnation}-j{m.joins}-c{self.next_id}"
            await p.sink.precommit(txn, orders, cks)
            p.pending_transaction = txn
            await _hit("processor.after-precommit-before-checkpoint")
            await p.sink.commit(txn)
            p.pending_transaction = None
        else:
            await p.sink.save_checkpoints(cks)
        await self.completed(Checkpoint(self.next_id, dict(p.positions), p.state.snapshot(), None))

    async def revoke(self) -> None:
        """A rebalance: complete a checkpoint of what this member owns before rejoining."""
        if self.dirty or self.buffer:
            await self.checkpoint()

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.cancel()
