"""CPU time and peak memory of a process by pid, from Linux ``/proc``.

``/proc/<pid>/stat`` fields 14 and 15 (utime, stime) are in clock ticks
(``os.sysconf("SC_CLK_TCK")``, usually 100 per second, so a 10 ms
resolution); ``/proc/<pid>/status`` ``VmHWM`` is the peak resident set size
in KiB. Both read ``None`` once the process is gone.
"""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of ``pid`` in seconds (user + system CPU), or None if it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_bytes(pid: int | None) -> int | None:
    """Peak resident set size (VmHWM) of ``pid`` in bytes, or None if it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
