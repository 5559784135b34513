"""The producer's history: Jepsen's record of every operation, one JSON object per line.

``<data-dir>/history.jsonl``; each Produce attempt is an ``invoke`` followed by
``ok`` (appended, ACKed), ``fail`` (definitely not appended) or ``info`` (outcome
unknown: a timeout or a lost connection; "indefinite is always safe"). A line:

    {"index": 12, "time": 1764456000.123, "process": "producer", "incarnation": 2,
     "type": "ok", "f": "produce",
     "value": {"batch": 3, "partition": 1, "base_sequence": 40, "attempt": 2,
               "orders": ["order-00000300", ...]},
     "offset": 118, "duplicate": true}

``offset`` and ``duplicate`` only on ``ok``; ``error`` ("CODE: details", at most
1,024 characters of details) only on ``fail`` and ``info``. An order id longer than
256 characters is written as ``"<sha256:HEX len:N>"``: a line stays bounded. Every line is flushed to the OS as it is written, so a
kill -9 loses at most a line being written; indexes continue across restarts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import grpc
import orjson

from nodes.common.storage_fault import with_file

HISTORY_FILE = "history.jsonl"

DEFINITE_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})
"""Status codes after which a request was surely not applied (Maelstrom's definite errors).
Every other code (DEADLINE_EXCEEDED, UNAVAILABLE, CANCELLED, INTERNAL, UNKNOWN...) is indefinite.
RESOURCE_EXHAUSTED is definite: the broker answers it for a record or batch over its size
limits before appending anything, and gRPC for a message over its size limit before sending
or handling it."""


def completion_type(code: grpc.StatusCode | None) -> str:
    """``"fail"`` for a definite error code, ``"info"`` for any other (or no code at all)."""
    return "fail" if code in DEFINITE_CODES else "info"


def _last_index(path: Path) -> int:
    """Index of the last complete line of ``path`` (-1 if none); cuts off a torn last line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return -1
    end = data.rfind(b"\n") + 1
    if end < len(data):  # kill -9 in the middle of a write: drop the torn tail
        with open(path, "r+b") as f:
            f.truncate(end)
    for line in reversed(data[:end].splitlines()):
        if line.strip():
            return int(json.loads(line)["index"])
    return -1


def _dumps(op: dict) -> str:
    """``json.dumps(op, separators=(",", ":"))``, through orjson when that gives the same
    text (issue 16: 5x faster on a line of a few hundred order ids): orjson writes non-ASCII
    and DEL unescaped, and refuses what the standard library writes differently (integers
    beyond 64 bits, lone surrogates): those lines take the standard library. (orjson also writes
    NaN as null: the only float of a line is ``time.time()``.)"""
    try:
        data = orjson.dumps(op)
    except (orjson.JSONEncodeError, TypeError):
        data = b"\x7f"
    if data.isascii() and b"\x7f" not in data:
        return data.decode("ascii")
    return json.dumps(op, separators=(",", ":"))


class HistoryWriter:
    """Appends operations to ``<data-dir>/history.jsonl``.

    Args:
        data_dir: the node's data dir.
        incarnation: this process's incarnation (1 on the first start).
        process: the ``process`` field ("producer").

    Raises:
        OSError: the file cannot be opened for appending.
        ValueError: an existing line is not valid JSON with an ``index``.
    """

    def __init__(self, data_dir: Path, incarnation: int, process: str = "producer") -> None:
        self.path = Path(data_dir) / HISTORY_FILE
        self.incarnation = incarnation
        self.process = process
        self.next_index = _last_index(self.path) + 1
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, type_: str, f: str, value: dict, **extra: Any) -> dict:
        """Write one operation line and flush it; return the object written."""
        op = {"index": self.next_index, "time": time.time(), "process": self.process,
              "incarnation": self.incarnation, "type": type_, "f": f, "value": value}
        op.update(extra)
        try:
            self._f.write(_dumps(op) + "\n")
            self._f.flush()
        except OSError as e:  # ENOSPC / EIO: name the file for the storage error line
            raise with_file(e, self.path)
        self.next_index += 1
        return op

    def invoke(self, value: dict) -> dict:
        return self.append("invoke", "produce", value)

    def ok(self, value: dict, offset: int, duplicate: bool) -> dict:
        return self.append("ok", "produce", value, offset=offset, duplicate=duplicate)

    def fail(self, value: dict, error: str) -> dict:
        return self.append("fail", "produce", value, error=error)

    def info(self, value: dict, error: str) -> dict:
        return self.append("info", "produce", value, error=error)

    def close(self) -> None:
        """Flush and fsync the file (graceful stop), then close it."""
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def read_history(path: Path) -> list[dict]:
    """All complete operations of a history file, in order (a torn last line is skipped)."""
    ops = []
    with open(path, "rb") as f:
        data = f.read()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if line.strip():
            ops.append(json.loads(line))
    return ops
