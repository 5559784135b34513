"""explore on a consumer group (harness/explore.py, harness/cli_shrink.py): with
``--disable generation-fencing`` it runs two processors, finds the zombie consumer's
duplicates from a random mix, shrinks the find to at most two steps, and the shrunk
scenario, run on its own, is broken the same way (issue 15). About two minutes: slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_explore_finds_generation_fencing_off_and_the_shrunk_scenario_breaks_the_same_way(tmp_path):
    r = cli("explore", "--disable", "generation-fencing", "--mode", "exactly-once/transactional",
            "--seed-start", "8", "--budget", "60s", "--shrink-budget", "4m", "--out", str(tmp_path), "-q",
            cwd=ROOT)
    assert r.returncode == 1, r.stdout + r.stderr   # found
    assert "each trial runs 2 processors" in r.stdout
    summary = json.loads(next(tmp_path.glob("*-explore/explore.json")).read_text())
    found = summary["found"]
    assert summary["processors"] == 2 and found["broken"] == ["exactly-once/transactional"]
    assert "zombie" in found["faults"] and found["time_to_detect_s"] > 0
    # the zombie fired where intended in the find: its member paused at member-before-output
    (mode_dir,) = [d for d in Path(found["dir"]).iterdir() if (d / "nemesis.jsonl").exists()]
    ops = [json.loads(line) for line in (mode_dir / "nemesis.jsonl").read_text().splitlines() if line]
    oks = [op for op in ops if op["f"] == "zombie" and op["type"] == "ok"]
    assert oks and oks[0]["value"]["failpoint"] == "processor.member-before-output"
    assert oks[0]["value"]["replaced_by_generation"] > oks[0]["value"]["generation"]

    # the written candidate was replayed twice more (--confirm 2) and broke both times
    assert found["confirmed"] is True and found["confirmations"][-1]["confirmed"] == 2
    shrunk = next(tmp_path.glob("*-explore/shrunk-scenario.json"))
    sc = json.loads(shrunk.read_text())
    assert 1 <= len(sc["steps"]) <= 2 and any(s["f"] == "zombie" for s in sc["steps"])
    assert sc["config"]["processors"] == 2 and sc["config"]["disabled"] == ["generation-fencing"]
    assert sc["expect"] == {"exactly-once/transactional": {"verdict": "broken", "min": {"duplicated": 1}}}

    runs = tmp_path / "replay"
    r = cli("scenario", "run", str(shrunk), "--out", str(runs), cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr   # as expected: broken, duplicated, every step fired
    result = json.loads(next(runs.glob("*/result.json")).read_text())
    (mode,) = result["modes"]
    assert mode["verdict"] == "broken" and mode["anomalies"]["duplicated"]["count"] > 0
    assert mode["as_expected"], mode.get("mismatches")
