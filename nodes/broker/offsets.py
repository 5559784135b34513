"""Committed consumer offsets per (group, topic): Kafka's __consumer_offsets, as one JSON file.

``<data-dir>/consumer-offsets.json`` = ``{group: {topic: {partition: next offset}}}``,
replaced atomically (atomic_write_json: temp file, fsync, rename, fsync dir)
before a commit is answered.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from nodes.common.durable import atomic_write_json, read_json

OFFSETS_FILE = "consumer-offsets.json"


class ConsumerOffsets:
    """Committed offsets; ``fsync=False`` only with the --no-fsync ablation."""

    def __init__(self, data_dir: Path, *, fsync: bool = True) -> None:
        self.path = Path(data_dir) / OFFSETS_FILE
        self.fsync = fsync
        self._offsets: dict = read_json(self.path, {}) or {}
        self._lock = asyncio.Lock()
        self.commits = 0

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Merge ``offsets`` ({partition: next offset to consume}) and persist them.

        Raises:
            OSError: the file could not be written; the in-memory state is unchanged.
        """
        async with self._lock:
            new = copy.deepcopy(self._offsets)
            t = new.setdefault(group, {}).setdefault(topic, {})
            for p, off in offsets.items():
                t[str(p)] = off
            await asyncio.to_thread(atomic_write_json, self.path, new, fsync=self.fsync)
            self._offsets = new
            self.commits += 1

    def groups(self, topic: str) -> dict[str, dict[int, int]]:
        """{group: {partition: committed offset}} of every group that committed on ``topic``."""
        return {g: self.fetch(g, topic) for g in self._offsets if topic in self._offsets[g]}

    def fetch(self, group: str, topic: str) -> dict[int, int]:
        """{partition: committed offset}; partitions never committed are absent."""
        return {int(p): o for p, o in self._offsets.get(group, {}).get(topic, {}).items()}
