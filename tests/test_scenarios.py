"""The scenario catalog: every file valid, every ablation covered, and one scenario
per mode run end to end (real processes) with its expected verdict.

The full catalog (every scenario, every mode) is @slow: ``./run.sh test --all``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import scenarios
from harness.ablations import ABLATIONS
from harness.scenarios.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent

# One scenario per mode label in the default run: (scenario, mode label).
PER_MODE = [
    ("s07-offsets-committed-before-processing", "at-most-once"),
    ("s08-error-on-first-committed-offset-fetch", "at-least-once"),
    ("s04-checkpoint-with-writes-outstanding", "exactly-once/idempotent"),
    ("s06-crash-after-sink-commit", "exactly-once/transactional"),
]


def test_catalog_is_valid_and_names_its_incidents():
    cat = scenarios.catalog()
    assert len(cat) >= 8
    for n in range(1, 9):  # shared/scenarios.md's eight
        assert any(sc.source.startswith(f"shared/scenarios.md #{n}") for sc in cat.values()), n
    for sc in cat.values():
        assert sc.incident and sc.title and sc.steps and sc.expect
        assert sc.schedule()["steps"] == sc.steps


def test_every_ablation_has_a_scenario_that_catches_it():
    cov = scenarios.ablation_coverage()
    assert set(cov) == set(ABLATIONS)
    for name, scs in cov.items():
        for sc in (scenarios.get(s) for s in scs):
            assert all(e["verdict"] == "broken" for e in sc.ablations[name].values())
            # ... and the same schedule with every mechanism on keeps the promise.
            for label in sc.ablations[name]:
                v = sc.expect[label]["verdict"]
                assert set(v if isinstance(v, list) else [v]) <= {"held", "not-exercised"}, (name, label)


def test_invalid_scenario_files_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "steps": [
        {"at": 0, "f": "failpoint", "name": "no.such-point"}], "expect": {}}))
    with pytest.raises(scenarios.ScenarioError, match="unknown failpoint"):
        scenarios.load_file(bad)
    bad.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "steps": [],
                               "expect": {"exactly-twice": {"verdict": "held"}}}))
    with pytest.raises(scenarios.ScenarioError, match="unknown mode label"):
        scenarios.load_file(bad)
    with pytest.raises(scenarios.ScenarioError, match="unknown scenario"):
        scenarios.get("s99-nothing")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name,label", PER_MODE, ids=[l for _, l in PER_MODE])
async def test_one_scenario_per_mode_gives_its_expected_verdict(tmp_path, name, label):
    sc = scenarios.get(name)
    result = await run_scenario(sc, tmp_path, modes=[label])
    (entry,) = result["modes"]
    assert entry["as_expected"], entry["mismatches"]
    assert entry["verdict"] == sc.expect[label]["verdict"]
    assert sum(entry["failpoints_fired"].values()) >= 1  # the fault really landed
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["scenario"] == name and saved["as_expected"] is True


def test_cli_list_and_usage_errors():
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "list"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name in scenarios.catalog():
        assert name[:20] in r.stdout
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run", "s99-nothing"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown scenario" in r.stderr
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run",
                        "s06-crash-after-sink-commit", "--disable", "broker-fsync"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no expectation with 'broker-fsync'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "harness.cli", "failpoints"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "processor.after-checkpoint-before-commit" in r.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", sorted(scenarios.catalog()))
async def test_every_scenario_in_every_mode(tmp_path, name):
    from harness.storage import fuse_missing
    if scenarios.get(name).config.get("storage") == "lazy" and fuse_missing():
        pytest.skip(fuse_missing())
    if scenarios.get(name).config.get("broker") == "mosquitto":
        from harness.mosquitto import INSTALL_HINT, mosquitto_binary
        try:
            mosquitto_binary()
        except FileNotFoundError:
            pytest.skip(INSTALL_HINT)
    result = await run_scenario(scenarios.get(name), tmp_path)
    bad = {e["dir"]: e["mismatches"] for e in result["modes"] if not e["as_expected"]}
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_replay_fidelity_of_a_logical_trigger_scenario(tmp_path):
    from harness.scenarios.fidelity import measure
    r = await measure([scenarios.get("s07-offsets-committed-before-processing")], tmp_path, runs=2)
    assert r["compared"] == 2 and r["fraction"] == 1.0, r["rows"]
