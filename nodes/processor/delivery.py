"""At-most-once and at-least-once processing (shared/DESIGN.md's table).

Both start from the group's committed offsets (FetchCommittedOffset, retried;
an absent partition starts at 0) and write with ``Apply`` (non-idempotent
increments). They differ only in *when* the offsets are committed:

- at-most-once: CommitOffset(next offsets) BEFORE processing a fetched batch,
  then Apply once, no retry: a crash after the commit loses the batch, a
  failed write is dropped; nothing is ever applied twice.
- at-least-once: Apply with retry until ACKed, THEN CommitOffset (retried):
  a crash before the commit replays the batch, and a lost ACK shows as a
  duplicate; nothing is lost. Ablations: ``--commit-before-sink`` (commit
  first, as at-most-once does: loss on crash, scenario 7) and
  ``--no-sink-retry`` (a failed write is dropped).

``durable_positions`` is the last committed offset, reported once the batch's
writes were attempted (so "drained" also means "no write still to come").
"""

from __future__ import annotations

from typing import Sequence

from nodes.common.failpoints import FAILPOINTS
from nodes.processor.grouping import FetchGrouper
from nodes.pb.events_pb2 import Order


def chunks(orders: Sequence[Order], size: int) -> list[list[Order]]:
    """Split ``orders`` into lists of at most ``size``."""
    return [list(orders[i:i + size]) for i in range(0, len(orders), size)]


class _Delivery:
    commit_first = False
    retry_writes = True

    def __init__(self, p) -> None:
        self.p = p
        self.grouper = FetchGrouper(p.consumer, p.config.fetch_group) if p.config.fetch_group else None

    async def start(self) -> None:
        await self.p.init_positions()

    async def step(self) -> None:
        p = self.p
        fetched = await (self.grouper.next_group() if self.grouper else p.consumer.fetch())
        if not fetched:
            return
        if FAILPOINTS.armed:
            await FAILPOINTS.hit("processor.after-fetch-before-sink")
            if p.member is not None:
                await FAILPOINTS.hit("processor.member-before-output")
        next_offsets = dict(p.positions)
        for part, rec in fetched:
            next_offsets[part] = rec.offset + 1
        if self.commit_first:
            await self._commit(next_offsets)
            if FAILPOINTS.armed:
                await FAILPOINTS.hit("processor.after-offset-commit-before-sink")
        orders = p.process_batch(fetched)
        for batch in chunks(orders, p.config.sink_batch):
            await p.sink.write("Apply", batch, retry=self.retry_writes)
        await p.flush_dead_letters()
        if not self.commit_first:
            if FAILPOINTS.armed:
                await FAILPOINTS.hit("processor.after-sink-ack-before-offset-commit")
            await self._commit(next_offsets)
        # Reported only now, also when committed first: once these positions show, every
        # write of the batch was attempted (the harness waits for them to audit).
        p.durable_positions = next_offsets

    async def _commit(self, offsets: dict[int, int]) -> None:
        await self.p.consumer.commit(offsets, retry=True)


class AtMostOnce(_Delivery):
    """Commit offsets before processing; Apply without retry."""

    commit_first = True
    retry_writes = False


class AtLeastOnce(_Delivery):
    """Apply with retry until ACKed, then commit offsets (unless ablated)."""

    def __init__(self, p) -> None:
        super().__init__(p)
        self.commit_first = p.config.commit_before_sink
        self.retry_writes = not p.config.no_sink_retry
