"""Every consumer group of the broker (created on first join) and their durable generation ids.

Members and assignments live in memory (nodes/broker/group.py); the generation id of each
group is persisted in ``<data-dir>/group-generations.json`` (atomic_write_json: temp, fsync,
rename, fsync dir) at each completed rebalance, before any member learns it, so generations
only grow across broker restarts (the sink's partition owner epochs are generations).
A group restored from a persisted generation delays its first rebalance (KIP-134,
RESTART_REBALANCE_DELAY_MS; nodes/broker/group.py says why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from nodes.broker.group import GENERATIONS_FILE, UNKNOWN_MEMBER_ID, ConsumerGroup, GroupError
from nodes.common.durable import atomic_write_json, read_json

RESTART_REBALANCE_DELAY_MS = 3000
"""Kafka's group.initial.rebalance.delay.ms default (KIP-134), capped per group by the
joining member's session timeout: how long the first rebalance after a broker restart
waits for the group's other members to rejoin."""


class GroupCoordinator:
    """Every consumer group of the broker, created on first join (in memory).

    Args:
        partitions: the topic's partition count.
        fencing: False = ablation ``generation-fencing`` (see ConsumerGroup).
    """

    def __init__(self, partitions: int, *, clock_ms: Callable[[], int] | None = None,
                 fencing: bool = True, data_dir: Path | None = None) -> None:
        self.partitions, self.fencing, self._clock = partitions, fencing, clock_ms
        self.groups: dict[str, ConsumerGroup] = {}
        self.path = Path(data_dir) / GENERATIONS_FILE if data_dir is not None else None
        self.generations: dict[str, int] = {}
        if self.path is not None:
            raw = read_json(self.path, {}) or {}
            self.generations = {str(g): int(n) for g, n in raw.items()} if isinstance(raw, dict) else {}

    def _persist(self, group: str, generation: int) -> None:
        """Record ``group``'s generation durably (temp, fsync, rename) before its members
        learn it. Raises OSError (the join/heartbeat fails: UNAVAILABLE through the servicer)."""
        self.generations[group] = generation
        if self.path is not None:
            atomic_write_json(self.path, dict(sorted(self.generations.items())))

    def group(self, name: str, *, create: bool = True) -> ConsumerGroup | None:
        if name not in self.groups and create:
            self.groups[name] = ConsumerGroup(name, self.partitions, clock_ms=self._clock,
                                              fencing=self.fencing, generation=self.generations.get(name, 0),
                                              on_generation=self._persist,
                                              initial_delay_ms=RESTART_REBALANCE_DELAY_MS
                                              if self.generations.get(name) else 0)
        return self.groups.get(name)

    def check_commit(self, group: str, member_id: str, generation: int, partitions: list[int]) -> None:
        """Raises GroupError (see ConsumerGroup.check_commit); a group never joined accepts
        only standalone commits (no member id, generation 0)."""
        g = self.groups.get(group)
        if g is None:
            if self.fencing and (member_id or generation):
                raise GroupError(UNKNOWN_MEMBER_ID, f"member {member_id!r} (generation {generation}) "
                                 f"is not in group {group!r}: the group has no members (a broker "
                                 "restart forgets groups; join again)")
            return
        g.check_commit(member_id, generation, partitions)

    def status(self) -> dict:
        return {name: g.status() for name, g in sorted(self.groups.items())}
