"""The orphan guard: a process the harness starts that cannot watch the harness itself.

Every built-in node watches ``TESTBED_PARENT_PID`` and stops when the harness is gone
(nodes/common/runtime.py). A user's node in another language (``--processor-cmd``), and the
real brokers' servers (nats-server, mosquitto) do not: a harness killed with -9 would leave
them running, holding their ports and data dirs. For those, the pause guard
(harness/pause_guard.py: a tiny stdlib-only process that polls its parent every 50 ms, then
sends SIGCONT, SIGTERM and SIGKILL 5 s later to the pid, checking its start time first) is
started right after the process, for the process's whole life, and ended by pid when the
harness ends the process itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GUARD = Path(__file__).with_name("pause_guard.py")


class OrphanGuarded:
    """Mixin for a :class:`harness.process.NodeProcess` subclass whose process does not watch
    the harness's pid. Call :meth:`_start_orphan_guard` right after the process is spawned;
    :meth:`kill`, :meth:`wait` (once it exited) and :meth:`stop` end the guard."""

    _orphan_guard: subprocess.Popen | None = None

    @property
    def orphan_guard_pid(self) -> int | None:
        """The guard's pid while the process runs (None before a start and after its end)."""
        return self._orphan_guard.pid if self._orphan_guard else None

    def _start_orphan_guard(self) -> None:
        self._end_orphan_guard()
        self._orphan_guard = subprocess.Popen(
            [sys.executable, str(GUARD), str(os.getpid()), str(self.proc.pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _end_orphan_guard(self) -> None:
        g, self._orphan_guard = self._orphan_guard, None
        if g is not None:
            g.kill()
            g.wait()

    def kill(self, cause: str = "killed by the harness") -> None:
        super().kill(cause)
        self._end_orphan_guard()

    async def wait(self, timeout_s: float | None = None) -> int | None:
        code = await super().wait(timeout_s)
        if code is not None:
            self._end_orphan_guard()
        return code

    async def stop(self, timeout_s: float = 10.0, cause: str = "stopped by the harness") -> int | None:
        code = await super().stop(timeout_s, cause)
        self._end_orphan_guard()
        return code
