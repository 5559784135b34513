"""The leaderless window of a logical NATS leader kill replays exactly (harness/nemesis/window.py).

n02 at-most-once twice with the same seed: each kill fired on the server that led every
stream (nats-2, harness/nats_leaders.py), the producer sent exactly its 5 batches while no
partition's stream had a leader, the others elected new leaders and the leaders were put
back; then the loss is the windows' orders, the same in both runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "n02-jetstream-leader-kill"


def run_n02(out: Path) -> tuple[dict, list[dict]]:
    r = subprocess.run([sys.executable, "-m", "harness.cli", "scenario", "run", SCENARIO, "--mode", "at-most-once",
                        "--quiet", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (entry,) = json.loads((out / "latest" / "result.json").read_text())["modes"]
    ops = [json.loads(line) for line in (out / "latest" / entry["dir"] / "nemesis.jsonl").read_text().splitlines()]
    return entry, [op["value"] for op in ops if op["f"] == "kill" and op["type"] == "ok"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_n02_leaderless_window_replays_exactly(tmp_path):
    outcomes = []
    for i in (1, 2):
        entry, kills = run_n02(tmp_path / f"run{i}")
        assert len(kills) == 2
        for kill in kills:   # the fault fired where intended, before any verdict is looked at
            assert kill["server"] == "nats-2" and kill["exit_code"] == -9 and kill["quiesce"]["paused"]
            w = kill["window"]
            assert w["batches"] == 5 and w["held"] and w["in_flight"] == 0
            assert w["leaderless"] == ["orders-0", "orders-1", "orders-2", "orders-3"]
            led = kill["leaders"]
            assert led["elected"]["ok"] and "nats-2" not in led["elected"]["leaders"].values()
            assert led["placed"]["ok"] and set(led["placed"]["leaders"].values()) == {"nats-2"}
        assert entry["as_expected"], entry["mismatches"]
        outcomes.append({n: a["count"] for n, a in entry["anomalies"].items()} | {"verdict": entry["verdict"]})
    assert outcomes[0] == outcomes[1]
    assert outcomes[0]["lost"] == 2 * 5 * 20 and outcomes[0].get("duplicated", 0) == 0
