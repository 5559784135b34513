"""A full disk or an I/O error stops the node at once, saying which file (fail-stop).

ENOSPC (disk full), EDQUOT (quota), EIO (an I/O error, e.g. a failed fsync) and
EROFS (the file system went read-only) on a node's durable write are not
transient: retrying the same write fills the log with the same error while the
pipeline stalls, and after a failed fsync the page cache's state is unknown
(PostgreSQL's "fsyncgate"). Kafka does the same: an IOException on a log dir takes
the log dir offline and halts the broker when no log dir is left.

So a node that meets one (a handler calls :func:`failed`, or the error reaches the
runtime from the main task or the recovery) logs one JSON line
``{"msg": "storage error", "errno": "ENOSPC", "file": ...}``, prints one line to
stderr, ``NODE: storage error: ENOSPC (No space left on device) on FILE``, stops
serving and exits with :data:`EXIT_STORAGE` (3). The harness watches for that exit
code (harness/storage_watch.py) and stops the campaign with the line.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3

EXIT_STORAGE = 3
"""Exit code of a node stopped by a storage error (0 ok, 1 failure, 2 usage)."""

FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
SQLITE_IOERR, SQLITE_FULL = 10, 13
LINE_MARK = ": storage error: "
"""What the node's stderr line contains (the harness looks for it)."""


def find(exc: BaseException | None) -> BaseException | None:
    """The storage error in ``exc``, its causes (``__cause__`` / ``__context__``) or, for an
    exception group (a TaskGroup's errors), its members; None if there is none.
    Each exception is looked at once (chains can form cycles)."""
    todo, seen = [exc], set()
    while todo and len(seen) < 256:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in FATAL_ERRNOS:
            return e
        if isinstance(e, sqlite3.Error):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in (SQLITE_IOERR, SQLITE_FULL):
                return e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend((e.__cause__, e.__context__))
    return None


def with_file(e: OSError, path: object) -> OSError:
    """Name the file on an OSError raised by a write on a file descriptor (no filename)."""
    if e.filename is None:
        e.filename = str(path)
    return e


def describe(e: BaseException) -> tuple[str, str]:
    """(errno name and text, file) of a storage error, e.g. ("ENOSPC (No space left on device)", "/d/f")."""
    if isinstance(e, OSError) and e.errno is not None:
        name = errno.errorcode.get(e.errno, str(e.errno))
        return f"{name} ({os.strerror(e.errno)})", str(e.filename or "?")
    return (getattr(e, "sqlite_errorname", None) or type(e).__name__) + f" ({e})", "the SQLite database"


class Reporter:
    """The process's storage-failure switch: the first error wins; the runtime stops on it."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        self._loop, self._stop = loop, stop

    def failed(self, e: BaseException) -> None:
        """Record ``e`` (a storage error) and make the node stop; safe from any thread."""
        if self.error is None:
            self.error = e
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop is closed: the node is stopping anyway
                pass


REPORTER = Reporter()


def failed(e: BaseException) -> None:
    """Report a storage error of this node if ``e`` is (or was caused by) one."""
    err = find(e)
    if err is not None:
        REPORTER.failed(err)
