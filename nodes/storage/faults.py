"""The storage faults a lazy filesystem can inject, and their record (``faults.jsonl``).

- ``fsync-error [GLOB]``: the next fsync of a file (whose mount-relative path
  matches GLOB, fnmatch syntax, e.g. ``orders-*/*.log``) fails with EIO, once,
  and that file's unsynced data is dropped. This is PostgreSQL's "fsyncgate"
  (2018): Linux reports the write-back error once and marks the dirty pages
  clean, so a second fsync succeeds although the data never reached the disk.
- ``disk-full N``: after N more bytes of data writes, every write fails with
  ENOSPC until ``disk-full off``.
- ``clear-cache``: every unsynced write is dropped (Jepsen LazyFS's power loss).

Each firing is one JSON line in ``<state-dir>/faults.jsonl``:

    {"time": 1764456000.1, "fault": "fsync-error", "path": "/orders-0/00000000.log",
     "dropped_bytes": 4096}
    {"time": ..., "fault": "disk-full", "path": "/offsets.json.tmp", "requested_bytes": 57}
    {"time": ..., "fault": "clear-cache", "files": 3, "dropped_bytes": 81920, "paths": [...]}
"""

from __future__ import annotations

import fnmatch
import json
import threading
import time
from collections import Counter
from pathlib import Path

FAULTS_FILE = "faults.jsonl"


class FaultState:
    """The armed storage faults of one filesystem, and the count of firings.

    Args:
        state_dir: where ``faults.jsonl`` is appended.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FAULTS_FILE
        self.fsync_error: str | None = None   # armed glob ("*" = any file), None = not armed
        self.disk_budget: int | None = None   # bytes left before ENOSPC, None = not armed
        self.fired: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, fault: str, **fields) -> dict:
        """Count one firing and append it to ``faults.jsonl``."""
        rec = {"time": time.time(), "fault": fault, **fields}
        with self._lock:
            self.fired[fault] += 1
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return rec

    def arm_fsync_error(self, pattern: str | None) -> None:
        self.fsync_error = pattern or "*"

    def take_fsync_error(self, path: str) -> bool:
        """True (and disarm) if the armed fsync error matches ``path``."""
        pat = self.fsync_error
        if pat is None:
            return False
        rel = path.lstrip("/")
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(path, pat):
            self.fsync_error = None
            return True
        return False

    def arm_disk_full(self, after_bytes: int | None) -> None:
        """ENOSPC after ``after_bytes`` more bytes; None lifts it."""
        self.disk_budget = after_bytes

    def charge(self, n: int) -> bool:
        """Take ``n`` bytes from the disk budget; False = the disk is full."""
        if self.disk_budget is None:
            return True
        if n > self.disk_budget:
            self.disk_budget = 0
            return False
        self.disk_budget -= n
        return True


def read_faults(state_dir: Path) -> list[dict]:
    """Every record of ``<state-dir>/faults.jsonl`` ([] if none; a torn last line is skipped)."""
    try:
        data = (Path(state_dir) / FAULTS_FILE).read_bytes()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]
