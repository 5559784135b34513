"""A port chosen for a server and taken by another run before the server bound it: the
first start is tried again on new ports (harness/port_retry.py), instead of ending the run
(a fidelity pass beside a test suite ended at "bind: address already in use")."""

from __future__ import annotations

import socket

import pytest

from harness.port_retry import start_on_fresh_ports
from harness.process import NodeStartError


async def test_only_a_taken_port_is_retried_and_only_so_often():
    made, undone = [], []

    def make():
        made.append(len(made))
        return made[-1]

    async def start_taken_once(server):
        if server == 0:
            raise NodeStartError("nats-3 not healthy: listen tcp 127.0.0.1:11561: bind: address already in use")

    async def undo(server):
        undone.append(server)

    assert await start_on_fresh_ports(make, start_taken_once, undo, "t") == 1 and undone == [0]

    async def other_error(server):
        raise NodeStartError("exited with code 1: bad config")
    made.clear(), undone.clear()
    with pytest.raises(NodeStartError, match="bad config"):
        await start_on_fresh_ports(make, other_error, undo, "t")
    assert made == [0] and undone == []

    async def always_taken(server):
        raise NodeStartError("Error: Address already in use")
    made.clear()
    with pytest.raises(NodeStartError, match="Address already in use"):
        await start_on_fresh_ports(make, always_taken, undo, "t", attempts=3)
    assert made == [0, 1, 2] and undone == [0, 1]


@pytest.mark.timeout(90)
async def test_a_nats_cluster_starts_when_its_first_port_was_taken(tmp_path, monkeypatch, caplog):
    import harness.nats_cluster as nc
    from harness.cluster import Cluster, ClusterConfig
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    real, calls = nc.free_port, []

    def first_one_taken() -> int:
        calls.append(1)
        return port if len(calls) == 1 else real()
    monkeypatch.setattr(nc, "free_port", first_one_taken)
    cluster = Cluster(ClusterConfig(broker="nats", events=10), tmp_path / "run")
    try:
        await cluster._start_broker()
        assert port not in [s.ports["client"] for s in cluster.nats.servers]
        assert all(s.running for s in cluster.nats.servers)
        retries = [r for r in caplog.records if r.name == "harness.port_retry"]
        assert len(retries) == 1 and "attempt 1 of 3" in retries[0].getMessage()   # it fired, once
        assert "address already in use" not in (tmp_path / "run" / "nats-1" / "stderr.log").read_text()
    finally:
        await cluster.stop()
        taken.close()
    assert not any(s.running for s in cluster.nats.servers)


def test_free_port_never_hands_out_a_port_twice(monkeypatch):
    """A chosen port stays free until its server binds it: the next pick must not repeat it."""
    import random

    import harness.nats_cluster as nc
    monkeypatch.setattr(nc, "_PORTS", random.Random(5))
    monkeypatch.setattr(nc, "_HANDED_OUT", set())
    monkeypatch.setattr(nc, "_ephemeral_low", lambda: 11_001)    # 1,001 ports to pick from
    ports = [nc.free_port() for _ in range(200)]                 # repeats ~certain if unchecked
    assert len(set(ports)) == 200 and all(10_000 <= p < 11_001 for p in ports)
