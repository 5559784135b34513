"""The proxy's fault history: ``<data-dir>/faults.jsonl``, one JSON object per line.

Records (each line flushed as it is written, so a kill -9 loses at most the
line being written):

    {"time": 1760000000.12, "type": "fault", "link": "producer-broker",
     "method": "/testbed.v1.Broker/Produce", "fault": "drop-response",
     "fault_id": "f1", "call": 17, "action": "dropped-response", ...drawn params}
    {"time": ..., "type": "control", "link": ..., "event": "add", "fault_id": "f1",
     "spec": {...}}            # also "remove" and "heal" (with "removed": [ids])

Kinds that hold a call (late, reorder, a delayed duplicate) add a follow-up
record when the held request finally goes upstream ("late-delivered" with
its ``outcome``, "reordered", "duplicate-delivered"...), marked
``"follow_up": true``: not a firing (the firing is the record written when
the call arrived).

``call`` is the call's number on the link (1-based, arrival order): with the
same seed and call sequence two runs write the same fault lines, apart from
``time``. The auditor reads this file to show which faults fired.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodes.proxy.fault import now

FILE_NAME = "faults.jsonl"


class FaultHistory:
    """Append-only JSONL writer (line-flushed, not fsynced: a history, not state)."""

    def __init__(self, data_dir: Path, link: str) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self.link = link
        self._f = open(self.path, "a", encoding="utf-8")

    def _write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()

    def fault(self, *, method: str, fault: str, fault_id: str, call: int, action: str,
              params: dict[str, Any]) -> None:
        """Record one firing of a fault on one call."""
        self._write({"time": round(now(), 6), "type": "fault", "link": self.link,
                     "method": method, "fault": fault, "fault_id": fault_id, "call": call,
                     "action": action, **params})

    def control(self, event: str, **fields: Any) -> None:
        """Record a control event ("add", "remove", "heal")."""
        self._write({"time": round(now(), 6), "type": "control", "link": self.link,
                     "event": event, **fields})

    def close(self) -> None:
        self._f.close()


def read_history(path: Path) -> list[dict[str, Any]]:
    """All records of a faults.jsonl file (a torn last line is skipped)."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out
