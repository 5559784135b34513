"""Stop a campaign within a poll interval when a node fail-stopped on a full disk or an I/O error.

A node that meets ENOSPC / EDQUOT / EIO / EROFS on a durable write exits with
``EXIT_STORAGE`` (3) after printing ``NODE: storage error: ENOSPC (...) on FILE``
to its stderr (nodes/common/storage_fault.py). Without this watch the harness
would see only a stalled pipeline ("workload running") until the drain timeout.
A node under a storage fault that the schedule itself injected (harness.nemesis.storage:
``fsync-error``, ``disk-full``; the node's ``storage_fault_injected`` flag) is expected
to fail-stop: that step restarts it, and the watch leaves it alone.

    async with storage_guard():
        await run_mode(...)          # raises StorageFailure within POLL_S of the exit

:func:`storage_guard` cancels the task it runs in (as ``asyncio.timeout`` does) and
turns the cancellation into :class:`StorageFailure`, so the ``finally`` blocks of the
guarded code stop every process and keep the partial run; the CLI prints the
exception's one line and exits 2.
"""

from __future__ import annotations

import asyncio
import weakref
from contextlib import asynccontextmanager
from typing import AsyncIterator

from nodes.common.storage_fault import EXIT_STORAGE, LINE_MARK

POLL_S = 0.2
"""How often the guard looks at the processes (s)."""

PROCESSES: "weakref.WeakSet" = weakref.WeakSet()
"""Every NodeProcess this harness started (harness.process registers them)."""


class StorageFailure(Exception):
    """A node stopped on a storage error; the message is one line naming the node and the file."""

    def __init__(self, node: str, line: str) -> None:
        super().__init__(line)
        self.node = node


def failure_line(p) -> str:
    """The node's own storage error line (from its stdout pipe, else its stderr.log)."""
    ev = getattr(p, "storage_error", None)
    if isinstance(ev, dict):
        return f"{p.name} stopped on a storage error: {ev.get('errno')} on {ev.get('file')}"
    try:
        lines = (p.data_dir / "stderr.log").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if LINE_MARK in line:
            return f"{p.name} stopped on a storage error: {line.split(LINE_MARK, 1)[1].strip()}"
    return f"{p.name} stopped on a storage error (exit {EXIT_STORAGE}); see {p.data_dir / 'stderr.log'}"


def find_failure(ignore: set[int] = frozenset()) -> StorageFailure | None:
    """A StorageFailure for the first registered process that exited with EXIT_STORAGE."""
    for p in list(PROCESSES):
        proc = p.proc
        if getattr(p, "storage_fault_injected", False):
            continue  # the fail-stop a scheduled fsync-error / disk-full step expects (it restarts the node)
        if proc is not None and proc.returncode == EXIT_STORAGE and id(proc) not in ignore:
            return StorageFailure(p.name, failure_line(p))
    return None


@asynccontextmanager
async def storage_guard(poll_s: float = POLL_S) -> AsyncIterator[None]:
    """Run the body; raise :class:`StorageFailure` as soon as a node exits with EXIT_STORAGE.

    Raises:
        StorageFailure: a node stopped on a storage error while the body ran.
    """
    task = asyncio.current_task()
    assert task is not None
    before = {id(p.proc) for p in list(PROCESSES) if p.proc is not None and p.proc.returncode is not None}
    found: list[StorageFailure] = []

    async def watch() -> None:
        while True:
            f = find_failure(before)
            if f is not None:
                found.append(f)
                task.cancel()
                return
            await asyncio.sleep(poll_s)  # polling exit codes the event loop sets, bounded by the body

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    except asyncio.CancelledError:
        if found and task.uncancel() == 0:
            raise found[0] from None
        raise
    finally:
        watcher.cancel()
