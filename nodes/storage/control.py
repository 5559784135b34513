"""The lazy filesystem's control channel: one text command per connection, one JSON answer.

A Unix socket in the abstract namespace (Linux), named after the mount point
(:func:`control_address`), so that no path-length limit or stale socket file
gets in the way. LazyFS uses a FIFO; a socket lets ``stats`` answer. Commands:

    clear-cache            drop every unsynced write (power loss)
                           -> {"ok": true, "files": 2, "dropped_bytes": 8192, "paths": [...]}
    fsync-error [GLOB]     the next fsync of a matching file fails with EIO once
    fsync-error off        disarm it
    disk-full N | off      writes fail with ENOSPC after N more bytes / lift it
    sync [GLOB]            write every unsynced write back and fsync it (sync(1), the
                           kernel's writeback) -> {"ok": true, "files": 3, "synced_bytes": 512};
                           with GLOB (fnmatch on the path inside the mount) only those files
    stats                  -> {"ok": true, "pending_bytes": ..., "pending_files": ...,
                               "fsyncs": ..., "faults_fired": {...}, ...}

A bad command answers ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from typing import Callable

MAX_COMMAND = 4096


class ControlError(RuntimeError):
    """The filesystem did not answer, or refused the command (the message says why)."""


def control_address(mount: str | os.PathLike) -> str:
    """The abstract socket name of the filesystem mounted at ``mount``."""
    digest = hashlib.sha1(os.path.realpath(mount).encode()).hexdigest()[:24]
    return f"\0testbed-lazyfs-{digest}"


def handle_command(line: str, ops, faults) -> dict:
    """Carry out one command on ``ops`` (LazyOps) and ``faults`` (FaultState)."""
    words = line.split()
    if not words:
        return {"ok": False, "error": "empty command"}
    cmd, args = words[0], words[1:]
    if cmd == "clear-cache" and not args:
        dropped = ops.clear_cache()
        faults.record("clear-cache", **dropped)
        return {"ok": True, **dropped}
    if cmd == "fsync-error" and args == ["off"]:
        faults.fsync_error = None
        return {"ok": True, "armed": None}
    if cmd == "fsync-error" and len(args) <= 1:
        faults.arm_fsync_error(args[0] if args else None)
        return {"ok": True, "armed": faults.fsync_error}
    if cmd == "disk-full" and len(args) == 1:
        if args[0] == "off":
            faults.arm_disk_full(None)
            return {"ok": True, "disk_budget_bytes": None}
        try:
            n = int(args[0])
        except ValueError:
            n = -1
        if n < 0:
            return {"ok": False, "error": f"disk-full needs a byte count >= 0 or 'off', got {args[0]!r}"}
        faults.arm_disk_full(n)
        return {"ok": True, "disk_budget_bytes": n}
    if cmd == "sync" and len(args) <= 1:   # sync(1): every unsynced write (matching GLOB) reaches the disk
        return {"ok": True, **ops.sync_all(args[0] if args else None)}
    if cmd == "stats" and not args:
        return {"ok": True, **ops.stats()}
    return {"ok": False, "error": f"unknown command {line.strip()[:80]!r}; expected clear-cache, "
                                  "fsync-error [GLOB]|off, disk-full N|off, sync [GLOB], stats"}


def serve(address: str, handler: Callable[[str], dict]) -> socket.socket:
    """Listen on ``address`` in a daemon thread; each connection sends one line."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(address)
    srv.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5)
                    data = b""
                    while b"\n" not in data and len(data) < MAX_COMMAND:
                        chunk = conn.recv(MAX_COMMAND)
                        if not chunk:
                            break
                        data += chunk
                    try:
                        answer = handler(data.decode("utf-8", "replace"))
                    except Exception as e:  # noqa: BLE001 - answered, never crashes the fs
                        answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    pass

    threading.Thread(target=loop, name="lazyfs-control", daemon=True).start()
    return srv


def send(mount: str | os.PathLike, command: str, timeout_s: float = 5.0) -> dict:
    """Send ``command`` to the filesystem mounted at ``mount``; return its answer.

    Raises:
        ControlError: no filesystem answers there, or it refused the command.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        s.connect(control_address(mount))
        s.sendall(command.strip().encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise ControlError(f"no lazy filesystem answers for {mount}: {e.strerror or e}") from None
    finally:
        s.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"lazy filesystem at {mount} gave no answer to {command!r}") from None
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "refused"))
    return answer
