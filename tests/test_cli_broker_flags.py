"""Broker flags given empty or to the wrong command: one line, exit 2, nothing started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "TESTBED_RUNS": str(tmp_path / "runs")})


@pytest.mark.parametrize("url", ["", " , "])
def test_empty_nats_url_is_refused_not_a_builtin_run(tmp_path, url):
    r = _run(tmp_path, "campaign", "--events", "20", "--nats-url", url)
    assert r.returncode == 2, r.stderr
    assert "--nats-url" in r.stderr and "empty" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()


def test_up_status_line_does_not_call_a_running_mosquitto_down():
    """MQTT has no log: its ends are UNAVAILABLE while messages still arrive (cluster.py's
    high_watermarks); `up --broker mosquitto` printed "broker down" all run long."""
    from harness.cli_up import progress_line
    prog = {"producer": {"position": 100, "total": 3000}, "processor": {"durable_positions": {"0": 74}},
            "high_watermarks": {"error": "UNAVAILABLE"}}
    assert "broker up (mqtt: no log)" in progress_line(prog, mqtt_running=True)
    assert "broker down" in progress_line(prog, mqtt_running=False)
    assert "broker up, 74 received" in progress_line({**prog, "high_watermarks": {0: 74}}, mqtt_running=True)
    assert "broker down" in progress_line(prog)   # builtin / NATS: an error is down


@pytest.mark.parametrize("args,message", [
    (["--broker", ","], "empty; choose from: builtin, nats"),
    (["--broker", "builtin,builtin"], "'builtin' named twice"),
    (["--modes", ""], "empty; choose from"),
    (["--parts", " "], "empty; choose from"),
    (["--batch-sizes", "100,100"], "100 named twice"),      # printed one run's numbers in two rows
    (["--memory-events", "500,500"], "500 named twice"),
])
def test_bench_list_options_refuse_empty_and_repeated_names(tmp_path, args, message):
    """An empty list ran the default one; a repeated name ran that part twice."""
    r = _run(tmp_path, "bench", "--parts", "brokers", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args,message", [
    (["campaign", "--mqtt-autosave", "5"], "--mqtt-autosave applies to --broker mosquitto only (not builtin)"),
    (["up", "--mqtt-subscribe-qos", "1", "--broker", "nats"], "--mqtt-subscribe-qos applies to --broker mosquitto"),
    (["campaign", "--nats-sync", "always"], "--nats-sync applies to --broker nats only"),
    (["up", "--broker", "mosquitto", "--nats-url", "nats://127.0.0.1:1"], "cannot go with --broker mosquitto"),
    (["campaign", "--nats-url", "nats://127.0.0.1:1", "--nats-sync", "always"], "your servers' config decides"),
])
def test_a_flag_of_another_broker_is_refused_not_ignored(tmp_path, args, message):
    """Each ran a campaign or cluster on another broker, the flag silently ignored."""
    r = _run(tmp_path, *args, "--events", "20")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "runs").exists()


def test_help_of_an_unbounded_finite_float_has_no_none_range():
    """click's FloatRange printed "[default: 1000.0; x<=None]" for --rate and --drain-timeout."""
    for command in ("campaign", "up"):
        r = subprocess.run([sys.executable, "-m", "harness.cli", command, "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "--rate" in r.stdout
        assert "None" not in r.stdout, r.stdout


def test_report_of_an_up_cluster_points_to_audit(tmp_path):
    """`report` of an `up` directory said only "not a run directory"."""
    up = tmp_path / "up"
    up.mkdir()
    (up / "cluster.json").write_text("{}")
    r = _run(tmp_path, "report", str(up))
    assert r.returncode == 2 and "not a run directory" in r.stderr
    assert f"./run.sh audit {up}" in r.stderr and r.stderr.strip().count("\n") == 0


def test_nats_url_without_jetstream_says_so_in_words(tmp_path):
    """nats-py's ServiceUnavailableError printed as "code=None err_code=None description='None'"."""
    import socket
    from harness.nats_cluster import free_port, server_binary
    port = free_port()
    server = subprocess.Popen([server_binary(), "-a", "127.0.0.1", "-p", str(port)],   # no -js
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):   # bounded: until it accepts
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert server.poll() is None, "nats-server exited"
                __import__("time").sleep(0.05)   # poll until it listens (bounded above)
        r = _run(tmp_path, "campaign", "--events", "20", "--nats-url", f"nats://127.0.0.1:{port}")
    finally:
        server.kill()
        server.wait(10)
    assert r.returncode == 2, r.stderr
    assert "answers but JetStream does not: no JetStream there" in r.stderr and "None" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("args,message", [
    (["campaign", "--disable", "generation-fencing", "--events", "20"], "add --processors 2 or more"),
    (["up", "--disable", "generation-fencing", "--events", "20"], "add --processors 2 or more"),
    (["explore", "--disable", "generation-fencing", "--processors", "1", "--budget", "5s"],
     "add --processors 2 or more"),
])
def test_generation_fencing_off_without_a_group_is_refused(tmp_path, args, message):
    """It ran with every mechanism on (fencing only acts in a consumer group), 'held'."""
    r = _run(tmp_path, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and not (tmp_path / "runs").exists()
