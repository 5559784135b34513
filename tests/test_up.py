"""`testbed up`: a cluster that moves a workload end to end, and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import pid_alive, wait_until_up

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_up_streams_a_workload_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.cli", "up", "--events", "1500", "--rate", "0",
                        "--exit-when-drained", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "drained" in r.stdout
    assert "audit: 1500 orders, 1500 applied exactly once, 0 lost, 0 duplicated" in r.stdout
    manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    assert set(manifest["nodes"]) == {"producer", "broker", "processor", "sink"}
    assert set(manifest["links"]) == {"producer-broker", "processor-broker", "processor-sink"}
    for name, node in manifest["nodes"].items():
        assert node["address"] in r.stdout  # each address printed
        assert not pid_alive(node["pid"]), f"{name} still running"


@pytest.mark.timeout(120)
def test_up_stops_every_process_on_ctrl_c(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--events", "100000",
                             "--rate", "200", "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until_up(proc)
    manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    assert len(pids) == 7 and all(pid_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "stopped every process" in rest
    assert not [p for p in pids if pid_alive(p)]


@pytest.mark.timeout(120)
def test_nodes_stop_by_themselves_when_the_harness_is_killed(tmp_path):
    """kill -9 of `testbed up` cannot clean up; its nodes notice and stop."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--events", "100000",
                             "--rate", "200", "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "Ctrl-C stops every process" in line:
            break
    manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while [p for p in pids if pid_alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)  # poll the orphans' pids, bounded by the deadline
    left = [p for p in pids if pid_alive(p)]
    for p in left:  # never leave them behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not left, f"orphaned nodes still running: {left}"


@pytest.mark.timeout(180)
async def test_lost_acks_on_a_running_cluster_make_the_producer_retry_and_heal_stops_it(tmp_path):
    """Issue 3's scenario: on a running at-least-once cluster, `testbed fault add
    drop-response` makes the producer retry (its history shows info then a retried
    ok) and the broker log gain duplicates; `testbed fault heal` stops it."""
    from harness.checker import check, load_run
    from harness.cluster import Cluster, ClusterConfig
    from harness.history import read_history

    cluster = Cluster(ClusterConfig(mode="at-least-once", events=4000, rate=800, seed=2), tmp_path)

    def fault(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", "fault", "--cluster",
                               str(tmp_path / "cluster.json"), *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)

    try:
        await cluster.start()
        r = fault("add", "drop-response", "--link", "producer-broker", "--probability", "0.3")
        assert r.returncode == 0, r.stderr
        # Wait (bounded) until the producer has made progress under the fault.
        deadline = time.monotonic() + 60
        while (await cluster.status("producer"))["retries"] < 3:
            assert time.monotonic() < deadline, "the producer never retried"
            await asyncio.sleep(0.05)  # poll a status condition, bounded by the deadline
        r = fault("heal")
        assert r.returncode == 0, r.stderr
        healed_retries = (await cluster.status("producer"))["retries"]
        await cluster.wait_drained(timeout_s=60)
        after = (await cluster.status("producer"))["retries"]
    finally:
        await cluster.stop()
    # At most the calls already in flight at the heal can still time out.
    assert after - healed_retries <= 4
    ops = read_history(tmp_path / "producer" / "history.jsonl")
    infos = [op for op in ops if op["type"] == "info"]
    assert infos and all("DEADLINE_EXCEEDED" in op["error"] for op in infos)
    retried_ok = [op for op in ops if op["type"] == "ok" and op["value"]["attempt"] > 1]
    assert len(retried_ok) >= len(infos) - 4
    report = check(load_run(tmp_path))
    assert report.count("lost") == 0
    assert report.count("duplicated-in-log") > 0
    assert report.anomalies["duplicated"].by_hop.get("producer->broker", 0) > 0


@pytest.mark.timeout(120)
def test_up_restarts_a_node_the_user_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--events", "3000", "--rate", "1000",
                             "--exit-when-drained", "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops every process" in line:
            break
    manifest = json.loads((tmp_path / "latest" / "cluster.json").read_text())
    os.kill(manifest["nodes"]["processor"]["pid"], signal.SIGKILL)
    rest, _ = proc.communicate(timeout=100)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out
    assert "processor exited with code -9; restarting it" in out
    assert "drained" in out and "0 lost" in out


def test_fault_hint_names_only_links_that_have_a_proxy():
    from harness.cli_up import fault_hint
    nats = fault_hint(["processor-sink"], "")
    assert "--link processor-sink" in nats and "producer-broker" not in nats
    assert "--link producer-broker" in fault_hint(["broker-processor", "processor-sink", "producer-broker"], "")
    assert "no link fault can be injected" in fault_hint([], "")


@pytest.mark.timeout(120)
async def test_fault_remove_finds_the_link_or_asks_for_it(tmp_path):
    """`fault remove f1` without --link: removed from the one link that has f1; refused
    (exit 2, one line) when two links each have an f1 (each link numbers its own) or none."""
    from harness.cluster import Cluster, ClusterConfig

    cluster = Cluster(ClusterConfig(mode="at-least-once", events=2000, rate=100, seed=2), tmp_path)

    def fault(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", "fault", "--cluster", str(tmp_path), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)

    try:
        await cluster.start()
        added = fault("add", "delay", "--link", "processor-sink", "--delay-ms", "1")
        assert added.returncode == 0 and added.stdout.startswith("f1 "), added.stdout + added.stderr
        r = fault("remove", "f1")
        assert r.returncode == 0 and r.stdout.strip() == "removed f1 from processor-sink", r.stdout + r.stderr
        for link in ("producer-broker", "processor-broker"):
            assert fault("add", "delay", "--link", link, "--delay-ms", "1").stdout.startswith("f1 ")
        r = fault("remove", "f1")
        assert r.returncode == 2 and "is on 2 links (processor-broker, producer-broker)" in r.stderr
        assert [line for line in r.stderr.splitlines() if line.startswith("error:")] == r.stderr.splitlines()[-1:]
        assert "Traceback" not in r.stderr
        assert "f1" in fault("list", "--link", "producer-broker").stdout      # nothing was removed
        r = fault("remove", "f9")
        assert r.returncode == 2 and "no fault 'f9' on any link" in r.stderr
    finally:
        await cluster.stop()
