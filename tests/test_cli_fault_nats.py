"""`fault` on a NATS `up`: "producer-broker" means the producer's TCP proxy to every server,
as it does in a schedule's link step (harness/nemesis/link.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_until_up

from harness.cli_fault import group_links

ROOT = Path(__file__).resolve().parent.parent


def test_group_links_names_the_clients_link_to_every_server():
    links = {n: {} for n in ("producer-nats-1", "producer-nats-2", "processor-nats-1", "route-nats-1-nats-2",
                             "producer-nats-x")}
    assert group_links("producer-broker", links) == ["producer-nats-1", "producer-nats-2"]
    assert group_links("processor-broker", links) == ["processor-nats-1"]
    assert group_links("processor-sink", links) == []
    assert group_links("producer-broker", {"producer-broker": {}}) == []


@pytest.mark.timeout(120)
def test_fault_add_and_remove_on_producer_broker_of_a_nats_up(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--broker", "nats", "--events", "100000",
                             "--rate", "100", "--out", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(proc)
        cluster = str(tmp_path / "latest" / "cluster.json")

        def fault(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "harness.cli", "fault", "--cluster", cluster, *args],
                                  cwd=ROOT, capture_output=True, text=True, timeout=30)

        r = fault("add", "latency", "--link", "producer-broker", "--delay-ms", "5")
        assert r.returncode == 0, r.stdout + r.stderr
        servers = sorted(json.loads(Path(cluster).read_text())["nats"]["servers"])
        assert r.stdout.splitlines() == [f"f1 latency on producer-{s}" for s in servers]
        listed = fault("list", "--link", "producer-broker")
        assert listed.returncode == 0 and all(f"producer-{s}" in listed.stdout for s in servers)
        assert "processor-nats" not in listed.stdout
        r = fault("remove", "f1", "--link", "producer-broker")
        assert r.returncode == 0 and r.stdout.count("removed f1") == 3, r.stdout + r.stderr
        # a fault on one server's link only: removed there, not an error on the others
        r = fault("add", "latency", "--link", f"producer-{servers[1]}", "--delay-ms", "5")
        fid = r.stdout.split()[0]
        r = fault("remove", fid, "--link", "producer-broker")
        assert r.returncode == 0 and r.stdout.splitlines() == [f"removed {fid} from producer-{servers[1]}"], \
            r.stdout + r.stderr
        r = fault("remove", "f99", "--link", "producer-broker")
        assert r.returncode == 2 and "no fault 'f99' on producer-nats-1" in r.stderr, r.stdout + r.stderr
        bad = fault("add", "latency", "--link", "producer-sink")
        assert bad.returncode == 2 and "unknown link 'producer-sink'" in bad.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
