"""Campaigns through the real CLI: verdicts per mode, replay, bad input, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def latest_result(out: Path) -> dict:
    return json.loads((out / "latest" / "result.json").read_text())


@pytest.mark.timeout(420)
def test_default_campaign_shows_each_modes_promise(default_campaign):
    """The default schedule (kills + link faults), every mode: at-most-once
    loses but never duplicates, at-least-once duplicates but never loses,
    exactly-once does neither with exact balances (tests/conftest.py DEFAULT_CAMPAIGN)."""
    run_dir, r = default_campaign
    assert r.returncode == 0, r.stdout + r.stderr
    modes = {(m["mode"], m["sink"]): m for m in json.loads((run_dir / "result.json").read_text())["modes"]}
    amo, alo = modes[("at-most-once", None)], modes[("at-least-once", None)]
    assert amo["verdict"] == "held" and amo["lost"] > 0 and amo["duplicated"] == 0
    assert alo["verdict"] == "held" and alo["duplicated"] > 0 and alo["lost"] == 0
    for sink in ("idempotent", "transactional"):
        eo = modes[("exactly-once", sink)]
        assert eo["verdict"] == "held", eo
        assert eo["lost"] == eo["duplicated"] == 0 and eo["balance_ok"]
        assert eo["faults_fired"] >= 6
    assert "held" in r.stdout and "result:" in r.stdout


@pytest.mark.slow   # ~21 s; exact replay is also checked by tests/test_exact_replay.py in the default suite
@pytest.mark.timeout(300)
def test_replay_reproduces_verdicts_and_counts(tmp_path):
    r = run_cli("campaign", "--mode", "at-least-once", "--events", "1500", "--seed", "5",
                "--faults", "drop-response,drop-request", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    first = latest_result(tmp_path)["modes"][0]
    assert first["duplicated"] > 0
    run_dir = (tmp_path / "latest").resolve()
    r2 = run_cli("replay", str(run_dir), "--quiet")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "replay matches" in r2.stdout
    again = latest_result(tmp_path)
    assert again["replay_of"] == str(run_dir)
    assert again["modes"][0]["duplicated"] == first["duplicated"]


@pytest.mark.timeout(300)
def test_disabled_dedupe_is_caught_as_broken(tmp_path):
    """Negative control: exactly-once without broker dedupe under a lost ACK
    must be reported broken: duplicates in the log, a wrong operator state."""
    r = run_cli("campaign", "--mode", "exactly-once", "--sink", "idempotent", "--events", "1500",
                "--faults", "drop-response", "--disable", "broker-dedupe", "--quiet", "--out", str(tmp_path))
    assert r.returncode == 1, r.stdout + r.stderr
    m = latest_result(tmp_path)["modes"][0]
    assert m["verdict"] == "broken"
    # The idempotent sink applies each order once, but the log holds the retried
    # batches twice and the operator state counted them twice.
    assert m["duplicated"] == 0
    assert m["anomalies"]["duplicated-in-log"]["count"] > 0
    assert m["anomalies"]["state-mismatch"]["count"] > 0


@pytest.mark.parametrize("args,needle", [
    (["campaign", "--mode", "twice"], "twice"),
    (["campaign", "--events", "0"], "must be between 1 and"),
    (["campaign", "--events", "99999999999"], "must be between 1 and"),
    (["campaign", "--faults", ","], "empty fault list"),
    (["campaign", "--faults", "meteor"], "unknown fault 'meteor'"),
    (["campaign", "--disable", "gravity"], "unknown ablation 'gravity'"),
    (["campaign", "--out", "/proc/forbidden"], "cannot create a run directory"),
    (["audit", "/tmp"], "not a campaign run directory"),
    (["replay", "/tmp"], "not a campaign run directory"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = run_cli(*args, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert needle in r.stderr


def test_audit_of_a_run_missing_files_exits_2(tmp_path):
    run = tmp_path / "run"
    (run / "at-least-once").mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"seed": 1, "modes": [
        {"mode": "at-least-once", "sink": None, "dir": "at-least-once"}]}))
    r = run_cli("audit", str(run), timeout=60)
    assert r.returncode == 2 and "not a run directory" in r.stderr, r.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_every_process_and_leaves_a_readable_run(tmp_path, sig, code):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "campaign", "--mode", "at-least-once",
                             "--events", "200000", "--rate", "2000", "--quiet", "--out", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the producer to appear in the manifest
        m = tmp_path / "latest" / "at-least-once" / "cluster.json"
        if m.exists():
            try:
                data = json.loads(m.read_text())
            except ValueError:
                data = {}
            if "producer" in data.get("nodes", {}):
                manifest = data
                break
        proc.poll()
        assert proc.returncode is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)  # polling a file the campaign writes, bounded by the deadline
    assert manifest is not None, "the campaign never started its producer"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    assert pids and not [p for p in pids if pid_alive(p)]
    result = latest_result(tmp_path)
    assert result["complete"] is False
    assert (tmp_path / "latest" / "schedule.json").exists()


def test_replay_comparison_separates_verdicts_from_timed_counts():
    from harness.cli_campaign import compare_runs, timed_steps
    old = {"modes": [{"mode": "at-least-once", "sink": None, "verdict": "held", "balance_ok": False,
                      "lost": 0, "lost_acknowledged": 0, "duplicated": 153}]}
    same_verdict = {"modes": [dict(old["modes"][0], duplicated=140)]}
    other_verdict = {"modes": [dict(old["modes"][0], verdict="broken", lost=3)]}
    assert compare_runs(old, old) == ([], [])
    assert compare_runs(old, same_verdict) == ([], ["at-least-once: duplicated 153 -> 140"])
    v, c = compare_runs(old, other_verdict)
    assert v == ["at-least-once: verdict held -> broken, lost 0 -> 3"] and c == []
    sched = {"steps": [{"at": 0, "arm": True, "f": "link", "link": "producer-broker"},
                       {"at": 500, "f": "kill", "node": "processor"}]}
    assert timed_steps(sched) == ["kill processor at 500"]
