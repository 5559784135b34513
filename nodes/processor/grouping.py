"""Record-count fetch groups: what one processing step covers, decided by counts, not timing.

Without it, a step of the at-most-once / at-least-once loop processes whatever
one long-poll Fetch returned: how many records, from which partitions, depends
on how far the producer got when the poll answered. A crash at the Nth step
(a failpoint's Nth hit) then costs a different number of records in every run.
With ``--fetch-group K`` a step is the next K records of ONE partition, the
partitions in round robin (0, 1, 2, 3, 0, ...): step N covers the same records
in every run of a seed, counted from the committed offsets. This is the
determinism FoundationDB's simulator gets by construction, applied to the one
place of the processor where timing decided.

A group is cut short only when its partition got no record for
``idle_flush_ms`` (the producer stopped, paused, or finished): then every
partition's buffered records are handed over at once. That tail is still timing.
"""

from __future__ import annotations

import time

from nodes.pb import broker_pb2


class FetchGrouper:
    """Buffers fetched records per partition and hands out K-record groups.

    Args:
        consumer: nodes.processor.consumer.Consumer (its ``positions`` are the next
            offsets to process; this class fetches past them into its buffers).
        k: records per group (> 0).
        idle_flush_ms: cut the groups short after this long without a new record
            for the partition whose turn it is.
    """

    def __init__(self, consumer, k: int, idle_flush_ms: int = 2000) -> None:
        self.c, self.k, self.idle_s = consumer, k, idle_flush_ms / 1000.0
        self.buf: dict[int, list[broker_pb2.Record]] = {}
        self.turn = 0

    def _fetch_from(self) -> dict[int, int]:
        return {p: (self.buf[p][-1].offset + 1 if self.buf.get(p) else pos) for p, pos in self.c.positions.items()}

    async def _fill(self) -> int:
        """One long-poll Fetch past the buffers; returns how many new records arrived."""
        saved = dict(self.c.positions)
        self.c.positions.update(self._fetch_from())
        try:
            got = await self.c.fetch()
        finally:
            self.c.positions.clear()
            self.c.positions.update(saved)
        for part, rec in got:
            self.buf.setdefault(part, []).append(rec)
        return len(got)

    def _drop_consumed(self) -> None:
        """A restart or a rewind moved positions: forget buffered records before them."""
        for p, recs in self.buf.items():
            pos = self.c.positions.get(p, 0)
            if recs and (recs[0].offset != pos):
                self.buf[p] = [r for r in recs if r.offset >= pos] if recs[0].offset < pos else []

    async def next_group(self) -> list[tuple[int, broker_pb2.Record]]:
        """The next group: K records of the partition whose turn it is, or (after
        ``idle_flush_ms`` without progress) every buffered record; [] if none."""
        parts = sorted(self.c.positions)
        if not parts:
            return await self.c.fetch()
        self._drop_consumed()
        p = parts[self.turn % len(parts)]
        idle_since = time.monotonic()
        while len(self.buf.get(p, [])) < self.k:
            before = len(self.buf.get(p, []))
            await self._fill()
            if len(self.buf.get(p, [])) > before:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.idle_s:
                return [(q, r) for q in parts for r in self.buf.pop(q, [])]
        group, self.buf[p] = self.buf[p][:self.k], self.buf[p][self.k:]
        self.turn += 1
        return [(p, r) for r in group]
