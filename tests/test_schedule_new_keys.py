"""The schedule keys added with exact replay (``window_batches``, ``until``, ``synced``,
``when_fired``) in the wrong place or of the wrong type: one line before anything runs
(``scenario run FILE`` exits 2), never a TypeError inside the nemesis during the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.schedule import ScheduleError, validate_steps

ROOT = Path(__file__).resolve().parent.parent
FP = {"at": 0, "arm": True, "f": "failpoint", "node": "processor",
      "name": "processor.after-checkpoint-before-commit", "action": "crash", "nth": 1}


@pytest.mark.parametrize("step, words", [
    (FP | {"when_fired": "yes"}, "'when_fired' must be"),
    (FP | {"when_fired": {"link": "processor-sink"}}, "'when_fired' must be"),
    (FP | {"when_fired": {"link": "nowhere", "kind": "drop-request"}}, "link 'nowhere' unknown"),
    (FP | {"when_fired": {"link": "processor-sink", "kind": "explode"}}, "kind 'explode' unknown"),
    ({"at": 100, "f": "kill", "node": "processor", "when_fired": {"link": "processor-sink",
                                                                  "kind": "drop-request"}},
     "belongs on a failpoint step"),
    ({"at": 100, "f": "kill", "node": "broker", "synced": "*"}, "'synced' belongs on a power-loss"),
])
def test_misplaced_or_mistyped_keys_are_refused(step, words):
    with pytest.raises(ScheduleError, match="step 0: .*" + words.replace("(", r"\(")):
        validate_steps([step], "x.json")


def test_the_forms_the_harness_generates_still_pass():
    from harness.nemesis.logical import writes_outstanding_steps

    class Config:
        batch_size = 20
    crash, drop = writes_outstanding_steps({"at": 300, "node": "processor"}, Config)
    validate_steps([crash, drop], "generated")
    validate_steps([FP | {"when_fired": {"link": "processor-2-sink", "kind": "drop-request"}},
                    FP | {"when_fired": {"link": "producer-nats-1", "kind": "reset"}},
                    {"at": 5, "f": "power-loss", "nodes": ["nats"], "synced": "*/_meta_/*"}], "ok")


@pytest.mark.timeout(60)
def test_scenario_run_refuses_a_bad_when_fired_before_starting_a_cluster(tmp_path):
    scenario = {"name": "bad", "title": "t", "incident": "i", "config": {"events": 200},
                "steps": [FP | {"when_fired": "yes"}], "expect": {"at-most-once": {"verdict": "held"}}}
    assert_refused_before_start(tmp_path, scenario, "'when_fired' must be")


def assert_refused_before_start(tmp_path, scenario: dict, words: str) -> None:
    """``scenario run`` of ``scenario``: one stderr line holding ``words``, exit 2, no run dir."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(scenario))
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run", str(path), "--out",
                        str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and words in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("sub", ["remove", "list", "down", "up", "stats"])
def test_fault_help_says_what_producer_broker_means_on_nats(sub):
    """`fault add/remove/list/down/up --link producer-broker` acts on the producer's link to
    every NATS server; every subcommand's --help says so, not only add's."""
    from click.testing import CliRunner

    from harness.cli_fault import fault
    r = CliRunner().invoke(fault, [sub, "--help"], terminal_width=200)
    assert r.exit_code == 0
    assert "link to every server" in " ".join(r.output.split()), r.output


HOLD = {"at": 100, "f": "kill", "node": "processor", "trigger": "failpoint", "until": "next"}


def test_until_next_followed_by_a_step_that_cannot_release_it_is_refused():
    """A builtin broker's failpoint kill does not revive a node held "until": "next": the run
    stalled 10 s and the final heal revived it. Refused, naming both steps."""
    steps = [{"at": 200, "f": "kill", "node": "broker", "trigger": "failpoint"}, HOLD]
    with pytest.raises(ScheduleError, match=r"step 1 holds processor .* next logical step \(0, kill of broker\)"):
        validate_steps(steps, "x.json")


def test_until_next_released_by_a_quiesce_step_or_the_final_heal_passes():
    validate_steps([HOLD, {"at": 400, "f": "kill", "node": "mosquitto", "trigger": "failpoint"}], "m01")
    validate_steps([HOLD, {"at": 150, "f": "pause", "node": "broker", "for_ms": 100},   # timed: no release
                    {"at": 400, "f": "pause", "node": "processor", "trigger": "failpoint", "until": "next"}], "x")
    validate_steps([HOLD], "last")   # the final heal brings it back (docs/brokers.md)


@pytest.mark.parametrize("key", ["after_ms", "kill_after_ms", "down_ms", "for_ms"])
def test_a_duration_beyond_the_cap_is_refused(key):
    from harness.schedule import MAX_STEP_MS
    step = {"at": 10, "f": "pause", "node": "broker", "for_ms": 300} | {key: MAX_STEP_MS + 1}
    with pytest.raises(ScheduleError, match=f"step 0: '{key}' must be an integer in 0..600,000"):
        validate_steps([step], "x.json")
    validate_steps([step | {key: MAX_STEP_MS}], "x.json")


def test_scenario_run_refuses_a_pause_of_years_instead_of_waiting_for_it(tmp_path):
    # Before: {"f": "pause", "for_ms": 99999999999} was accepted and the run waited for the step.
    scenario = {"name": "bad", "title": "t", "incident": "i", "config": {"events": 100},
                "steps": [{"at": 10, "f": "pause", "node": "broker", "for_ms": 99999999999}],
                "expect": {"at-least-once": {"verdict": "held"}}}
    assert_refused_before_start(tmp_path, scenario, "'for_ms' must be an integer in 0..600,000")


@pytest.mark.parametrize("fault, words", [
    (None, "needs 'fault'"),
    ({"kind": "explode"}, "unknown fault kind 'explode'"),
    ({"kind": "drop-response", "probability": 7}, "'probability' must be a number in \\[0, 1\\]"),
    ({"kind": "drop-response", "probability": "half"}, "'probability' must be a number"),
    ({"kind": "drop-response", "count": -3}, "'count' must be an integer >= 0"),
    ({"kind": "drop-response", "count": 1.5}, "'count' must be an integer >= 0"),
    ({"kind": "delay", "delay_ms": 99999999999}, "'delay_ms' must be at most 3,600,000 ms"),
    ({"kind": "late", "hold_ms": 99999999999}, "'hold_ms' must be at most 3,600,000 ms"),
])
def test_a_link_step_fault_the_proxy_would_refuse_is_refused_before_the_run(fault, words):
    # Before: the proxy answered INVALID_ARGUMENT at run time, the step was an `info` op and
    # the run went on without it: "NOT as expected ... not-exercised", exit 1.
    step = {"at": 10, "f": "link", "link": "producer-broker", "for_ms": 100}
    if fault is not None:
        step["fault"] = fault
    with pytest.raises(ScheduleError, match="step 0: .*" + words):
        validate_steps([step], "x.json")


def test_every_generated_link_step_passes():
    from harness.schedule import FAULT_KINDS, generate
    for kind in FAULT_KINDS:
        try:
            schedule = generate(1, 3000, (kind,))
        except ScheduleError:
            continue        # a kind that needs another broker or option
        validate_steps(schedule["steps"], kind)
