"""Trust in the sweep's own verdicts (issue 10, item 7a), on real processes: a cell
whose crash never fired is ``did-not-fire``, never ``held``; a listed failpoint the
calibration never reached is named and fails the sweep; a failure while listing the
hits is an error, not zero hits."""

from __future__ import annotations

import pytest

import harness.nemesis.failpoint as failpoint_mod
import harness.sweep as sweep
from harness.sweep import DID_NOT_FIRE, base_config, calibrate, run_sweep

REACHED = "processor.before-checkpoint"
UNREACHED = "processor.after-checkpoint-writes-outstanding"  # only with --no-drain-before-checkpoint


@pytest.mark.timeout(120)
async def test_a_crash_that_never_fired_is_not_held_and_unreached_points_fail(tmp_path, monkeypatch):
    # Aim every cell past the last hit the calibration saw: the crash cannot fire.
    monkeypatch.setattr(sweep, "hit_numbers", lambda total: {"late": total + 1000} if total else {})
    r = await run_sweep(tmp_path, sink="idempotent", events=300, checkpoint_records=100,
                        points=(REACHED, UNREACHED), which=("late",))
    assert r["hits"][REACHED] >= 1 and r["hits"][UNREACHED] == 0
    (cell,) = r["cells"]
    assert cell["failpoint"] == REACHED and cell["fired"] == 0
    assert cell["verdict"] == DID_NOT_FIRE and cell["audit_verdict"] == "held"
    assert r["unreachable"] == [UNREACHED]
    assert r["all_held"] is False and r["ok"] is False


@pytest.mark.timeout(120)
async def test_a_failure_while_listing_the_hits_is_an_error(tmp_path, monkeypatch):
    async def broken(address, timeout_s=5.0):
        raise RuntimeError("listing refused")
    monkeypatch.setattr(failpoint_mod, "list_failpoints", broken)
    with pytest.raises(RuntimeError, match="could not list the failpoint hits.*listing refused"):
        await calibrate((REACHED,), base_config("idempotent", 200, 1, 100), tmp_path)
