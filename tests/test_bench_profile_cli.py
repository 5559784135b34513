"""`python -m harness.bench.profile` refuses an --out that already holds a profiled run: the
cluster resumed the old run's data, the producer started at its end and every node showed
0-17 samples with no warning (one line, exit 2, before anything starts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_an_out_dir_with_a_profiled_run_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    r = subprocess.run([sys.executable, "-m", "harness.bench.profile", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "already holds a profiled run" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]     # nothing started, nothing written


def test_without_py_spy_one_line_before_anything_starts(tmp_path, monkeypatch, capsys):
    # Before: the cluster started, then FileNotFoundError '.venv/bin/py-spy' as a traceback, exit 1.
    from harness.bench import profile

    monkeypatch.setattr(profile, "find_pyspy", lambda: None)

    async def must_not_run(*a, **k):
        raise AssertionError("the cluster was started")
    monkeypatch.setattr(profile, "profile_run", must_not_run)
    monkeypatch.setattr(sys, "argv", ["profile", "--out", str(tmp_path / "out"), "--events", "50"])
    with pytest.raises(SystemExit) as e:
        profile.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: py-spy not found") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()      # nothing started, nothing written


@pytest.mark.parametrize("args, option", [(["--mode", "nope"], "'--mode'"), (["--events", "0"], "'--events'"),
                                          (["--batch-size", "-1"], "'--batch-size'")])
def test_a_bad_option_is_one_line_not_a_node_traceback(tmp_path, args, option):
    r = subprocess.run([sys.executable, "-m", "harness.bench.profile", "--out", str(tmp_path / "out"), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert option in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
