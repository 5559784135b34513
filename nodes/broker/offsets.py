"""Committed consumer offsets per (group, topic): Kafka's __consumer_offsets, as one JSON file.

``<data-dir>/consumer-offsets.json`` = ``{group: {topic: {partition: next offset}}}``,
replaced atomically (atomic_write_json: temp file, fsync, rename, fsync dir)
before a commit is answered.

Committed offsets only move forward (``monotonic=True``, the default): per
(group, topic, partition) the committed offset is the highest ever committed,
so a commit that arrives late or out of order (shared/incidents-2.md #9: the
commit of 500 that reaches the broker after the commit of 800) cannot set it
back and make a restarted consumer re-read what it already processed. Such a
partition is left unchanged and reported back (``kept``); the request's other
partitions are committed. Kafka guards commits with the group generation /
member epoch (a stale one is refused: ILLEGAL_GENERATION, KIP-848's
STALE_MEMBER_EPOCH); with one consumer per group here, "never backwards" is
the rule that covers a late request from the same consumer. No processor path
needs a backward commit: at-most-once / at-least-once restart from the
committed offset and only move forward from it; exactly-once restarts from
its own checkpoint's offsets (never above the committed ones, which are
committed after the checkpoint) and its commit is informational. Rewinding a
group is therefore not possible through CommitOffset (Kafka does it with an
admin reset on an inactive group). ``monotonic=False`` is the
``offset-commit-monotonic`` ablation: the last commit wins.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from nodes.common.durable import atomic_write_json, read_json

OFFSETS_FILE = "consumer-offsets.json"


class ConsumerOffsets:
    """Committed offsets; ``fsync=False`` only with the --no-fsync ablation,
    ``monotonic=False`` only with --no-monotonic-commits."""

    def __init__(self, data_dir: Path, *, fsync: bool = True, monotonic: bool = True) -> None:
        self.path = Path(data_dir) / OFFSETS_FILE
        self.fsync = fsync
        self.monotonic = monotonic
        self.kept = 0
        """Partition commits refused because they were below the committed offset."""
        self._offsets: dict = read_json(self.path, {}) or {}
        self._lock = asyncio.Lock()
        self.commits = 0

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> dict[int, int]:
        """Merge ``offsets`` ({partition: next offset to consume}) and persist them.

        Returns:
            {partition: committed offset kept} for the partitions whose requested
            offset was below the committed one (left unchanged); {} when every
            offset was committed (always {} with ``monotonic=False``).

        Raises:
            OSError: the file could not be written; the in-memory state is unchanged.
        """
        async with self._lock:
            new = copy.deepcopy(self._offsets)
            t = new.setdefault(group, {}).setdefault(topic, {})
            kept: dict[int, int] = {}
            for p, off in offsets.items():
                current = t.get(str(p))
                if self.monotonic and current is not None and off < current:
                    kept[p] = current
                    continue
                t[str(p)] = off
            if len(kept) < len(offsets):
                await asyncio.to_thread(atomic_write_json, self.path, new, fsync=self.fsync)
                self._offsets = new
            self.commits += 1
            self.kept += len(kept)
            return kept

    def groups(self, topic: str) -> dict[str, dict[int, int]]:
        """{group: {partition: committed offset}} of every group that committed on ``topic``."""
        return {g: self.fetch(g, topic) for g in self._offsets if topic in self._offsets[g]}

    def fetch(self, group: str, topic: str) -> dict[int, int]:
        """{partition: committed offset}; partitions never committed are absent."""
        return {int(p): o for p, o in self._offsets.get(group, {}).get(topic, {}).items()}
