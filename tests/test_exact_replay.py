"""Exact replay with logical triggers (harness/nemesis/logical.py), and explore.

One replay test per kind of logical trigger: a kill at a failpoint's Nth hit
(the broker's, whose hits are a pure function of the workload) and a link
fault at a proxy's Nth matching call. Each asserts the fault fired where
intended, then that the replay's anomaly counts are identical.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import schedule as schedule_mod
from harness.nemesis.logical import expand, point_for

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def history(mode_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (mode_dir / "nemesis.jsonl").read_text().splitlines() if line]


def cfg(mode: str, sink: str | None = None, disabled=()) -> SimpleNamespace:
    return SimpleNamespace(mode=mode, sink_strategy=sink, disabled=list(disabled), batch_size=100)


def test_generate_marks_logical_kills_and_timed_steps():
    s = schedule_mod.generate(1, 3000)
    kills = [st for st in s["steps"] if st["f"] == "kill"]
    assert {st["node"] for st in kills} == {"producer", "broker", "processor"}
    assert all(st.get("trigger") == "failpoint" and not st.get("timed") for st in kills)
    others = [st for st in s["steps"] if not st.get("arm") and st not in kills]
    assert others and all(st.get("timed") for st in others)  # the pause, the sink link fault
    old = schedule_mod.generate(1, 3000, logical=False)
    assert not any(st.get("trigger") for st in old["steps"])


def test_points_follow_the_mode_and_the_ablation():
    assert point_for("processor", cfg("at-least-once")) == "processor.after-sink-ack-before-offset-commit"
    assert point_for("processor", cfg("at-least-once", disabled=["commit-after-sink"])) == \
        "processor.after-offset-commit-before-sink"
    assert point_for("processor", cfg("exactly-once", "idempotent")) == "processor.before-checkpoint"
    assert point_for("processor", cfg("exactly-once", "idempotent", ["checkpointing"])) is None
    assert point_for("sink", cfg("exactly-once", "transactional")) == "sink.after-commit-before-reply"
    assert point_for("producer", cfg("at-most-once")) == "producer.after-send-before-ack"
    steps = [{"at": 200, "f": "kill", "node": "processor", "trigger": "failpoint"},
             {"at": 500, "f": "kill", "node": "processor", "trigger": "failpoint"},
             {"at": 300, "f": "kill", "node": "producer", "timed": True}]
    out = expand(steps, cfg("at-least-once"))
    assert out[0]["f"] == "failpoint" and out[0]["nth"] == 2 and not out[0]["chain"]
    assert out[1]["nth"] == 3 and out[1]["chain"]  # counted from the restart after the first crash
    assert out[2] == steps[2]
    timed = expand(steps[:1], cfg("exactly-once", "idempotent", ["checkpointing"]))
    assert timed[0]["f"] == "kill" and timed[0]["timed"]


def _replay_identical(tmp_path: Path, faults: str, evidence) -> None:
    r = cli("campaign", "--mode", "at-least-once", "--events", "400", "--seed", "2", "--faults", faults,
            "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = (tmp_path / "latest").resolve()
    evidence(run_dir / "at-least-once")
    first = json.loads((run_dir / "result.json").read_text())["modes"][0]
    assert first["duplicated"] > 0  # the fault caused something to compare
    r = cli("replay", str(run_dir), "--strict", "--quiet")
    assert r.returncode == 0 and "same verdicts and anomaly counts" in r.stdout, r.stdout + r.stderr
    again = json.loads((tmp_path / "latest" / "result.json").read_text())["modes"][0]
    assert {k: again[k] for k in ("lost", "duplicated", "lost_acknowledged")} == \
        {k: first[k] for k in ("lost", "duplicated", "lost_acknowledged")}
    assert again["anomalies"].keys() == first["anomalies"].keys()
    assert all(again["anomalies"][k]["count"] == a["count"] for k, a in first["anomalies"].items())


@pytest.mark.slow   # ~13 s; the chained producer kills test replays failpoint kills in the default suite
def test_replay_of_a_failpoint_nth_hit_kill_gives_identical_counts(tmp_path):
    """A processor kill at the Nth step (campaign default --fetch-group 25: a step is
    25 records of one partition), twice: the re-delivered groups are the same ones.
    (A broker kill is logical too, but how many of a batch's four concurrent
    partition sends it catches is timing: docs/scenarios.md, "Exact replay".)"""
    def crashed_twice_at_the_processor_failpoint(mode_dir: Path) -> None:
        crashes = [op for op in history(mode_dir) if op["f"] == "failpoint-crash"]
        assert [c["value"]["failpoint"] for c in crashes] == ["processor.after-sink-ack-before-offset-commit"] * 2
        assert any(op["f"] == "failpoint-rearm" for op in history(mode_dir))  # the chained second kill
    _replay_identical(tmp_path, "kill-processor,kill-processor", crashed_twice_at_the_processor_failpoint)


def test_replay_of_a_link_call_count_fault_gives_identical_counts(tmp_path):
    def dropped_two_responses(mode_dir: Path) -> None:
        log = mode_dir / "proxy-producer-broker" / "faults.jsonl"
        fired = [json.loads(line) for line in log.read_text().splitlines()
                 if '"drop-response"' in line and '"control"' not in line]
        assert len([f for f in fired if not f.get("follow_up")]) == 2
    _replay_identical(tmp_path, "drop-response", dropped_two_responses)


@pytest.mark.slow   # ~7 s; tests/test_explore_mixes.py covers explore in the default suite
def test_explore_finds_broker_dedupe_off_and_reports_time_to_detect(tmp_path):
    r = cli("explore", "--disable", "broker-dedupe", "--mode", "exactly-once/idempotent", "--seed-start", "3",
            "--budget", "60s", "--no-shrink", "--events", "400", "--out", str(tmp_path))
    assert r.returncode == 1, r.stdout + r.stderr  # found a broken promise
    summary = json.loads(next(tmp_path.glob("*-explore/explore.json")).read_text())
    found = summary["found"]
    assert found and found["broken"] == ["exactly-once/idempotent"] and found["time_to_detect_s"] > 0
    result = json.loads((Path(found["dir"]) / "result.json").read_text())
    assert "duplicated-in-log" in result["modes"][0]["anomalies"]
    assert "time-to-detect" in r.stdout


def test_replay_of_chained_producer_kills_gives_identical_counts(tmp_path):
    """kill-producer at producer.after-send-before-ack's Nth hit, twice (armed at the
    producer's first start, so its hits count from its first send)."""
    def crashed_twice_at_the_producer_failpoint(mode_dir: Path) -> None:
        crashes = [op for op in history(mode_dir) if op["f"] == "failpoint-crash"]
        assert [c["value"]["failpoint"] for c in crashes] == ["producer.after-send-before-ack"] * 2
        # the second kill is armed in the restart's environment, before the producer's first send
        # (an ArmFailpoint RPC after SERVING raced it: the Nth hit moved by one between runs)
        rearms = [op for op in history(mode_dir) if op["f"] == "failpoint-rearm"]
        assert [op["value"].get("at_start") for op in rearms] == [True]
    _replay_identical(tmp_path, "kill-producer,kill-producer", crashed_twice_at_the_producer_failpoint)


def test_explore_mixes_hold_the_late_commit_and_2pc_kills_and_no_nats_faults():
    from harness.explore import fault_mix
    seen = {k for seed in range(1, 200) for k in fault_mix(seed)}
    assert {"late-commit", "kill-processor-after-checkpoint", "kill-processor-after-commit"} <= seen
    assert not any("-nats-" in k or k.startswith("power-loss") for k in seen)
    assert all("-nats-" in k for seed in range(1, 50) for k in fault_mix(seed, broker="nats")
               if k.endswith(("-leader", "-follower", "-broker")))


def test_late_commit_is_a_held_commit_offset_then_a_processor_kill():
    s = schedule_mod.generate(9, 600, ["late-commit"])
    late, kill = s["steps"]
    assert late["f"] == "link" and late["link"] == "processor-broker" and late["timed"]
    assert late["fault"]["kind"] == "late" and late["fault"]["method"] == "CommitOffset"
    assert kill["f"] == "kill" and kill["node"] == "processor" and kill["at"] == late["at"]
    assert kill["after_ms"] > late["for_ms"]  # the kill comes after the late delivery


def test_2pc_kills_land_on_their_point_in_transactional_only():
    s = schedule_mod.generate(2, 600, ["kill-processor-after-checkpoint", "kill-processor-after-commit"])
    steps = s["steps"]
    assert [st["point"] for st in steps] == ["processor.after-checkpoint-before-commit",
                                             "processor.after-sink-commit"]
    tx = expand(steps, cfg("exactly-once", "transactional"))
    assert [st["name"] for st in tx] == ["processor.after-checkpoint-before-commit", "processor.after-sink-commit"]
    assert tx[1]["chain"]
    # the ablated order never reaches after-checkpoint-before-commit: the usual point instead
    ab = expand(steps, cfg("exactly-once", "transactional", ["2pc-commit-after-checkpoint"]))
    assert [st["name"] for st in ab] == ["processor.before-checkpoint", "processor.after-sink-commit"]
    assert {st["name"] for st in expand(steps, cfg("at-least-once"))} == \
        {"processor.after-sink-ack-before-offset-commit"}


def test_logical_power_loss_pauses_the_producer_at_a_batch_then_quiesces():
    step = {"at": 1000, "f": "power-loss", "nodes": "all", "down_ms": 200, "trigger": "failpoint"}
    c = cfg("at-least-once")
    c.batch_size = 20
    loss, arm = expand([step], c)
    assert arm == {"at": 0, "arm": True, "f": "failpoint", "node": "producer", "action": "pause", "count": 1,
                   "name": "producer.after-ack-before-persist", "nth": 51, "logical": "quiesce"}
    assert loss["f"] == "power-loss" and loss["at"] == 1000 and "trigger" not in loss
    assert loss["quiesce"] == {"node": "producer", "failpoint": "producer.after-ack-before-persist", "nth": 51}
    c.mode = "at-most-once"
    loss, arm = expand([step], c)
    assert arm["name"] == "producer.after-persist-before-send" and arm["nth"] == 50 and loss["at"] == 1000


def test_logical_stops_pause_first_the_next_one_armed_in_the_restart():
    steps = [{"at": 350, "f": "stop", "node": "processor", "down_ms": 300, "trigger": "failpoint"},
             {"at": 700, "f": "stop", "node": "processor", "kill_after_ms": 5, "trigger": "failpoint"}]
    c = cfg("at-least-once")
    c.fetch_group = 25
    first, second, arm = expand(steps, c)
    assert arm["action"] == "pause" and arm["nth"] == 14 and arm["name"] == "processor.after-sink-ack-before-offset-commit"
    assert first["pause_at"]["seq"] == 0 and first["next_pause"] == {"name": arm["name"], "nth": 14}
    assert second["pause_at"] == {"name": arm["name"], "nth": 14, "seq": 1} and "next_pause" not in second
    assert "trigger" in steps[0]  # the schedule itself is left as written
    timed = expand(steps[:1], cfg("exactly-once", "idempotent", ["checkpointing"]))
    assert timed[0]["timed"] and "pause_at" not in timed[0]


async def test_a_sweep_cell_replayed_gives_identical_counts(tmp_path):
    """One cell of the crash-point sweep (harness/sweep.py: record-driven checkpoints, a
    crash at the Nth hit), run twice with the same seed. With the commit-before-checkpoint
    ablation the crash re-applies a committed transaction, so there are counts to compare."""
    from dataclasses import replace

    from harness import sweep
    base = replace(sweep.base_config("transactional", 600, 1, 100), disabled=["2pc-commit-after-checkpoint"])
    cells = [await sweep.run_cell(base, "processor.after-sink-commit", 2, tmp_path / f"run{i}") for i in (1, 2)]
    for c in cells:
        assert c["fired"] == 1  # the crash fired where intended
    assert cells[0]["verdict"] == "broken" and cells[0]["anomalies"].get("duplicated", 0) > 0
    same = ("verdict", "lost", "duplicated", "anomalies")
    assert {k: cells[0][k] for k in same} == {k: cells[1][k] for k in same}


def test_data_dir_steps_pause_first_with_their_own_nth():
    steps = [{"at": 300, "f": "snapshot", "node": "processor", "id": "early", "trigger": "failpoint", "nth": 3},
             {"at": 950, "f": "rollback", "node": "processor", "id": "early", "trigger": "failpoint", "nth": 6}]
    snap, roll, arm = expand(steps, cfg("exactly-once", "transactional"))
    assert arm["name"] == "processor.before-checkpoint" and arm["nth"] == 3 and arm["action"] == "pause"
    assert snap["next_pause"] == {"name": "processor.before-checkpoint", "nth": 6}
    assert roll["pause_at"] == {"name": "processor.before-checkpoint", "nth": 6, "seq": 1}


def test_nats_faults_quiesce_the_producer_chained_by_re_arming():
    steps = [{"at": 1000, "f": "corrupt", "node": "nats", "role": "follower", "trigger": "failpoint"},
             {"at": 1400, "f": "kill", "node": "nats", "role": "leader", "trigger": "failpoint"}]
    c = cfg("at-least-once")
    c.batch_size = 20
    corrupt, kill, arm = expand(steps, c)
    assert arm["nth"] == 51 and arm["action"] == "pause"  # one arming: the first step's
    assert corrupt["quiesce"]["nth"] == 51 and corrupt["quiesce_next"] == {"nth": 20}  # re-armed at release
    assert kill["quiesce"] == {"node": "producer", "failpoint": "producer.after-ack-before-persist", "nth": 71,
                               "seq": 1}


def test_nats_leaderless_window_counts_its_k_batches_in_the_chain():
    """A logical NATS leader kill with ``window_batches`` K (harness.nemesis.window) holds the
    producer once more, K hits after the kill: the next step's re-arm starts K hits later and
    waits for one more firing of the pause."""
    steps = [{"at": 500, "f": "kill", "node": "nats", "role": "leader", "trigger": "failpoint", "window_batches": 5},
             {"at": 1300, "f": "kill", "node": "nats", "role": "leader", "trigger": "failpoint", "window_batches": 5}]
    c = cfg("at-most-once")
    c.batch_size = 20
    first, second, arm = expand(steps, c)
    assert arm["name"] == "producer.after-persist-before-send" and arm["nth"] == 25
    assert first["window_batches"] == 5 and first["quiesce_next"] == {"nth": 65 - 25 - 5}
    assert second["quiesce"]["nth"] == 65 and second["quiesce"]["seq"] == 2   # 2 firings before it
    schedule_mod.validate_steps(steps, "t")
    for bad in ({"at": 1, "f": "kill", "node": "nats", "window_batches": 5},                 # timed
                {"at": 1, "f": "kill", "node": "broker", "trigger": "failpoint", "window_batches": 5},
                {"at": 1, "f": "kill", "node": "nats", "trigger": "failpoint", "window_batches": 0}):
        try:
            schedule_mod.validate_steps([bad], "t")
        except schedule_mod.ScheduleError as e:
            assert "window_batches" in str(e)
        else:
            raise AssertionError(f"accepted {bad}")
