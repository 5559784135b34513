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
    # the keys shrink writes into shrunk-scenario.json, edited by hand (was a traceback, exit 1)
    ({"disabled": "generation-fencing"}, "'disabled' should be a list of ablation names"),
    ({"disabled": ["nosuch"]}, "'disabled': unknown ablation 'nosuch'"),
    ({"disabled": [5]}, "'disabled' should be a list of ablation names"),
    ({"rate": "fast"}, "'rate' should be a number"),
    ({"rate": -1}, "'rate' should be >= 0"),
    ({"events": 0}, "'events' should be >= 1"),
    ({"events": "600"}, "'events' should be an integer"),
    ({"seed": 1.5}, "'seed' should be an integer"),
    ({"batch_size": 0}, "'batch_size' should be >= 1"),
    ({"fetch_group": None}, "'fetch_group' should be an integer"),
    ({"drain_timeout_s": "60"}, "'drain_timeout_s' should be a number"),
    ({"sequential_sends": "yes"}, "'sequential_sends' should be true or false"),
    ({"storage": "fuse"}, "'storage' should be one of direct, lazy"),
    ({"evnets": 300}, r"unknown key 'evnets' \(did you mean 'events'\?\)"),
    # a typo was silently ignored: the scenario ran with the default (here: one processor)
    ({"procesors": 2}, "unknown key 'procesors'"),
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


@pytest.mark.parametrize("step,message", [
    ({"at": 0, "f": "zombie", "node": "sink"}, "'node' must be a processor"),
    ({"at": 0, "f": "zombie", "nth": 0}, "'nth' must be an integer >= 1, got 0"),
    ({"at": 0, "f": "zombie", "nth": "x"}, "'nth' must be an integer >= 1"),
    ({"at": 0, "f": "zombie", "timeout_ms": -1}, "'timeout_ms' must be an integer >= 1"),
    ({"at": 0, "f": "add-processor", "timeout_ms": "soon"}, "'timeout_ms' must be an integer >= 1"),
    # a typo was ignored: the zombie paused at its first hit, the run said "as expected"
    ({"at": 0, "f": "zombie", "nht": 3}, r"zombie: unknown key 'nht' \(did you mean 'nth'\?\); known keys: at, f,"),
    ({"at": 0, "f": "zombie", "trigger": "failpoint", "release": "drained", "relase": "drained"},
     r"unknown key 'relase' \(did you mean 'release'\?\)"),
])
def test_bad_group_steps_are_refused_on_load(tmp_path, step, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "steps": [step],
                                "config": {"events": 20, "processors": 2},
                                "expect": {"at-most-once": {"verdict": "held"}}}))
    with pytest.raises(scenarios.ScenarioError, match=message):
        scenarios.load_file(path)


@pytest.mark.parametrize("config,steps,message", [
    ({"processors": 1}, [{"at": 0, "f": "zombie", "nth": 3}], "zombie step needs a consumer group"),
    ({"processors": 1}, [{"at": 10, "f": "add-processor"}], "add-processor step needs a consumer group"),
    ({"processors": 2}, [{"at": 0, "f": "zombie", "node": "processor-9"}], "at most 2 processors"),
    # a logical zombie past the workload: the member's pause never fired, the run waited 60 s
    # for it and the scenario said "as expected ... held (steps fired: 0/1)"
    ({"processors": 2, "events": 300, "batch_size": 20},
     [{"at": 5000, "f": "zombie", "trigger": "failpoint", "release": "drained"}],
     "step 0 (zombie of processor at 5000) needs a batch of the producer after the one of its 'at', but the "
     "workload has 300 events in batches of 20: 'at' must be at most 260, or raise 'events'"),
    ({"processors": 2, "events": 300, "batch_size": 20},
     [{"at": 280, "f": "zombie", "trigger": "failpoint", "release": "drained"}], "'at' must be at most 260"),
    ({"processors": 2, "events": 20, "batch_size": 20},
     [{"at": 0, "f": "zombie", "trigger": "failpoint", "release": "drained"}], "batches of 20: raise 'events'"),
    ({"processors": 2}, [{"at": True, "f": "zombie", "trigger": "failpoint", "release": "drained"}],
     "'at' must be an integer >= 0, got True"),
    ({}, [{"at": 10, "f": "partition", "node": "nats", "role": "leader", "for_ms": 100}],
     "it needs --broker nats (not builtin)"),
    ({}, [{"at": 10, "f": "kill", "node": "mosquitto"}], "aimed at mosquitto, which a builtin cluster"),
    ({"processors": 2}, [{"at": 10, "f": "kill", "node": "processor-3"}], "aimed at processor-3"),
    ({"broker": "mosquitto"}, [{"at": 10, "f": "kill", "node": "broker"}], "aimed at broker, which a mosquitto"),
])
def test_group_and_partition_steps_need_their_cluster(tmp_path, config, steps, message):
    """Each ran: a zombie with one processor paused the only one (the run hung); a zombie on
    a member that never exists, an add-processor without a group or a partition on the
    builtin broker failed as a step, and the scenario said "NOT as expected"; a kill of a
    node the cluster lacks was an info "KeyError" and the scenario said "as expected"."""
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "steps": steps,
                                "config": {"events": 20, **config},
                                "expect": {"at-most-once": {"verdict": "held"}}}))
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "TESTBED_RUNS": str(runs)})
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and not runs.exists()


def test_campaign_schedule_with_a_zombie_needs_processors(tmp_path):
    sched = tmp_path / "sched.json"
    sched.write_text(json.dumps({"seed": 1, "events": 20, "steps": [{"at": 0, "f": "zombie"}]}))
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--schedule", str(sched)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "TESTBED_RUNS": str(runs)})
    assert r.returncode == 2 and "zombie step needs a consumer group" in r.stderr, r.stderr
    assert not runs.exists()


def test_campaign_schedule_with_a_zombie_past_the_workload_is_refused(tmp_path):
    sched = tmp_path / "sched.json"
    sched.write_text(json.dumps({"seed": 1, "events": 300, "steps": [
        {"at": 5000, "f": "zombie", "trigger": "failpoint", "release": "drained"}]}))
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--schedule", str(sched),
                        "--processors", "2", "--batch-size", "20"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "TESTBED_RUNS": str(runs)})
    assert r.returncode == 2 and "'at' must be at most 260" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and not runs.exists()


@pytest.mark.parametrize("key", ["processors", "broker", "events"])
def test_a_config_key_at_the_top_level_is_refused(tmp_path, key):
    """{"processors": 2, ...} beside "config" was silently ignored: the run had 1 processor."""
    path = tmp_path / "top.json"
    path.write_text(json.dumps({"name": "x", "title": "t", "incident": "i", "steps": [], key: 2,
                                "expect": {"at-most-once": {"verdict": "held"}}}))
    with pytest.raises(scenarios.ScenarioError, match=f"'{key}' belongs in \"config\""):
        scenarios.load_file(path)
