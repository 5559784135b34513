"""A JSONL history writer (Jepsen's history: one flat record per operation).

Each line: {"index": n, "time": unix seconds, "process": "nemesis", "type":
"invoke" | "ok" | "fail" | "info", "f": "kill", "value": {...}}. Flushed per
line, so a crash of the harness leaves every completed line readable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


class HistoryWriter:
    """Append operations to ``path``; ``index`` continues an existing file."""

    def __init__(self, path: Path, process: str) -> None:
        self.path = Path(path)
        self.process = process
        self.index = sum(1 for _ in open(self.path, "rb")) if self.path.exists() else 0
        self._f = open(self.path, "a", buffering=1)

    def record(self, type_: str, f: str, value: dict | None = None, **extra) -> dict:
        op = {"index": self.index, "time": round(time.time(), 6), "process": self.process,
              "type": type_, "f": f, "value": value or {}}
        op.update(extra)
        self._f.write(json.dumps(op, default=str) + "\n")
        self.index += 1
        return op

    def close(self) -> None:
        self._f.close()


def read_history(path: Path) -> list[dict]:
    """Every complete line of a history file (a torn last line is skipped)."""
    ops = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    ops.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return ops
