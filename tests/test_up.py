"""`testbed up`: a cluster that moves a workload end to end, and stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import pid_alive

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_up_streams_a_workload_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.cli", "up", "--events", "1500", "--rate", "0",
                        "--exit-when-drained", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "drained" in r.stdout
    assert "audit: 1500 orders, 1500 applied exactly once, 0 lost, 0 duplicated" in r.stdout
    manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    assert set(manifest["nodes"]) == {"producer", "broker", "processor", "sink"}
    assert set(manifest["links"]) == {"producer-broker", "processor-broker", "processor-sink"}
    for name, node in manifest["nodes"].items():
        assert node["address"] in r.stdout  # each address printed
        assert not pid_alive(node["pid"]), f"{name} still running"


@pytest.mark.timeout(120)
def test_up_stops_every_process_on_ctrl_c(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--events", "100000",
                             "--rate", "200", "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # block on the command's own output, no sleeps
        lines.append(line)
        if "Ctrl-C stops every process" in line:
            break
    else:
        pytest.fail("up never reported a running cluster: " + "".join(lines))
    manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    assert len(pids) == 7 and all(pid_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "stopped every process" in rest
    assert not [p for p in pids if pid_alive(p)]
