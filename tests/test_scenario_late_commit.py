"""s12-late-offset-commit (incident 9) end to end: the late commit fires, then the verdict.

With every mechanism on, the late CommitOffset reaches the broker after newer
commits and is kept out (broker log), so the restarted processor re-reads
nothing. With ``--disable offset-commit-monotonic`` the same late commit sets
the group back and at-most-once re-applies what it had processed: duplicated.
Exactly-once does not depend on the rule (it restarts from its checkpoint).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness import scenarios
from harness.scenarios.runner import run_scenario
from nodes.proxy.history import read_history

pytestmark = pytest.mark.timeout(120)
NAME = "s12-late-offset-commit"


def late_records(mode_dir: Path) -> list[dict]:
    """The late fault's records on the processor->broker link."""
    return [r for r in read_history(mode_dir / "proxy-processor-broker" / "faults.jsonl")
            if r.get("fault") == "late"]


def assert_late_commit_fired(mode_dir: Path) -> None:
    recs = late_records(mode_dir)
    assert [r["action"] for r in recs] == ["held-late", "late-delivered"], recs
    assert recs[0]["method"] == "/testbed.v1.Broker/CommitOffset"
    assert recs[1]["outcome"] == "OK" and recs[1]["released_by"] == "release"


async def test_late_commit_is_kept_out_by_the_broker(tmp_path):
    sc = scenarios.get(NAME)
    result = await run_scenario(sc, tmp_path, modes=["at-most-once"])
    (entry,) = result["modes"]
    mode_dir = tmp_path / entry["dir"]
    assert_late_commit_fired(mode_dir)
    assert "offset commit below the committed offset" in (mode_dir / "broker" / "broker.log").read_text()
    assert entry["faults"].get("late@processor-broker") == 1  # the delivery is not a second firing
    assert entry["verdict"] == "not-exercised" and entry["duplicated"] == 0
    assert entry["as_expected"], entry["mismatches"]


async def test_without_the_rule_at_most_once_duplicates(tmp_path):
    sc = scenarios.get(NAME)
    result = await run_scenario(sc, tmp_path, modes=["at-most-once"], ablation="offset-commit-monotonic")
    (entry,) = result["modes"]
    mode_dir = tmp_path / entry["dir"]
    assert_late_commit_fired(mode_dir)
    assert "offset commit below" not in (mode_dir / "broker" / "broker.log").read_text()
    assert entry["verdict"] == "broken" and entry["duplicated"] >= 1, entry["anomalies"]
    assert entry["as_expected"], entry["mismatches"]


async def test_exactly_once_recovery_does_not_need_the_rule(tmp_path):
    sc = scenarios.get(NAME)
    held = {"verdict": "held"}
    sc = dataclasses.replace(sc, ablations={"offset-commit-monotonic": {"exactly-once/idempotent": held}})
    result = await run_scenario(sc, tmp_path, modes=["exactly-once/idempotent"],
                                ablation="offset-commit-monotonic")
    (entry,) = result["modes"]
    assert_late_commit_fired(tmp_path / entry["dir"])
    assert entry["verdict"] == "held", entry["anomalies"]
