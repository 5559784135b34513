"""A scenario's config keys for the system under test (processors, session_timeout_ms,
broker, mqtt_autosave, nats_url) are checked when the file is loaded: one line naming the
key, exit 2 on the CLI, before any process starts (harness/scenarios/config.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import scenarios

ROOT = Path(__file__).resolve().parent.parent

BAD = [
    ({"processors": "two"}, "'processors' should be an integer"),
    ({"processors": None}, "'processors' should be an integer"),
    ({"processors": True}, "'processors' should be an integer"),
    ({"processors": 2.5}, "'processors' should be an integer"),
    ({"processors": 0}, "'processors' should be in 1..16"),
    ({"processors": 17}, "'processors' should be in 1..16"),
    ({"session_timeout_ms": "x"}, "'session_timeout_ms' should be an integer"),
    ({"session_timeout_ms": -5}, "'session_timeout_ms' should be in 100..300000"),
    ({"broker": "kafka"}, "'broker' should be one of builtin, nats, mosquitto"),
    ({"broker": "mosquitto", "mqtt_autosave": "banana"}, "'mqtt_autosave': expected default"),
    ({"broker": "mosquitto", "mqtt_autosave": 0}, "'mqtt_autosave': expected default"),
    ({"nats_url": 5}, "'nats_url' should be a non-empty string"),
    ({"nats_url": ""}, "'nats_url' should be a non-empty string"),
]


def _scenario(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "steps": [],
                                "config": {"events": 20, **config},
                                "expect": {"at-most-once": {"verdict": "held"}}}))
    return path


@pytest.mark.parametrize("config,message", BAD)
def test_bad_config_values_are_refused_on_load(tmp_path, config, message):
    with pytest.raises(scenarios.ScenarioError, match=message):
        scenarios.load_file(_scenario(tmp_path, config))


def test_good_config_values_load(tmp_path):
    sc = scenarios.load_file(_scenario(tmp_path, {"processors": 3, "session_timeout_ms": 1000,
                                                  "broker": "mosquitto", "mqtt_autosave": 5}))
    assert sc.config["processors"] == 3
    for sc in scenarios.catalog().values():   # the catalog's own values pass
        assert sc.config is not None


def test_cli_one_line_exit_2_before_anything_starts(tmp_path):
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run",
                        str(_scenario(tmp_path, {"processors": "two"})), "--mode", "at-most-once"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "TESTBED_RUNS": str(runs)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "config 'processors' should be an integer, got 'two'" in r.stderr
    assert not runs.exists() or not any(runs.iterdir())   # no run started
