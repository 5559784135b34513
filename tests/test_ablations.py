"""Ablations caught: for every switch in harness/ablations.py, a scenario where that
switch alone turns ``held`` into ``broken`` with the anomaly the mechanism prevents.

Each test runs the scenario once, in one mode, with the ablation on (~1,000
events, real processes). It fails if the ablation stops breaking anything (the
flag silently became a no-op, or the mechanism it removes is no longer the only
defence) or if the checker misses the anomaly. The same schedule with every
mechanism on is held: tests/test_scenarios.py runs those controls.
"""

from __future__ import annotations

import pytest

from harness import scenarios
from harness.ablations import ABLATIONS
from harness.scenarios.runner import run_scenario


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
