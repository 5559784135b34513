"""`python -m harness.bench.profile` refuses an --out that already holds a profiled run: the
cluster resumed the old run's data, the producer started at its end and every node showed
0-17 samples with no warning (one line, exit 2, before anything starts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_out_dir_with_a_profiled_run_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    r = subprocess.run([sys.executable, "-m", "harness.bench.profile", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "already holds a profiled run" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]     # nothing started, nothing written
