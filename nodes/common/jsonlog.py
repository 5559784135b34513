"""JSON-lines logging: one object per line in ``<data-dir>/<node>.log``.

Each line: ``{"ts": <unix seconds, float>, "level": "INFO", "node": "broker",
"msg": "...", ...extra fields}``. Warnings and errors are also printed to
stderr as plain text, so a human watching a terminal sees them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        obj = {"ts": round(record.created, 6), "level": record.levelname, "node": self.node,
               "msg": record.getMessage()}
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                obj[k] = v
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def _for_terminal(record: logging.LogRecord) -> bool:
    """Keep off stderr: records marked ``extra={"json_only": True}`` (the caller prints its
    own one line), and grpc's traceback for a call cancelled by the server's own stop."""
    if getattr(record, "json_only", False):
        return False
    exc = record.exc_info[0] if record.exc_info else None
    return not (record.name.startswith("grpc") and exc is not None and
                issubclass(exc, asyncio.CancelledError))


def setup_logging(node: str, data_dir: Path, level: str = "INFO") -> logging.Logger:
    """Configure the root logger for a node process and return the node's logger."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level)
    fh = logging.FileHandler(Path(data_dir) / f"{node}.log")
    fh.setFormatter(JsonFormatter(node))
    root.addHandler(fh)
    eh = logging.StreamHandler(sys.stderr)
    eh.setLevel(logging.WARNING)
    eh.setFormatter(logging.Formatter(f"{node}: %(levelname)s %(message)s"))
    eh.addFilter(_for_terminal)
    root.addHandler(eh)
    return logging.getLogger(node)
