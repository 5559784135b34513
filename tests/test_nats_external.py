"""``--nats-url``: audit a NATS cluster the harness does not run (harness/nats_external.py).

The "user's" cluster is a 3-server JetStream cluster this test starts itself on loopback
(harness/nats_cluster.py, ended by pid). The campaign starts no server: it puts a TCP proxy
per client in front of each url, creates its marked streams, and audits them; a fault on
the producer's links is shown to fire in the proxies' faults.jsonl before the verdict.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from harness.nats_cluster import NatsCluster
from harness.nats_external import MARK, ExternalRefused, check_steps, parse_urls
from nodes.proxy.history import read_history

ROOT = Path(__file__).resolve().parent.parent


async def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The CLI in a thread: this test's event loop stays free (it holds no server itself)."""
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "harness.cli", *args], cwd=ROOT,
                                   capture_output=True, text=True, timeout=timeout)


def test_urls_and_steps_are_checked():
    assert parse_urls("nats://127.0.0.1:4222, localhost:4223") == ["127.0.0.1:4222", "localhost:4223"]
    for bad in ("", "nats://host", "http://h:1", "h:99999"):
        with pytest.raises(ExternalRefused):
            parse_urls(bad)
    check_steps([{"at": 1, "f": "kill", "node": "processor"},
                 {"at": 1, "f": "link", "link": "producer-broker", "fault": {"kind": "latency"}}])
    for step in ({"at": 1, "f": "kill", "node": "nats", "role": "leader"},
                 {"at": 1, "f": "partition", "nodes": ["nats-1"]},
                 {"at": 1, "f": "power-loss", "nodes": "all"},
                 {"at": 1, "f": "link", "link": "route-nats-1-nats-2", "fault": {"kind": "partition"}}):
        with pytest.raises(ExternalRefused, match="step 0"):
            check_steps([step])


def test_unreachable_url_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--nats-url", "nats://127.0.0.1:1",
                        "--events", "10", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "cannot reach nats://127.0.0.1:1" in r.stderr


@pytest.mark.timeout(240)
async def test_campaign_on_a_cluster_run_elsewhere(tmp_path):
    user = NatsCluster(tmp_path / "user-cluster", 1)   # the user's cluster
    try:
        await user.start()
        url = user.url
        nc = await nats.connect(servers=url.split(","), connect_timeout=5)
        try:   # start() made the local cluster's (unmarked) streams: a fresh cluster has none
            for name in ("orders-0", "KV_offsets"):
                await nc.jetstream(timeout=5).delete_stream(name)
        finally:
            await nc.close()
        r = await run_cli("campaign", "--nats-url", url, "--mode", "exactly-once", "--sink", "idempotent",
                          "--faults", "reset-nats-producer", "--events", "200", "--seed", "3", "--quiet",
                          "--out", str(tmp_path / "runs"))
        assert r.returncode == 0, r.stdout + r.stderr
        latest = tmp_path / "runs" / "latest"
        entry = json.loads((latest / "result.json").read_text())["modes"][0]
        mode_dir = latest / entry["dir"]
        cluster = json.loads((mode_dir / "cluster.json").read_text())
        assert cluster["nats"]["external"] and not any(n.startswith("nats-") for n in cluster["nodes"])
        assert {"producer-nats-1", "processor-nats-3"} <= set(cluster["links"])
        assert not any(link.startswith("route-") for link in cluster["links"])
        resets = [ev for i in (1, 2, 3)
                  for ev in read_history(mode_dir / f"proxy-producer-nats-{i}" / "faults.jsonl")
                  if ev.get("type") == "fault" and ev.get("fault") == "reset"]
        assert resets, "the reset on the producer's links never fired"
        assert entry["verdict"] == "held" and entry["lost"] == 0 and entry["duplicated"] == 0
        dump = json.loads((mode_dir / "broker" / "nats-streams.json").read_text())
        assert sum(len(rows) for rows in dump["partitions"].values()) == 200

        nc = await nats.connect(servers=url.split(","), connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5)
            assert (await js.stream_info("orders-0")).config.description == MARK
            await js.delete_stream("orders-1")   # a stream of the user's under the testbed's name
            await js.add_stream(StreamConfig(name="orders-1", subjects=["orders.1"], description="billing"))
        finally:
            await nc.close()
        r = await run_cli("campaign", "--nats-url", url, "--mode", "at-least-once", "--faults", "none",
                          "--events", "50", "--quiet", "--out", str(tmp_path / "runs"))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "stream orders-1 already exists and was not created by the testbed" in r.stderr

        r = await run_cli("campaign", "--nats-url", url, "--faults", "kill-nats-leader", "--events", "50",
                          "--quiet", "--out", str(tmp_path / "runs"))
        assert r.returncode == 2 and "step 0 (kill of nats)" in r.stderr, r.stderr
    finally:
        await user.stop()
    assert not any(s.running for s in user.servers)
