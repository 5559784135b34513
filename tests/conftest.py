"""Shared fixtures: real node processes on loopback, each ended by pid at teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

from harness.process import NodeProcess


class Spawner:
    """Starts node processes for one test and ends every one of them (by pid) afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[NodeProcess] = []

    async def __call__(self, module: str, args: Sequence[str] = (), *, name: str | None = None,
                       data_dir: Path | None = None, start: bool = True) -> NodeProcess:
        name = name or module
        p = NodeProcess(module, data_dir or self.root / name, args, name=name)
        self.procs.append(p)
        if start:
            await p.start()
        return p

    async def close(self) -> None:
        for p in self.procs:
            if p.running:
                await p.stop(timeout_s=5)
        leftover = [p.pid for p in self.procs if p.running]
        assert not leftover, f"processes still running after teardown: {leftover}"


@pytest.fixture
async def spawn(tmp_path: Path):
    """``await spawn("broker", ["--mode", "exactly-once"])`` -> a started NodeProcess."""
    s = Spawner(tmp_path)
    try:
        yield s
    finally:
        await s.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_up(proc) -> list[str]:
    """Read ``up``'s output (``proc``: a Popen with text stdout) until it reports a running
    cluster; blocks on the command's own output, no sleeps. Fails the test with what it printed
    if it ended first. Returns the lines read."""
    import pytest
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops every process" in line:
            return lines
    pytest.fail("up never reported a running cluster: " + "".join(lines))


DEFAULT_CAMPAIGN = ("campaign", "--events", "2000", "--mode", "all", "--seed", "3", "--quiet")
"""The default campaign the suite runs once (kills + link faults, every mode)."""


@pytest.fixture(scope="session")
def default_campaign(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One default campaign through the real CLI (DEFAULT_CAMPAIGN), shared by
    tests/test_campaign.py (each mode's promise) and tests/test_report.py (its report page):
    one ~50 s run instead of two. Returns (the run dir, resolved; the CLI's CompletedProcess)."""
    out = tmp_path_factory.mktemp("default-campaign")
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "harness.cli", *DEFAULT_CAMPAIGN, "--out", str(out)], cwd=root,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode in (0, 1) and (out / "latest" / "result.json").exists(), r.stdout + r.stderr
    return (out / "latest").resolve(), r
