"""The checkpoint store and the incarnation counter, both in the data dir.

A checkpoint (Flink's completed checkpoint, reduced to one operator) is
``{"checkpoint_id": int, "offsets": {"<partition>": next offset}, "state":
{account: cents}, "pending_transaction": str | null}``, stored as
``<data-dir>/checkpoint.json`` with ``nodes.common.durable.atomic_write_json``
(temp file, fsync, rename, fsync dir): after a kill -9 the file is either the
previous checkpoint or the new one. A leftover ``checkpoint.json.tmp`` (a crash
during the write) is never read and is removed on load.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from nodes.common.durable import atomic_write_json, read_json

log = logging.getLogger("processor.checkpoint")

CHECKPOINT_FILE = "checkpoint.json"
INCARNATION_FILE = "incarnation.json"


class CheckpointCorruptError(RuntimeError):
    """``checkpoint.json`` exists but is not a valid checkpoint (the processor refuses to start: exit 2)."""


@dataclass
class Checkpoint:
    """One completed checkpoint.

    Attributes:
        checkpoint_id: 1, 2, ... across incarnations (continues after a restore).
        offsets: next offset to consume per partition.
        state: operator state snapshot, cents per account.
        pending_transaction: the sink transaction pre-committed for this
            checkpoint and maybe not yet committed (transactional strategy), else None.
    """

    checkpoint_id: int
    offsets: dict[int, int]
    state: dict[str, int] = field(default_factory=dict)
    pending_transaction: str | None = None

    def to_json(self) -> dict:
        return {"checkpoint_id": self.checkpoint_id,
                "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
                "state": dict(self.state), "pending_transaction": self.pending_transaction}

    @classmethod
    def from_json(cls, obj: object) -> "Checkpoint":
        """Raises: CheckpointCorruptError: a field is missing or has the wrong type."""
        try:
            if not isinstance(obj, dict):
                raise TypeError("not an object")
            cid = obj["checkpoint_id"]
            pending = obj["pending_transaction"]
            if not isinstance(cid, int) or cid < 0:
                raise TypeError("checkpoint_id")
            if pending is not None and not isinstance(pending, str):
                raise TypeError("pending_transaction")
            offsets = {int(p): int(o) for p, o in obj["offsets"].items()}
            state = {str(a): int(c) for a, c in obj["state"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointCorruptError(f"invalid checkpoint: {type(e).__name__}: {e}") from None
        return cls(cid, offsets, state, pending)


class CheckpointStore:
    """Loads and atomically saves the checkpoint of one processor data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / CHECKPOINT_FILE
        self.tmp = self.path.with_name(self.path.name + ".tmp")

    def load(self) -> Checkpoint | None:
        """The last completed checkpoint, or None if none was ever written.

        Raises:
            CheckpointCorruptError: ``checkpoint.json`` is not valid JSON or not a checkpoint.
        """
        if self.tmp.exists():
            log.warning("ignoring a half-written checkpoint", extra={"file": str(self.tmp)})
            self.tmp.unlink()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise CheckpointCorruptError(f"{self.path} is not valid JSON ({len(raw)} bytes): {e}") from None
        return Checkpoint.from_json(obj)

    def save(self, checkpoint: Checkpoint) -> None:
        """Persist ``checkpoint`` (temp, fsync, rename, fsync dir). Raises OSError."""
        atomic_write_json(self.path, checkpoint.to_json())


def bump_incarnation(data_dir: Path) -> int:
    """Read, increment and durably store the incarnation counter; return the new value (1, 2, ...).

    Transaction ids embed it so that ids are unique across restarts.
    """
    path = Path(data_dir) / INCARNATION_FILE
    obj = read_json(path, {"incarnation": 0})
    n = int(obj.get("incarnation", 0)) + 1
    atomic_write_json(path, {"incarnation": n})
    return n
