"""A fidelity pass goes on past a cluster that did not start (recorded as an error, not
identical), except at its very first run (harness/scenarios/fidelity.py). Two passes of
the catalog ended at one "address already in use" 20 and 12 minutes in."""

from __future__ import annotations

import pytest

from harness import scenarios
from harness.process import NodeStartError
from harness.scenarios import fidelity


def _result(sc, ablation):
    modes = []
    for label in sc.expectations(ablation):
        mode, _, sink = label.partition("/")
        modes.append({"mode": mode, "sink": sink or None, "verdict": "held", "balance_ok": True,
                      "anomalies": {"duplicated": {"count": 3}}})
    return {"modes": modes}


async def test_a_later_start_failure_is_recorded_and_the_pass_goes_on(tmp_path, monkeypatch):
    calls = []

    async def fake_run(sc, run_dir, ablation=None, progress=None):
        calls.append(run_dir.name)
        if len(calls) == 2:
            raise NodeStartError("nats-3 not healthy: bind: address already in use")
        return _result(sc, ablation)
    monkeypatch.setattr(fidelity, "run_scenario", fake_run)
    scs = [scenarios.get("s07-offsets-committed-before-processing"), scenarios.get("s09-lost-request-producer-retry")]
    r = await fidelity.measure(scs, tmp_path, runs=2)
    assert len(calls) == 4                                       # it went on to the second scenario
    first = [row for row in r["rows"] if row["scenario"] == scs[0].name]
    assert first and not any(row["identical"] for row in first)
    assert all(row["outcomes"][1]["verdict"] == "error" and "address already in use" in row["outcomes"][1]["error"]
               for row in first)
    assert all(row["identical"] for row in r["rows"] if row["scenario"] == scs[1].name)


async def test_the_first_runs_failure_is_raised(tmp_path, monkeypatch):
    async def fake_run(sc, run_dir, ablation=None, progress=None):
        raise NodeStartError("nats-server not found")
    monkeypatch.setattr(fidelity, "run_scenario", fake_run)
    with pytest.raises(NodeStartError, match="not found"):
        await fidelity.measure([scenarios.get("s07-offsets-committed-before-processing")], tmp_path, runs=2)
