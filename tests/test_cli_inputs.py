"""The CLI as a new user meets it (issue 11): `fault` finds the running `up` through a
pid-checked runs/up.json (never runs/latest) and says which cluster it acted on;
relative paths are the caller's, also through ./run.sh; every error is one line,
exit 2, no traceback; a workload file is checked line by line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodes.producer.workload import WorkloadError, load_jsonl
from tests.conftest import pid_alive

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith("cluster: ")]
    assert len(lines) == 1 and needle in lines[0], r.stderr  # `fault` first says which cluster


def test_fault_ignores_runs_latest_when_no_up_runs(tmp_path):
    """The old default acted on whatever runs/latest pointed to (a finished campaign)."""
    latest = tmp_path / "runs" / "latest"
    latest.mkdir(parents=True)
    (latest / "cluster.json").write_text(json.dumps({"config": {}, "links": {
        "producer-broker": {"proxy": "127.0.0.1:9", "pid": dead_pid()}}}))
    r = cli("fault", "list", cwd=tmp_path, env={"TESTBED_RUNS": str(tmp_path / "runs")})
    one_line_error(r, "no running cluster: start one with ./run.sh up")


def test_fault_ignores_a_stale_up_file_with_one_line(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "up.json").write_text(json.dumps({"pid": dead_pid(), "cluster": str(tmp_path / "cluster.json")}))
    r = cli("fault", "list", env={"TESTBED_RUNS": str(runs)})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and "ignoring stale" in lines[0] and "is not running" in lines[0], r.stderr
    assert "no running cluster" in lines[1]


def test_fault_with_cluster_of_a_finished_run_says_so(tmp_path):
    manifest = tmp_path / "cluster.json"
    manifest.write_text(json.dumps({"config": {}, "links": {
        "producer-broker": {"proxy": "127.0.0.1:9", "pid": dead_pid()}}}))
    r = cli("fault", "--cluster", "cluster.json", "list", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[0] == "cluster: cluster.json"
    assert "is not running: proxy producer-broker" in r.stderr.splitlines()[1]
    # the directory `up` prints (a new user's first guess) names the same manifest (was "is a directory")
    r = cli("fault", "--cluster", ".", "list", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines()[0] == "cluster: cluster.json", r.stderr
    assert "is not running: proxy producer-broker" in r.stderr.splitlines()[1]


def test_fault_finds_the_running_up_and_says_which(tmp_path):
    runs = tmp_path / "runs"
    env = dict(os.environ, TESTBED_RUNS=str(runs))
    up = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--events", "100000", "--rate", "50"],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (runs / "up.json").exists():
            assert up.poll() is None, up.communicate()
            assert time.monotonic() < deadline, "up never wrote runs/up.json"
            time.sleep(0.05)  # polling a file up writes, bounded by the deadline
        info = json.loads((runs / "up.json").read_text())
        assert info["pid"] == up.pid
        r = cli("fault", "add", "delay", "--link", "producer-broker", "--delay-ms", "1", "--count", "1",
                env={"TESTBED_RUNS": str(runs)})
        assert r.returncode == 0, r.stderr
        assert f"cluster: {info['cluster']} (the running up, pid {up.pid})" in r.stderr
        assert r.stdout.strip() == "f1 delay on producer-broker"
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)
    assert not (runs / "up.json").exists(), "up left its up.json behind"
    manifest = json.loads(Path(info["cluster"]).read_text())
    assert not [n["pid"] for n in manifest["nodes"].values() if pid_alive(n["pid"])]


def test_relative_paths_through_run_sh_are_the_callers(tmp_path):
    """run.sh cds to the checkout; a relative RUN_DIR used to be looked up there."""
    if not (ROOT / ".venv" / "bin" / "testbed").exists():
        pytest.skip("run.sh needs the checkout's .venv")
    (tmp_path / "sub").mkdir()
    r = subprocess.run([str(ROOT / "run.sh"), "audit", "sub"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    # found relative to tmp_path (the caller's cwd), not to the checkout: "sub" is not a run there
    one_line_error(r, "sub has no result.json")
    r = subprocess.run([str(ROOT / "run.sh"), "audit", "no-such-dir"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    one_line_error(r, "Directory 'no-such-dir' does not exist")


@pytest.mark.parametrize("args,needle", [
    (["audit", "FILE"], "is a file"),
    (["audit", "no/such/run"], "does not exist"),
    (["audit", "DIR"], "not a campaign run directory"),
    (["replay", "FILE"], "is a file"),
    (["report", "FILE"], "is a file"),
    (["report", "DIR"], "has no result.json"),
    (["campaign", "--events", "ten"], "is not a valid integer"),
    (["campaign", "--schedule", "DIR"], "is a directory"),
    (["campaign", "--schedule", "FILE"], "not valid JSON"),
    (["scenario", "run", "FILE.json"], "not valid JSON"),
    (["scenario", "run", "nonesuch"], "unknown scenario 'nonesuch'"),
    (["up", "--workload", "FILE"], "invalid JSON"),
    (["up", "--workload", "DIR"], "is a directory"),
    (["fault", "--cluster", "DIR", "list"], "DIR/cluster.json: missing"),
    (["fault", "--cluster", "FILE", "list"], "cannot read cluster manifest"),
    (["fault", "nonesuch"], "No such command 'nonesuch'"),
    (["nonesuch"], "No such command 'nonesuch'"),
    (["audit"], "Missing argument 'RUN_DIR'"),
    (["campaign", "--mode", "twice"], "'twice' is not one of"),
], ids=lambda v: "-".join(v) if isinstance(v, list) else None)
def test_every_error_is_one_line_exit_2(tmp_path, args, needle):
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("garbage\n")
    (tmp_path / "FILE.json").write_text("garbage\n")
    r = cli(*args, cwd=tmp_path)
    one_line_error(r, needle)


BAD_WORKLOADS = [
    ("empty", b"", "workload file is empty"),
    ("blank-lines", b"\n \n", "workload file is empty"),
    ("huge-line", b'{"order_id": "' + b"x" * 200_000 + b'", "account": "a", "amount_cents": 1}\n',
     "more than 65,536"),
    ("long-order-id", b'{"order_id": "' + b"x" * 300 + b'", "account": "a", "amount_cents": 1}\n',
     "longer than 256 bytes"),
    ("non-utf8", b'{"order_id": "\xff", "account": "a", "amount_cents": 1}\n', "cannot read workload file"),
    ("duplicate-id", b'{"order_id": "o", "account": "a", "amount_cents": 1}\n' * 2, "duplicates line 1"),
    ("huge-amount", b'{"order_id": "o", "account": "a", "amount_cents": 1000000000001}\n', "must be within"),
    ("huge-negative", b'{"order_id": "o", "account": "a", "amount_cents": -9223372036854775808}\n',
     "must be within"),
    ("nan-amount", b'{"order_id": "o", "account": "a", "amount_cents": NaN}\n', "NaN is not valid JSON"),
    ("infinity-amount", b'{"order_id": "o", "account": "a", "amount_cents": Infinity}\n', "not valid JSON"),
    ("float-amount", b'{"order_id": "o", "account": "a", "amount_cents": 1e3}\n', "must be an integer"),
    ("lone-surrogate", b'{"order_id": "\\ud800", "account": "a", "amount_cents": 1}\n', "unpaired surrogate"),
    ("control-char", b'{"order_id": "a\\u0000b", "account": "a", "amount_cents": 1}\n', "control"),
]


@pytest.mark.parametrize("data,needle", [(d, n) for _, d, n in BAD_WORKLOADS], ids=[i for i, _, _ in BAD_WORKLOADS])
def test_bad_workload_file_is_one_line(tmp_path, data, needle):
    f = tmp_path / "w.jsonl"
    f.write_bytes(data)
    with pytest.raises(WorkloadError) as e:
        load_jsonl(f)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("command", ["audit", "replay"])
def test_an_explore_run_dir_names_its_broken_trial(tmp_path, command):
    """`explore` prints its run dir; audit / replay of it said only "not a campaign run
    directory" (shrink already named the trial)."""
    (tmp_path / "explore.json").write_text(json.dumps({"found": {"dir": str(tmp_path / "explore" / "seed-3")}}))
    r = cli(command, str(tmp_path))
    one_line_error(r, f"(an explore run: its broken trial is {tmp_path / 'explore' / 'seed-3'})")
