"""NATS JetStream as the log under test (--broker nats): real 3-server clusters on loopback.

The fast test runs one no-fault exactly-once campaign end to end (servers started and
ended by pid, streams created, audit from the stream dump); the others (slow) run every
mode, and each NATS scenario of the catalog, asserting that the fault FIRED on the server
it was aimed at before looking at the verdict.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checker.divergent import check_divergent
from harness.checker.inputs import RunData
from harness.nemesis.corrupt import flip_bytes
from harness.schedule import ScheduleError, step_for, validate_steps

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def latest(out: Path) -> dict:
    return json.loads((out / "latest" / "result.json").read_text())


def nemesis_ops(mode_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (mode_dir / "nemesis.jsonl").read_text().splitlines() if line.strip()]


# ----- units: no process ----------------------------------------------------------------------

def test_divergent_reports_replicas_that_disagree():
    same = {"messages": 5, "first_seq": 1, "last_seq": 5}
    data = RunData(mode="at-least-once", workload={})
    data.replicas = {"nats-1": {"0": same, "1": same}, "nats-2": {"0": same, "1": same},
                     "nats-3": {"0": {"messages": 3, "first_seq": 1, "last_seq": 5}, "1": same}}
    a = check_divergent(data)
    assert a.count == 1 and a.examples[0].startswith("p0: ") and "nats-3=3/1-5" in a.examples[0]
    data.replicas["nats-3"]["0"] = same
    assert check_divergent(data).count == 0


def test_nats_steps_validate_and_generate():
    step = step_for("kill-nats-leader", 100, random.Random(1))
    assert step["node"] == "nats" and step["role"] == "leader" and step["f"] == "kill"
    assert step_for("pause-nats-leader", 100, random.Random(1))["for_ms"] > 0
    validate_steps([step, {"at": 5, "f": "corrupt", "node": "nats", "role": "follower"}], "t")
    with pytest.raises(ScheduleError, match="role"):
        validate_steps([{"at": 1, "f": "kill", "node": "nats", "role": "boss"}], "t")
    with pytest.raises(ScheduleError, match="role"):
        validate_steps([{"at": 1, "f": "kill", "node": "broker", "role": "leader"}], "t")


def test_flip_bytes_is_seeded_and_skips_the_header(tmp_path):
    f = tmp_path / "1.blk"
    f.write_bytes(bytes(100))
    offsets = flip_bytes(f, 4, random.Random(7))
    data = f.read_bytes()
    assert len(offsets) == 4 and all(o >= 8 for o in offsets)
    assert [i for i, b in enumerate(data) if b == 0xFF] == offsets
    f.write_bytes(bytes(100))
    assert flip_bytes(f, 4, random.Random(7)) == offsets


# ----- real clusters --------------------------------------------------------------------------

@pytest.mark.slow   # ~9 s; the leader-kill test runs the NATS pipeline in the default suite
@pytest.mark.timeout(180)
def test_nats_exactly_once_no_fault_run(tmp_path):
    """A 3-server JetStream cluster, exactly-once (Nats-Msg-Id dedupe, idempotent sink), no fault:
    every order applied once, balances exact; the audit read the streams from the dump, and
    every server reported its replica of every partition, all equal."""
    r = run_cli("campaign", "--broker", "nats", "--mode", "exactly-once", "--sink", "idempotent",
                "--faults", "none", "--events", "300", "--seed", "2", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    entry = latest(tmp_path)["modes"][0]
    assert entry["verdict"] == "held" and entry["lost"] == 0 and entry["duplicated"] == 0
    assert entry["balance_ok"] and entry["acked"] == 300
    mode_dir = tmp_path / "latest" / entry["dir"]
    dump = json.loads((mode_dir / "broker" / "nats-streams.json").read_text())
    assert sum(len(rows) for rows in dump["partitions"].values()) == 300
    assert sorted(dump["replicas"]) == ["nats-1", "nats-2", "nats-3"]
    assert all(len(parts) == 4 for parts in dump["replicas"].values())
    cluster = json.loads((mode_dir / "cluster.json").read_text())
    assert cluster["config"]["broker"] == "nats" and set(cluster["nats"]["servers"]) == {"nats-1", "nats-2", "nats-3"}
    assert "divergent" not in entry["anomalies"]


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode,sink", [("at-most-once", "both"), ("at-least-once", "both"),
                                       ("exactly-once", "transactional")])
def test_nats_no_fault_run_per_mode(tmp_path, mode, sink):
    r = run_cli("campaign", "--broker", "nats", "--mode", mode, "--sink", sink, "--faults", "none",
                "--events", "300", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    entry = latest(tmp_path)["modes"][0]
    assert entry["lost"] == 0 and entry["duplicated"] == 0 and entry["balance_ok"]
    assert entry["verdict"] in ("held", "not-exercised")


def run_scenario(tmp_path: Path, name: str, *extra: str) -> dict:
    r = run_cli("scenario", "run", name, "--quiet", "--out", str(tmp_path), *extra, timeout=900)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return latest(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_n02_leader_kill_fires_on_the_leader_and_is_as_expected(tmp_path):
    res = run_scenario(tmp_path, "n02-jetstream-leader-kill")
    for entry in res["modes"]:
        kills = [op for op in nemesis_ops(tmp_path / "latest" / entry["dir"])
                 if op["f"] == "kill" and op["type"] == "ok"]
        assert len(kills) == 2 and all(op["value"]["server"].startswith("nats-") for op in kills)
        assert entry["as_expected"], entry["mismatches"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_n03_minority_corruption_fires_and_is_as_expected(tmp_path):
    res = run_scenario(tmp_path, "n03-jetstream-minority-corruption")
    for entry in res["modes"]:
        ops = nemesis_ops(tmp_path / "latest" / entry["dir"])
        corrupt = [op for op in ops if op["f"] == "corrupt" and op["type"] == "ok"]
        assert corrupt and corrupt[0]["value"]["files"], corrupt
        assert entry["as_expected"], entry["mismatches"]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("sync", ["default", "always"])
def test_n01_power_loss_is_as_expected(tmp_path, sync):
    from harness.storage import fuse_missing
    if fuse_missing():
        pytest.skip(f"lazy storage unavailable: {fuse_missing()}")
    name = "n01-jetstream-lazy-fsync-power-loss" if sync == "default" else "n01b-jetstream-fsync-always-power-loss"
    res = run_scenario(tmp_path, name)
    for entry in res["modes"]:
        ops = nemesis_ops(tmp_path / "latest" / entry["dir"])
        loss = [op for op in ops if op["f"] == "power-loss" and op["type"] == "ok"]
        assert loss and set(loss[0]["value"]["nodes"]) == {"nats-1", "nats-2", "nats-3"}
        # every server got its streams back (issue 15: the lazy fs once lost the meta layer's
        # assignments on some servers, and a run stalled or broke by the meta leader's luck)
        assert loss[0]["value"]["streams_back"]["ok"], loss[0]["value"]["streams_back"]
        assert entry["as_expected"], entry["mismatches"]
        if sync == "default":   # every acknowledged message gone, the streams re-numbered
            assert entry["verdict"] == "broken" and entry["anomalies"]["lost-from-log"]["count"] == 1020
            assert set(loss[0]["value"]["synced"]) == {"nats-1", "nats-2", "nats-3"}


@pytest.mark.timeout(180)
def test_nats_leader_kill_fires_and_at_least_once_loses_nothing(tmp_path):
    """kill -9 of the stream leader (asked of the servers' /jsz) mid-workload: the step fired on
    a NATS server (SIGKILL, restarted under a new pid), and at-least-once lost nothing."""
    r = run_cli("campaign", "--broker", "nats", "--mode", "at-least-once", "--faults", "kill-nats-leader",
                "--events", "600", "--seed", "4", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    entry = latest(tmp_path)["modes"][0]
    (kill,) = [op["value"] for op in nemesis_ops(tmp_path / "latest" / entry["dir"])
               if op["f"] == "kill" and op["type"] == "ok"]
    assert kill["role"] == "leader" and kill["server"] in ("nats-1", "nats-2", "nats-3")
    assert kill["exit_code"] == -9 and kill["new_pid"] != kill["killed_pid"]
    assert entry["lost"] == 0 and entry["verdict"] in ("held", "not-exercised")
    assert "lost-from-log" not in entry["anomalies"]
