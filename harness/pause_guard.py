"""The pause guard: resumes and stops a SIGSTOPped node when the harness dies.

A node watches ``TESTBED_PARENT_PID`` and stops itself when the harness is
gone (nodes/common/runtime.py), but a process held by SIGSTOP cannot watch
anything: a harness killed with -9 while it holds a node paused would leave
that node stopped forever. So :meth:`harness.process.NodeProcess.pause`
starts this guard *before* it sends SIGSTOP and ends it (by pid) right after
SIGCONT. The guard is a separate tiny process (no imports beyond the standard
library) that polls its own parent every 50 ms; once the harness is gone it
sends SIGCONT then SIGTERM to the paused pid, and SIGKILL if that pid is still
there 5 s later. It checks the pid's start time (``/proc/PID/stat``) before
each signal so that a recycled pid is never hit.

The guard ignores SIGINT and SIGHUP: it runs in the harness's process group, so a Ctrl-C in
the terminal (or the terminal closing) reaches it too; it must outlive the harness's handling
of that signal (and print no KeyboardInterrupt traceback over the harness's own message).

Usage: ``python harness/pause_guard.py HARNESS_PID NODE_PID``
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.05
KILL_AFTER_S = 5.0


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def _signal(pid: int, ident: str | None, sig: int) -> bool:
    if ident is not None and start_time(pid) != ident:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C is the harness's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    harness, node = int(argv[0]), int(argv[1])
    ident = start_time(node)
    while os.getppid() == harness:
        time.sleep(POLL_S)
    # The harness is gone: the node must not stay stopped forever.
    _signal(node, ident, signal.SIGCONT)
    if not _signal(node, ident, signal.SIGTERM):
        return 0
    deadline = time.monotonic() + KILL_AFTER_S
    while time.monotonic() < deadline:
        if ident is not None and start_time(node) != ident:
            return 0
        time.sleep(POLL_S)
    _signal(node, ident, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
