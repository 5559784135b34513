"""A stop request (Ctrl-C or SIGTERM) that long harness loops check.

The command's asyncio task is cancelled on the signal; on Python 3.11 a
cancellation that lands just as an ``asyncio.wait_for`` completes can be lost
(fixed in 3.12). Every long loop of the harness therefore also calls
:func:`check`, so a lost cancellation is re-raised at the next turn and the
cleanup (stopping every process) still runs.
"""

from __future__ import annotations

import asyncio

_requested = False


def request() -> None:
    """Mark that the user asked to stop."""
    global _requested
    _requested = True


def requested() -> bool:
    return _requested


def check() -> None:
    """Raise CancelledError if a stop was requested.

    Raises:
        asyncio.CancelledError: the user asked to stop.
    """
    if _requested:
        raise asyncio.CancelledError("stop requested")
