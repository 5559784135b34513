"""The crash-point sweep on real processes: every failpoint an exactly-once run
reaches, crashed at its 1st, middle and last hit, must leave the promise held.

The default run sweeps the idempotent sink; the transactional sink is @slow.
"""

from __future__ import annotations

import json

import pytest

from harness.sweep import SWEEP_POINTS, hit_numbers, run_sweep


def test_hit_numbers():
    assert hit_numbers(0) == {}
    assert hit_numbers(1) == {"first": 1}
    assert hit_numbers(2) == {"first": 1, "late": 2}
    assert hit_numbers(5) == {"first": 1, "middle": 3, "late": 4}
    assert hit_numbers(26) == {"first": 1, "middle": 13, "late": 20}


def _check(result: dict, sink: str) -> None:
    assert result["complete"] and result["sink"] == sink
    # The processor and sink points are reached in every exactly-once run (broker points
    # only once the broker has its call sites; an unreached point has no cells).
    for point in ("processor.before-checkpoint", f"sink.after-{'upsert-before-reply' if sink == 'idempotent' else 'pre-commit'}"):
        assert result["hits"][point] >= 2, result["hits"]
    cells = result["cells"]
    assert cells
    bad = [(c["failpoint"], c["nth"], c["verdict"], c["reasons"]) for c in cells if c["verdict"] != "held"]
    assert not bad, bad
    first = [c for c in cells if c["which"] == "first"]
    assert first and all(c["fired"] == 1 for c in first)  # the crash really happened
    assert result["all_held"]


@pytest.mark.slow   # ~90 s; tests/test_sweep_trust.py and test_exact_replay's sweep cell stay in the default suite
@pytest.mark.timeout(400)
async def test_sweep_idempotent_sink_all_held(tmp_path):
    # Every reachable point, at its first and a late hit (the middle hits: --all, below).
    result = await run_sweep(tmp_path, sink="idempotent", events=1000, checkpoint_records=200,
                             which=("first", "late"))
    _check(result, "idempotent")
    assert json.loads((tmp_path / "sweep.json").read_text())["all_held"] is True
    assert {c["failpoint"] for c in result["cells"]} >= {"processor.before-checkpoint",
                                                         "sink.after-upsert-before-reply"}


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_sweep_idempotent_sink_middle_hits_held(tmp_path):
    result = await run_sweep(tmp_path, sink="idempotent", events=1000, checkpoint_records=200,
                             which=("middle",))
    assert result["cells"] and all(c["verdict"] == "held" for c in result["cells"]), result["cells"]


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_sweep_transactional_sink_all_held(tmp_path):
    result = await run_sweep(tmp_path, sink="transactional", events=1000, checkpoint_records=200)
    _check(result, "transactional")
    reached = {c["failpoint"] for c in result["cells"]}
    assert reached >= set(p for p in SWEEP_POINTS["transactional"] if not p.startswith("broker."))


def test_sweep_cli_usage_errors():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    for args, needle in ((["--events", "0"], "must be > 0"), (["--failpoint", "nope.x"], "nope.x"),
                         (["--mode", "at-least-once"], "at-least-once")):
        r = subprocess.run([sys.executable, "-m", "harness.cli", "sweep", *args], cwd=root,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
