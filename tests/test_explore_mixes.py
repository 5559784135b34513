"""explore's random mixes (harness/explore.py) and the schedules generated from them
(harness/schedule.py): consumer-group faults on a group only, the crash at a checkpoint with
sink writes outstanding, and logical triggers for stops and power losses. No processes, but
for one campaign of the writes-outstanding kill (about 10 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import schedule as schedule_mod
from harness.explore import fault_mix
from harness.nemesis.group import schedule_problem
from harness.nemesis.logical import WRITES_OUTSTANDING, expand, point_for

GROUP = set(schedule_mod.GROUP_FAULT_KINDS)
ROOT = Path(__file__).resolve().parent.parent


def cfg(mode: str, sink: str | None = None, disabled=(), processors: int = 1) -> SimpleNamespace:
    return SimpleNamespace(mode=mode, sink_strategy=sink, disabled=list(disabled), batch_size=100,
                           fetch_group=25, processors=processors)


def test_group_faults_join_the_mixes_on_a_consumer_group_only():
    one = {k for seed in range(1, 300) for k in fault_mix(seed)}
    two = {k for seed in range(1, 300) for k in fault_mix(seed, processors=2)}
    assert not one & GROUP
    assert GROUP <= two and "kill-processor-writes-outstanding" in one
    for broker in ("nats", "mosquitto"):   # no group coordinator there: never
        assert not {k for seed in range(1, 100) for k in fault_mix(seed, broker=broker, processors=2)} & GROUP


def test_a_group_mix_generates_steps_a_two_member_group_can_run():
    seen = set()
    for seed in range(1, 200):
        mix = fault_mix(seed, processors=2)
        steps = schedule_mod.generate(seed, 600, mix)["steps"]
        schedule_mod.validate_steps(steps, f"seed {seed}")
        assert schedule_problem(steps, 2, "builtin") is None, (seed, mix)
        seen |= {s["f"] for s in steps}
    assert {"zombie", "add-processor"} <= seen


def test_zombie_is_armed_from_the_start_at_its_nth_hit_and_member_kills_are_logical():
    logical, _ = schedule_mod.generate(5, 600, ["zombie", "kill-processor-2"])["steps"]
    assert logical["release"] == "drained" and logical["trigger"] == "failpoint" and logical["at"] > 0
    assert "after_ms" not in logical and not logical.get("timed")   # harness.nemesis.zombie_release
    # with the producer killed (its restart drops the hold's arming), or --timed-kills: the timed form
    zombie, _, _ = schedule_mod.generate(5, 600, ["zombie", "kill-processor-2", "kill-producer"])["steps"]
    assert zombie == schedule_mod.generate(5, 600, ["zombie", "kill-processor-2", "kill-producer"],
                                           logical=False)["steps"][0]
    kill = schedule_mod.generate(5, 600, ["zombie", "kill-processor-2"])["steps"][1]
    assert zombie["f"] == "zombie" and zombie["at"] == 0 and zombie["nth"] >= 1 and zombie["timed"]
    assert zombie["node"] in ("processor", "processor-2") and zombie["trigger"] == "failpoint"
    # its pause is armed before the workload, so its Nth hit counts from the member's first record
    waits, arm = expand([zombie], cfg("exactly-once", "transactional", processors=2))
    assert waits["f"] == "zombie" and waits["armed_at_start"] and "trigger" not in waits
    assert waits["timed"]   # released after_ms after the rebalance: a clock decides (zombie_release is logical)
    assert arm == {"at": 0, "arm": True, "f": "failpoint", "node": zombie["node"], "action": "pause", "count": 1,
                   "name": "processor.member-before-output", "nth": zombie["nth"], "logical": "zombie"}
    assert expand([{k: v for k, v in zombie.items() if k != "trigger"}], cfg("at-most-once")) == \
        [{k: v for k, v in zombie.items() if k != "trigger"} | {"timed": True}]   # armed when the step runs
    assert kill == {**kill, "f": "kill", "node": "processor-2", "trigger": "failpoint"} and "timed" not in kill
    (armed,) = expand([kill], cfg("at-most-once", processors=2))
    assert armed["node"] == "processor-2" and armed["name"] == "processor.after-offset-commit-before-sink"
    assert armed["action"] == "crash" and armed["logical"] == "kill"
    assert schedule_problem([zombie], 1, "builtin")   # refused without a group


def test_writes_outstanding_kill_lands_there_only_with_drain_before_checkpoint_off():
    (step,) = schedule_mod.generate(3, 600, ["kill-processor-writes-outstanding"])["steps"]
    assert step["point"] == WRITES_OUTSTANDING and step["trigger"] == "failpoint"
    ablated = cfg("exactly-once", "idempotent", ["drain-before-checkpoint"])
    crash, drop = expand([step], ablated)
    # s04's story from two logical triggers: the Kth Upsert dropped (and its retries), then a
    # crash at the first checkpoint taken with writes outstanding after that drop fired
    assert drop["arm"] and drop["link"] == "processor-sink" and drop["fault"]["kind"] == "drop-request"
    assert drop["fault"]["method"] == "Upsert" and drop["fault"]["after_calls"] == max(1, step["at"] // 100)
    assert crash["name"] == WRITES_OUTSTANDING and crash["nth"] == 1 and crash["action"] == "crash"
    assert crash["when_fired"] == {"link": "processor-sink", "kind": "drop-request"} and not crash.get("arm")
    # with the mechanism on the point is never reached: the mode's usual processor kill instead
    assert expand([step], cfg("exactly-once", "idempotent"))[0]["name"] == "processor.before-checkpoint"
    assert expand([step], cfg("exactly-once", "transactional", ["drain-before-checkpoint"]))[0]["name"] \
        == "processor.before-checkpoint"
    assert expand([step], cfg("at-least-once", None, ["drain-before-checkpoint"]))[0]["name"] \
        == "processor.after-sink-ack-before-offset-commit"
    assert point_for("processor", cfg("exactly-once", "idempotent", ["drain-before-checkpoint"], processors=2),
                     WRITES_OUTSTANDING) == "processor.before-checkpoint"   # a member checkpoints in the sink


def test_generated_stops_and_power_losses_are_logical_unless_a_kill_shares_the_point():
    steps = schedule_mod.generate(1, 600, ["stop-processor", "stop-sink", "stop-broker", "stop-producer",
                                           "pause-processor"])["steps"]
    by = {(s["f"], s["node"]): s for s in steps}
    for node in ("processor", "sink", "broker"):
        assert by[("stop", node)]["trigger"] == "failpoint" and "timed" not in by[("stop", node)]
    assert by[("stop", "producer")]["timed"] and by[("pause", "processor")]["timed"]   # no trigger for these
    expanded = expand(steps, cfg("at-least-once"))
    assert {s["node"] for s in expanded if s.get("logical") == "stop" and s["f"] == "stop"} == \
        {"processor", "sink", "broker"}
    # a logical kill of the processor arms its point with a crash: its stop stays timed
    mixed = schedule_mod.generate(1, 600, ["stop-processor", "kill-processor", "stop-sink"])["steps"]
    stop_p = next(s for s in mixed if s["f"] == "stop" and s["node"] == "processor")
    stop_s = next(s for s in mixed if s["f"] == "stop" and s["node"] == "sink")
    assert stop_p["timed"] and "trigger" not in stop_p and stop_s["trigger"] == "failpoint"
    # the 2PC / writes-outstanding kills crash the processor at a point too
    assert schedule_mod.generate(1, 600, ["stop-processor", "kill-processor-writes-outstanding"])["steps"][0]["timed"]
    (loss,) = schedule_mod.generate(2, 600, ["power-loss-all"])["steps"]
    assert loss["trigger"] == "failpoint" and "timed" not in loss
    assert expand([loss], cfg("at-least-once"))[0]["quiesce"]["node"] == "producer"
    # a producer kill restarts it without the quiesce pause's arming: that power loss stays timed
    killed = schedule_mod.generate(2, 600, ["power-loss-broker", "kill-producer"])["steps"]
    assert killed[0]["f"] == "power-loss" and killed[0]["timed"]
    assert schedule_mod.generate(2, 600, ["stop-processor"], logical=False)["steps"][0]["timed"]


@pytest.mark.timeout(120)
def test_writes_outstanding_kill_breaks_drain_before_checkpoint_off(tmp_path):
    """One campaign (exactly-once/idempotent, 600 orders): the Kth Upsert dropped with its
    retries, then the crash at the first checkpoint taken while it is outstanding; the
    checkpoint's offsets cover the dropped write, so the restart skips it: lost."""
    r = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--mode", "exactly-once", "--sink",
                        "idempotent", "--events", "600", "--seed", "3", "--faults",
                        "kill-processor-writes-outstanding", "--disable", "drain-before-checkpoint",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert r.returncode == 1, r.stdout + r.stderr   # broken
    (mode_dir,) = [d for d in next(tmp_path.glob("2*")).iterdir() if (d / "nemesis.jsonl").exists()]
    ops = [json.loads(line) for line in (mode_dir / "nemesis.jsonl").read_text().splitlines() if line]
    armed = [op for op in ops if op["f"] == "failpoint" and op["type"] == "ok" and op["value"].get("when_fired")]
    assert armed and armed[0]["value"]["when_fired"]["kind"] == "drop-request"   # armed after the drop fired
    crashes = [op["value"]["failpoint"] for op in ops if op["f"] == "failpoint-crash"]
    assert crashes == [WRITES_OUTSTANDING]   # and crashed where intended
    result = json.loads((mode_dir.parent / "result.json").read_text())
    (mode,) = result["modes"]
    assert mode["verdict"] == "broken" and mode["lost"] > 0 and mode["duplicated"] == 0
