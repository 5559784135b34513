"""Ablations caught: for every switch in harness/ablations.py, a scenario where that
switch alone turns ``held`` into ``broken`` with the anomaly the mechanism prevents.

Each test runs the scenario once, in one mode, with the ablation on (~1,000
events, real processes). It fails if the ablation stops breaking anything (the
flag silently became a no-op, or the mechanism it removes is no longer the only
defence) or if the checker misses the anomaly. The other half, the same
schedule in the same mode with every mechanism on, keeps the promise: the
default suite runs it for every ablation (below, or in tests/test_scenarios.py's
PER_MODE), one run per (scenario, mode) however many ablations share it.
"""

from __future__ import annotations

import pytest

from harness import scenarios
from harness.ablations import ABLATIONS
from harness.scenarios.runner import run_scenario
from tests.test_scenarios import PER_MODE


def _case(ablation: str) -> tuple[str, str]:
    """(scenario, mode label) that proves ``ablation`` is caught: the first of each."""
    name = scenarios.ablation_coverage()[ablation][0]
    label = next(iter(scenarios.get(name).ablations[ablation]))
    return name, label


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ablation", list(ABLATIONS))
async def test_ablation_turns_held_into_broken(tmp_path, ablation):
    name, label = _case(ablation)
    sc = scenarios.get(name)
    expected = sc.ablations[ablation][label]
    result = await run_scenario(sc, tmp_path, modes=[label], ablation=ablation)
    (entry,) = result["modes"]
    assert entry["verdict"] == "broken", (name, label, entry.get("reasons"))
    for anomaly, n in expected.get("min", {}).items():
        assert entry["anomalies"].get(anomaly, {}).get("count", 0) >= n, (anomaly, entry["anomalies"])
    assert entry["as_expected"], entry["mismatches"]
    assert result["disabled"] == [ablation]


HELD = sorted({_case(a) for a in ABLATIONS} - set(PER_MODE))
"""The held halves not already run by tests/test_scenarios.py (one run per pair)."""


def test_every_ablation_has_its_held_half_in_the_default_suite():
    assert {_case(a) for a in ABLATIONS} <= set(HELD) | set(PER_MODE)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name,label", HELD, ids=[f"{n[:3]}-{l}" for n, l in HELD])
async def test_the_same_schedule_with_every_mechanism_on_keeps_the_promise(tmp_path, name, label):
    sc = scenarios.get(name)
    result = await run_scenario(sc, tmp_path, modes=[label])
    (entry,) = result["modes"]
    assert entry["faults_fired"] >= 1, entry["faults"]  # the fault landed ...
    assert entry["as_expected"], entry["mismatches"]  # ... and the promise held
    assert entry["verdict"] in ("held", "not-exercised") and entry["lost"] == 0
