"""The real brokers' servers do not watch the harness's pid: after kill -9 of the harness
the orphan guard (harness/orphan_guard.py) stops them, as the built-in nodes stop themselves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.mosquitto import mosquitto_binary
from tests.conftest import pid_alive, wait_until_up

ROOT = Path(__file__).resolve().parent.parent


def _has_mosquitto() -> bool:
    try:
        mosquitto_binary()
        return True
    except FileNotFoundError:
        return False


def _up_then_kill_the_harness(tmp_path: Path, *flags: str) -> tuple[dict, list[int]]:
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--events", "100000", "--rate", "200",
                             "--out", str(tmp_path), *flags],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(proc)
        manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    finally:
        proc.kill()
        proc.wait(timeout=10)
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    pids += list(manifest.get("nats", {}).get("pids", {}).values())   # .get: clean up even when
    pids.append(manifest.get("mosquitto", {}).get("pid"))              # the manifest lacks them
    pids = [p for p in pids if isinstance(p, int)]
    deadline = time.monotonic() + 30
    while [p for p in pids if pid_alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)  # poll the orphans' pids, bounded by the deadline
    left = [p for p in pids if pid_alive(p)]
    for p in left:  # never leave them behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    return manifest, left


@pytest.mark.timeout(120)
def test_nats_servers_stop_when_the_harness_dies(tmp_path):
    manifest, left = _up_then_kill_the_harness(tmp_path, "--broker", "nats")
    assert len(manifest["nats"].get("pids", {})) == 3 and all(manifest["nats"]["pids"].values())
    assert not left, f"orphaned processes still running: {left}"


@pytest.mark.timeout(120)
@pytest.mark.skipif(not _has_mosquitto(), reason="mosquitto is not installed (run.sh installs it as root)")
def test_mosquitto_stops_when_the_harness_dies(tmp_path):
    manifest, left = _up_then_kill_the_harness(tmp_path, "--broker", "mosquitto")
    assert manifest["mosquitto"].get("pid")
    assert not left, f"orphaned processes still running: {left}"
