"""`scenario run NAME`: a catalog id (``s01``, as the README and docs call them) picks its
scenario; a path that does not exist or is a directory says so in one line. Before, both were
"unknown scenario '...'; choose from: <29 names>", and a mistyped file path read as a catalog miss."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenarios import ScenarioError, catalog, get

ROOT = Path(__file__).resolve().parent.parent


def test_a_catalog_id_picks_its_scenario():
    assert get("s01").name == "s01-lost-ack-after-append"
    assert get("s01b").name.startswith("s01b-")
    assert get("n02").name == "n02-jetstream-leader-kill"
    ids = [n.split("-", 1)[0] for n in catalog()]
    assert len(set(ids)) == len(ids)        # every id names one scenario


@pytest.mark.parametrize("make, words", [
    (lambda tmp: tmp / "missing.json", "does not exist"),
    (lambda tmp: tmp / "sub" / "scenario", "does not exist"),
    (lambda tmp: (tmp / "d.json").mkdir() or tmp / "d.json", "is a directory"),
    (lambda tmp: tmp, "is a directory"),
])
def test_a_path_that_is_not_a_file_says_so(tmp_path, make, words):
    with pytest.raises(ScenarioError, match=words):
        get(str(make(tmp_path)))


def test_cli_missing_file_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run", str(tmp_path / "nope.json"),
                        "--out", str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr and "choose from" not in r.stderr
    assert not (tmp_path / "runs").exists()
