"""The producer's durable state: ``<data-dir>/producer-state.json``, replaced atomically.

    {"workload": {"source": "generated", "seed": 1, "count": 10000, "accounts": 16},
     "position": 4200,          # next workload index to send (the source position)
     "batch": 42,               # number of the next batch (for the history)
     "producer_id": 7,          # idempotent producer only, else null
     "epoch": 3,                # idem
     "next_sequences": {"0": 1050, "1": 998, ...},   # per partition, idem
     "incarnation": 2}          # how many times the producer started

When it is written depends on the mode (shared/DESIGN.md): before the send in
at-most-once, after the ACK of every partition in at-least-once and
exactly-once (Kafka's idempotent producer keeps sequence numbers with the
position, so a resent batch carries the same sequences and is deduplicated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nodes.common.durable import atomic_write_json, read_json

STATE_FILE = "producer-state.json"


class WorkloadMismatch(ValueError):
    """The persisted state belongs to another workload (the node exits 2)."""


@dataclass
class ProducerState:
    """The persisted fields; ``next_sequences`` maps partition -> next sequence number."""

    workload: dict
    position: int = 0
    batch: int = 0
    producer_id: int | None = None
    epoch: int | None = None
    next_sequences: dict[int, int] = field(default_factory=dict)
    incarnation: int = 0

    def to_json(self) -> dict:
        return {"workload": self.workload, "position": self.position, "batch": self.batch,
                "producer_id": self.producer_id, "epoch": self.epoch,
                "next_sequences": {str(p): s for p, s in sorted(self.next_sequences.items())},
                "incarnation": self.incarnation}

    @classmethod
    def from_json(cls, obj: dict) -> "ProducerState":
        return cls(workload=obj["workload"], position=int(obj["position"]), batch=int(obj["batch"]),
                   producer_id=obj.get("producer_id"), epoch=obj.get("epoch"),
                   next_sequences={int(p): int(s) for p, s in obj.get("next_sequences", {}).items()},
                   incarnation=int(obj.get("incarnation", 0)))


class StateStore:
    """Loads and saves :class:`ProducerState` in ``<data-dir>/producer-state.json``.

    Args:
        data_dir: the node's data dir.
        fsync: fsync file and directory on every save (off only for ablations).
    """

    def __init__(self, data_dir: Path, fsync: bool = True) -> None:
        self.path = Path(data_dir) / STATE_FILE
        self.fsync = fsync

    def load(self, workload: dict, total: int) -> ProducerState:
        """The persisted state for ``workload`` (a fresh one if there is none).

        Raises:
            WorkloadMismatch: the file records a different workload identity.
            ValueError: the file is not a valid state (bad JSON, missing field,
                position beyond ``total``).
        """
        obj = read_json(self.path)
        if obj is None:
            return ProducerState(workload=workload)
        try:
            state = ProducerState.from_json(obj)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{self.path}: invalid producer state: {e!r}") from None
        if state.workload != workload:
            raise WorkloadMismatch(
                f"{self.path} belongs to workload {_describe(state.workload)}, not "
                f"{_describe(workload)}; use another --data-dir or the same workload")
        if not 0 <= state.position <= total:
            raise ValueError(f"{self.path}: position {state.position} outside 0..{total}")
        return state

    def save(self, state: ProducerState) -> None:
        """Replace the file atomically (temp file, fsync, rename, fsync dir)."""
        atomic_write_json(self.path, state.to_json(), fsync=self.fsync)


def _describe(workload: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(workload.items()))
