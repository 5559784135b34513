"""Crash-safe file writes: the temp-file, fsync, rename, fsync-the-directory dance.

A reader after a crash (kill -9 or power loss) sees either the old file or the
new one, never a half-written one. This is how checkpoints, committed offsets
and producer state are persisted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or create inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically.

    Writes ``path.tmp``, fsyncs it, renames it over ``path`` and fsyncs the
    parent directory. With ``fsync=False`` the rename is still atomic against a
    process crash, but not against a power loss (used by ablations only).

    Raises:
        OSError: the directory is not writable or the disk is full.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except OSError as e:  # write/fsync errors name no file: name it (storage error line)
        if e.filename is None:
            e.filename = str(tmp)
        raise
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any, *, fsync: bool = True) -> None:
    """``atomic_write_bytes`` of ``obj`` as compact JSON."""
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode(), fsync=fsync)


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file written by ``atomic_write_json``; ``default`` if it does not exist.

    Raises:
        ValueError: the file exists but is not JSON (empty after a power loss that
            kept the rename but not the unsynced data); the message names the file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return default
    try:
        return json.loads(data)
    except ValueError as e:
        what = "empty" if not data else f"not valid JSON ({e})"
        raise ValueError(f"{path} is {what}") from None
