"""The pause guard (harness/pause_guard.py) shares the harness's process group, so a Ctrl-C
in the terminal reaches it too: it must neither die (it would no longer guard the node) nor
print a KeyboardInterrupt traceback over the harness's own "interrupted" line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GUARD = Path(__file__).resolve().parent.parent / "harness" / "pause_guard.py"

# A stand-in harness: starts the guard for a sleeping "node", prints both pids, waits on stdin.
HARNESS = f"""
import subprocess, sys
node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
guard = subprocess.Popen([sys.executable, {str(GUARD)!r}, str(__import__("os").getpid()), str(node.pid)],
                         stderr=open(sys.argv[1], "w"))
print(node.pid, guard.pid, flush=True)
sys.stdin.readline()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(30)
def test_sigint_neither_ends_the_guard_nor_prints_a_traceback(tmp_path):
    err = tmp_path / "guard.err"
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(err)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    node = guard = None
    try:
        node, guard = map(int, harness.stdout.readline().split())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:   # the guard has set up its handlers
            with open(f"/proc/{guard}/status") as f:
                ignored = int(next(l for l in f if l.startswith("SigIgn:")).split()[1], 16)
            if ignored & (1 << (signal.SIGINT - 1)):
                break
            time.sleep(0.02)   # polling the guard's start-up, bounded
        subprocess.run(["kill", "-INT", str(guard)], check=True)   # what a Ctrl-C sends it
        harness.stdin.write("\n")
        harness.stdin.flush()
        harness.wait(10)
        deadline = time.monotonic() + 10
        while _alive(node) and time.monotonic() < deadline:
            time.sleep(0.05)   # the guard ends the node once the harness is gone (its job)
        assert not _alive(node), "the guard did not end the node after the harness left (died of SIGINT?)"
        assert "Traceback" not in err.read_text()
    finally:
        harness.kill()
        harness.wait(10)
        for pid in (node, guard):
            if pid and _alive(pid):
                subprocess.run(["kill", "-9", str(pid)])
