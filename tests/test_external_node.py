"""Bring your own node: campaigns with a user's processor or sink in place of the built-in one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.checker.external import operator_state, read_sink
from harness.checker.inputs import InputError
from harness.external import ExternalCommandError, node_env, node_flags, parse_command
from harness.history import read_history
from tests.conftest import pid_alive, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SCHEDULE = ROOT / "examples" / "kill-during-sink-write.json"


def campaign(tmp_path: Path, *args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict, Path]:
    r = subprocess.run([PY, "-m", "harness.cli", "campaign", "--quiet", "--out", str(tmp_path), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    result = json.loads((tmp_path / "latest" / "result.json").read_text())
    return r, result, (tmp_path / "latest").resolve()


def assert_killed_mid_write(mode_dir: Path) -> int:
    """The schedule's faults fired: the processor was killed -9 (nemesis.jsonl) while the
    processor->sink link dropped its Apply requests (the proxy's faults.jsonl). Returns the
    killed pid."""
    kills = [op for op in read_history(mode_dir / "nemesis.jsonl") if op["f"] == "kill" and op["type"] == "ok"]
    assert len(kills) == 1 and kills[0]["value"]["node"] == "processor", kills
    v = kills[0]["value"]
    assert v["exit_code"] == -9 and v["new_pid"] != v["killed_pid"] and not v.get("already_dead")
    faults = list(read_history(mode_dir / "proxy-processor-sink" / "faults.jsonl"))
    held = [f for f in faults if f.get("action") == "dropped-request"]
    assert held and min(f["time"] for f in held) < kills[0]["time"]
    assert any(f.get("action") == "dropped-response" for f in faults)
    return v["killed_pid"]


def assert_stopped(mode_dir: Path) -> None:
    manifest = json.loads((mode_dir / "cluster.json").read_text())
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    assert not [p for p in pids if p and pid_alive(p)]


@pytest.mark.timeout(240)
def test_the_correct_example_holds_at_least_once(tmp_path):
    cmd = f"{PY} examples/alo_processor.py"
    r, result, run = campaign(tmp_path, "--mode", "at-least-once", "--schedule", str(SCHEDULE),
                              "--processor-cmd", cmd)
    m = result["modes"][0]
    killed = assert_killed_mid_write(run / "at-least-once")
    assert r.returncode == 0, r.stdout + r.stderr
    assert m["verdict"] == "held" and m["lost"] == 0 and m["duplicated"] > 0, m
    # The report names the external command in place of the processor.
    assert result["external_nodes"]["processor"]["command"] == cmd
    assert result["config"]["external"] == {"processor": cmd}
    assert any("ran in place of the built-in processor" in n for n in m["notes"])
    assert "ran in place of the built-in processor" in r.stdout
    manifest = json.loads((run / "at-least-once" / "cluster.json").read_text())
    assert manifest["nodes"]["processor"]["external_command"] == cmd
    assert manifest["nodes"]["processor"]["node_control"] is False
    assert not pid_alive(killed)
    assert_stopped(run / "at-least-once")
    page = (run / "report.html").read_text()
    assert "examples/alo_processor.py" in page


@pytest.mark.timeout(240)
def test_the_buggy_example_is_reported_broken_with_lost_orders(tmp_path):
    r, result, run = campaign(tmp_path, "--mode", "at-least-once", "--schedule", str(SCHEDULE),
                              "--processor-cmd", f"{PY} examples/buggy_processor.py")
    m = result["modes"][0]
    assert_killed_mid_write(run / "at-least-once")
    assert r.returncode == 1, r.stdout + r.stderr
    assert m["verdict"] == "broken" and m["lost"] > 0, m
    # Lost at the broker->sink hop: in the log, offsets committed, never applied.
    assert m["anomalies"]["lost"]["by_hop"] == {"broker->sink": m["lost"]}
    assert m["lost_acknowledged"] == m["lost"]
    assert_stopped(run / "at-least-once")


@pytest.mark.timeout(240)
def test_exactly_once_without_operator_state_says_it_was_not_checked(tmp_path):
    """The example serves no NodeControl and writes no checkpoint: no operator state to audit.
    The verdict must say so, never a silent "held". A failpoint step aimed at it cannot reach
    it: said under the table too."""
    sched = tmp_path / "schedule.json"
    sched.write_text(json.dumps({"events": 300, "steps": [
        {"at": 0, "arm": True, "f": "failpoint", "node": "processor", "name": "processor.before-checkpoint",
         "action": "crash"}]}))
    r, result, run = campaign(tmp_path, "--mode", "exactly-once", "--sink", "idempotent", "--schedule", str(sched),
                              "--processor-cmd", f"{PY} examples/alo_processor.py")
    m = result["modes"][0]
    assert any("state-mismatch not checked" in reason for reason in m["reasons"]), m
    assert "state-mismatch not checked" in r.stdout   # under the table, not only in result.json
    assert any("not applied: the external processor does not serve testbed.v1.NodeControl" in n
               for n in m["notes"]), m["notes"]
    final = json.loads((run / "exactly-once-idempotent" / "processor" / "final-status.json").read_text())
    assert final["source"] == "broker committed offsets" and "state" not in final


@pytest.mark.timeout(240)
def test_an_external_sink_is_audited_through_its_snapshot(tmp_path):
    """The built-in sink run as a user's command (`--sink-cmd`): killed -9 mid-run, restarted
    on the same port, audited the same way; the harness also saved its Snapshot."""
    r, result, run = campaign(tmp_path, "--mode", "at-least-once", "--events", "600", "--faults",
                              "kill-sink,sink-drop-response", "--sink-cmd", f"{PY} -m nodes.sink")
    mode_dir = run / "at-least-once"
    kills = [op for op in read_history(mode_dir / "nemesis.jsonl") if op["f"] == "kill" and op["type"] == "ok"]
    assert kills and kills[0]["value"]["exit_code"] == -9
    m = result["modes"][0]
    assert m["lost"] == 0 and m["verdict"] in ("held", "not-exercised"), m
    snap = json.loads((mode_dir / "sink" / "snapshot.json").read_text())
    from nodes.sink.db import read_snapshot
    assert (snap["orders"], snap["balances"]) == read_snapshot(mode_dir / "sink" / "sink.db")
    assert result["external_nodes"]["sink"]["replaces"].startswith("built-in sink")


def test_read_sink_prefers_the_database_then_the_snapshot(tmp_path):
    with pytest.raises(InputError, match="sink.db"):
        read_sink(tmp_path)
    (tmp_path / "snapshot.json").write_text(json.dumps({"orders": {"order-1": 2}, "balances": {"a": 5}}))
    assert read_sink(tmp_path) == ({"order-1": 2}, {"a": 5})
    (tmp_path / "snapshot.json").write_text("{not json")
    with pytest.raises(InputError, match="snapshot.json: not valid JSON"):
        read_sink(tmp_path)
    (tmp_path / "snapshot.json").write_text(json.dumps({"orders": {"order-1": 1.5}, "balances": {}}))
    with pytest.raises(InputError, match="expected an integer"):
        read_sink(tmp_path)


def test_operator_state_sources(tmp_path):
    assert operator_state(tmp_path, external=False) == (None, None)
    state, why = operator_state(tmp_path, external=True)
    assert state is None and "state-mismatch not checked" in why
    (tmp_path / "checkpoint.json").write_text(json.dumps({"state": {"a": 3}}))
    assert operator_state(tmp_path, external=True) == ({"a": 3}, None)
    (tmp_path / "final-status.json").write_text(json.dumps({"durable_positions": {}}))   # no state: skipped
    assert operator_state(tmp_path, external=True) == ({"a": 3}, None)
    (tmp_path / "final-status.json").write_text(json.dumps({"state": {"a": 4}}))
    assert operator_state(tmp_path, external=True) == ({"a": 4}, None)
    assert operator_state(tmp_path, external=False) == ({"a": 4}, None)
    (tmp_path / "final-status.json").write_text(json.dumps({"durable_positions": {}}))
    with pytest.raises(InputError, match="no 'state' field"):   # a built-in processor always has one
        operator_state(tmp_path, external=False)


def test_settings_as_flags_and_environment(tmp_path):
    s = {"listen": "127.0.0.1:7", "data_dir": "/d", "mode": "exactly-once", "sink_strategy": "transactional"}
    assert node_flags(s) == ["--listen", "127.0.0.1:7", "--data-dir", "/d", "--mode", "exactly-once",
                             "--sink-strategy", "transactional"]
    env = node_env("sink", s)
    assert env["TESTBED_LISTEN"] == "127.0.0.1:7" and env["TESTBED_DATA_DIR"] == "/d"
    assert env["TESTBED_SINK_STRATEGY"] == "transactional" and env["TESTBED_NODE"] == "sink"
    assert parse_command(f"{PY} -m my.node --x 'a b'")[-1] == "a b"
    for bad, msg in (("", "empty"), ("'unclosed", "cannot split"), ("/no/such/bin", "not found")):
        with pytest.raises(ExternalCommandError, match=msg):
            parse_command(bad)


def test_cli_refuses_an_ablation_of_the_replaced_node(tmp_path):
    r = subprocess.run([PY, "-m", "harness.cli", "campaign", "--disable", "commit-after-sink", "--processor-cmd",
                        f"{PY} examples/alo_processor.py", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--processor-cmd replaces that node" in r.stderr
    r = subprocess.run([PY, "-m", "harness.cli", "sweep", "--failpoint", "processor.before-checkpoint",
                        "--processor-cmd", f"{PY} examples/alo_processor.py", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "an external node's failpoints are not swept" in r.stderr


@pytest.mark.timeout(120)
def test_up_with_an_external_sink_audits_it_through_its_snapshot(tmp_path):
    r = subprocess.run([PY, "-m", "harness.cli", "up", "--events", "500", "--rate", "0", "--exit-when-drained",
                        "--sink-cmd", f"{PY} -m nodes.sink", "--out", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "external sink:" in r.stdout and "runs in place of the built-in sink" in r.stdout
    assert "audit: 500 orders, 500 applied exactly once, 0 lost, 0 duplicated" in r.stdout
    assert (tmp_path / "latest" / "sink" / "snapshot.json").exists()


@pytest.mark.timeout(120)
def test_an_external_node_that_ignores_the_parent_pid_is_stopped_when_the_harness_dies(tmp_path):
    """A node in another language may not watch TESTBED_PARENT_PID (here: it is removed from its
    environment); after kill -9 of the harness the orphan guard stops it anyway."""
    proc = subprocess.Popen([PY, "-m", "harness.cli", "up", "--events", "100000", "--rate", "200", "--out",
                             str(tmp_path), "--processor-cmd",
                             f"env -u TESTBED_PARENT_PID {PY} examples/alo_processor.py"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until_up(proc)
    manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    processor = manifest["nodes"]["processor"]["pid"]
    assert manifest["nodes"]["processor"]["external_command"].startswith("env -u TESTBED_PARENT_PID")
    assert "TESTBED_PARENT_PID" not in Path(f"/proc/{processor}/environ").read_bytes().decode(errors="replace")
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while [p for p in pids if pid_alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)  # poll the orphans' pids, bounded by the deadline
    left = [p for p in pids if pid_alive(p)]
    for p in left:  # never leave them behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not left, f"orphaned nodes still running: {left}"


def _alive_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


@pytest.mark.timeout(240)
def test_a_wrapper_script_and_its_child_are_killed_together(tmp_path):
    """The command is a shell that runs the node as a child (not exec): kill -9 goes to the
    process group, so the child dies with the wrapper and nothing outlives the run."""
    wrapper = f"sh -c '{PY} examples/alo_processor.py \"$@\"; echo wrapper done' sh"
    r, result, run = campaign(tmp_path, "--mode", "at-least-once", "--events", "600", "--faults",
                              "kill-processor", "--processor-cmd", wrapper)
    mode_dir = run / "at-least-once"
    kills = [op for op in read_history(mode_dir / "nemesis.jsonl") if op["f"] == "kill" and op["type"] == "ok"]
    assert kills and kills[0]["value"]["exit_code"] == -9 and kills[0]["value"]["new_pid"], kills
    assert result["modes"][0]["lost"] == 0, result["modes"][0]
    assert not _alive_with(str(mode_dir / "processor"))


@pytest.mark.parametrize("name", ["alo_processor.py", "buggy_processor.py"])
def test_the_examples_use_only_the_generated_stubs_and_grpc(name):
    import ast
    tree = ast.parse((ROOT / "examples" / name).read_text())
    assert ast.get_docstring(tree) and len(ast.get_docstring(tree)) > 400
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module)
    ours = {m for m in modules if m.split(".")[0] in ("nodes", "harness")}
    assert all(m.startswith("nodes.pb") for m in ours), ours
    third_party = {m.split(".")[0] for m in modules} - {"__future__", "argparse", "asyncio", "os", "signal", "sys",
                                                       "nodes"}
    assert third_party <= {"grpc", "grpc_health"}, third_party
