"""A SIGTERM or Ctrl-C to `scenario run` stops every process it started, exits 143 / 130
with no traceback, and says where the partial run is (harness.cli_common.exit_if_interrupted)."""

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
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143)], ids=["SIGTERM"])
def test_scenario_run_interrupted_names_the_partial_run(tmp_path, sig, code):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "scenario", "run", "s01-lost-ack-after-append",
                             "--mode", "at-least-once", "--quiet", "--out", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and manifest is None:  # until the producer is in a manifest
        for m in tmp_path.glob("*/*/cluster.json"):
            try:
                data = json.loads(m.read_text())
            except ValueError:
                continue
            if "producer" in data.get("nodes", {}):
                manifest = data
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)  # polling a file the run writes, bounded by the deadline
    assert manifest is not None, "the scenario never started its producer"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    assert "Traceback" not in out + err
    assert "the partial run is readable in" in err, err
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    assert pids and not [p for p in pids if pid_alive(p)]
