"""A scenario's expectation bounds ("min", "max", "fired") are checked when the file is loaded:
an unknown anomaly name (a typo) was read as a count of 0, so a "max" always held and a "min"
always failed whatever the run did; a negative bound was accepted. One line, exit 2, before
anything starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.scenarios import ANOMALIES, ScenarioError, load_file

ROOT = Path(__file__).resolve().parent.parent


def _scenario(tmp_path: Path, exp: dict) -> Path:
    path = tmp_path / "sc.json"
    path.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "config": {"events": 100},
                                "steps": [], "expect": {"at-least-once": {"verdict": "held"} | exp}}))
    return path


@pytest.mark.parametrize("exp, words", [
    ({"max": {"nonsense": 3}}, "max: unknown anomaly 'nonsense'"),
    ({"min": {"lost": -1}}, "min.lost should be an integer >= 0"),
    ({"min": {"lost": 1.5}}, "min.lost should be an integer >= 0"),
    ({"max": [1]}, "'max' should be an object"),
    ({"fired": {"no.such-failpoint": 1}}, "fired: unknown failpoint 'no.such-failpoint'"),
])
def test_bad_bounds_are_refused(tmp_path, exp, words):
    with pytest.raises(ScenarioError, match="expect.at-least-once: " + words.replace(".", r"\.")):
        load_file(_scenario(tmp_path, exp))


def test_every_family_the_checker_reports_may_be_bounded():
    from harness.checker import check
    from tests.test_checker import clean
    assert set(check(clean()).anomalies) == set(ANOMALIES)


def test_scenario_run_with_a_typo_in_max_exits_2_before_starting(tmp_path):
    path = _scenario(tmp_path, {"max": {"duplicate": 0}})     # "duplicated"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run", str(path), "--out",
                        str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "unknown anomaly 'duplicate'" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()
