"""The running ``up`` of this checkout: ``<runs>/up.json``, written by ``testbed up``.

``up`` writes ``{"pid", "start_ticks", "cluster", "started"}`` (``cluster``: the absolute
path of its cluster.json) when its cluster is running, and removes it when it exits.
``fault`` (no ``--cluster``) finds the cluster there, never through ``runs/latest``
(which may be a finished campaign). The file is pid-checked: if no process with
that pid and that start time (``/proc/<pid>/stat`` field 22, so a reused pid does
not count) is running, the file is stale (an ``up`` killed with -9) and is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from harness import runs

UP_FILE = "up.json"


def path(base: Path | None = None) -> Path:
    """``<base or the default runs dir>/up.json``."""
    return Path(base or runs.DEFAULT_RUNS) / UP_FILE


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return None
        return 0  # alive, start time unknown (no /proc)
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(info: dict) -> bool:
    """Whether the ``up`` an up.json entry names still runs (same pid, same start time)."""
    try:
        pid, ticks = int(info["pid"]), info.get("start_ticks")
    except (KeyError, TypeError, ValueError):
        return False
    now = start_ticks(pid)
    return now is not None and not (ticks and now and now != ticks)


def _read(p: Path) -> dict | None:
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _replace(p: Path, info: dict) -> None:
    tmp = p.with_name(f".{UP_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, p)


def write(base: Path | None, cluster_json: Path) -> dict | None:
    """Record this process as the running ``up`` (atomically). A live ``up`` already
    recorded there is kept under ``previous`` (and named again when this one exits, see
    :func:`remove`), so two ``up`` at once do not lose the first one for ``fault``.

    Returns: the entry of the live ``up`` this one replaced, or None.
    """
    p = path(base)
    p.parent.mkdir(parents=True, exist_ok=True)
    before = _read(p)
    previous = before if before is not None and _alive(before) else None
    info = {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid()),
            "cluster": str(Path(cluster_json).resolve()), "started": time.time()}
    if previous is not None:
        info["previous"] = previous
    _replace(p, info)
    return previous


def remove(base: Path | None) -> None:
    """Remove the file if it is still this process's (another ``up`` may have replaced it);
    if an ``up`` it replaced still runs, that one is recorded again instead."""
    p = path(base)
    info = _read(p)
    if info is None or info.get("pid") != os.getpid():
        return
    previous = info.get("previous")
    while isinstance(previous, dict) and not _alive(previous):
        previous = previous.get("previous")
    try:
        if isinstance(previous, dict):
            _replace(p, previous)
        else:
            p.unlink()
    except OSError:
        pass


class NoRunningUp(Exception):
    """No live ``up`` found; ``stale`` is a one-line note when a stale file was ignored."""

    def __init__(self, msg: str, stale: str = "") -> None:
        super().__init__(msg)
        self.stale = stale


def running_cluster(base: Path | None = None) -> tuple[Path, int]:
    """(cluster.json path, pid) of the running ``up``.

    Raises:
        NoRunningUp: no up.json, an unreadable one, or a stale one (its ``stale`` says so).
    """
    p = path(base)
    try:
        info = json.loads(p.read_text())
        pid, cluster = int(info["pid"]), Path(info["cluster"])
        ticks = info.get("start_ticks")
    except FileNotFoundError:
        raise NoRunningUp("no running cluster: start one with ./run.sh up (or pass --cluster)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NoRunningUp("no running cluster: start one with ./run.sh up (or pass --cluster)",
                          f"ignoring unreadable {p} ({type(e).__name__})") from None
    now = start_ticks(pid)
    if now is None or (ticks and now and now != ticks):
        raise NoRunningUp("no running cluster: start one with ./run.sh up (or pass --cluster)",
                          f"ignoring stale {p}: its up (pid {pid}) is not running")
    return cluster, pid
