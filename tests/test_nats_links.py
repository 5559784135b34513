"""TCP fault proxies on every link of a NATS cluster (harness/nats_links.py), and partitions.

The real-cluster test checks that nothing goes around the proxies before it trusts a cut:
every route connection the servers report is one a route proxy carries, the client's
bytes go through its own proxy, and with the routes of one server partitioned a message
published on another server does not reach it until the heal.
"""

from __future__ import annotations

import asyncio
import json
import random
from types import SimpleNamespace
from pathlib import Path

import nats
import pytest

from harness.nats_cluster import NatsCluster
from harness.nats_links import NatsLinks, route_link
from harness.nemesis.base import NemesisContext
from harness.nemesis.partition import PartitionNemesis
from harness.proxy_client import ProxyControlClient
from harness.schedule import ScheduleError, step_for, validate_steps
from nodes.proxy.history import read_history

ROOT = Path(__file__).resolve().parent.parent
IO_TIMEOUT_S = 10.0


def test_layout_one_proxy_per_directed_route_and_per_client_link(tmp_path):
    ports = {f"nats-{i}": {"client": 4220 + i, "route": 6220 + i} for i in (1, 2, 3)}
    links = NatsLinks(tmp_path, ports, seed=1)
    try:
        assert sorted(n for n in links.proxies if n.startswith("route-")) == [
            "route-nats-1-nats-2", "route-nats-1-nats-3", "route-nats-2-nats-1",
            "route-nats-2-nats-3", "route-nats-3-nats-1", "route-nats-3-nats-2"]
        assert links.proxies["producer-nats-2"].upstream == "127.0.0.1:4222"
        assert links.proxies["route-nats-1-nats-3"].upstream == "127.0.0.1:6223"
        assert sorted(links.crossing(["nats-2"])) == [
            "route-nats-1-nats-2", "route-nats-2-nats-1", "route-nats-2-nats-3", "route-nats-3-nats-2"]
        assert links.crossing(["nats-1", "nats-3"]) == links.crossing(["nats-2"])  # the same cut
        assert links.clients_of(["nats-2"]) == ["producer-nats-2", "processor-nats-2"]
        url = links.client_url("processor").split(",")
        assert url == [f"nats://{links.data_address(f'processor-nats-{i}')}" for i in (1, 2, 3)]
    finally:
        links.dead_port.close()


def test_server_config_routes_through_proxies_and_advertises_nothing(tmp_path):
    c = NatsCluster(tmp_path, 1, links=True)
    try:
        conf = c.servers[0].config_text()
        for dst in ("nats-2", "nats-3"):
            assert f'"nats-route://{c.links.data_address(route_link("nats-1", dst))}"' in conf
        assert c.servers[1].route_address not in conf   # never a peer's real route port
        assert "no_advertise: true" in conf and f'advertise: "{c.links.dead_port.address}"' in conf
    finally:
        c.links.dead_port.close()


def test_partition_and_client_link_steps_validate_and_generate():
    step = step_for("partition-nats-leader", 100, random.Random(1))
    assert step["f"] == "partition" and step["role"] == "leader" and step["for_ms"] >= 6000
    lat = step_for("latency-nats-producer", 100, random.Random(1))
    assert lat["link"] == "producer-broker" and lat["fault"]["kind"] == "latency"
    validate_steps([step, lat, {"at": 1, "f": "partition", "nodes": ["nats-1"], "how": "reject"},
                    {"at": 1, "f": "link", "link": "route-nats-1-nats-2", "fault": {"kind": "partition"}}], "t")
    for bad in ({"at": 1, "f": "partition"}, {"at": 1, "f": "partition", "nodes": ["broker"]},
                {"at": 1, "f": "partition", "node": "nats", "how": "cut"},
                {"at": 1, "f": "link", "link": "route-x", "fault": {"kind": "partition"}}):
        with pytest.raises(ScheduleError):
            validate_steps([bad], "t")


async def _stats(proxy) -> dict:
    async with ProxyControlClient(proxy.address) as px:
        return await px.status()


async def _heal(c) -> None:
    for p in c.links.proxies.values():
        async with ProxyControlClient(p.address) as px:
            await px.heal()


async def _crosses(pub, sub, data: bytes, tries: int = 40) -> None:
    """Publish ``data`` until the subscriber gets it (the interest or the route may still be
    on its way): at most ``tries`` x 0.5 s."""
    for _ in range(tries):
        await pub.publish("probe", data)
        got = await _next(sub, 0.5)
        if got is not None:
            assert got == data
            return
    raise AssertionError(f"{data!r} never reached the subscriber")


async def _next(sub, timeout_s: float) -> bytes | None:
    try:
        return (await sub.next_msg(timeout=timeout_s)).data
    except nats.errors.TimeoutError:
        return None


@pytest.mark.timeout(90)
async def test_traffic_goes_through_the_proxies_and_a_partition_cuts_a_server(tmp_path):
    from nodes.common.modes import AT_LEAST_ONCE
    from nodes.logclient.nats import NatsClient
    from nodes.pb import broker_pb2
    c = NatsCluster(tmp_path, 1, links=True, seed=3)
    client, direct = None, []
    try:
        await c.start()
        for _ in range(50):   # every route connection a server reports is carried by a route proxy
            routes = 0        # (read again while a pooled route is still being set up: up to ~5 s)
            for s in c.servers:
                routes += len((await s.http_get("/routez") or {}).get("routes") or [])
            carried = [await _stats(p) for n, p in c.links.proxies.items() if n.startswith("route-")]
            if routes > 0 and routes == 2 * sum(st["open_connections"] for st in carried):
                break
            await asyncio.sleep(0.1)
        assert routes > 0 and routes == 2 * sum(st["open_connections"] for st in carried)
        assert all(st["accepted"] > 0 for st in carried)   # each directed route was dialled through its proxy

        # the producer's url lists only its proxies: its publishes go through producer-nats-1
        client = NatsClient(c.client_url("producer"), mode=AT_LEAST_ONCE)
        await client.Produce(broker_pb2.ProduceRequest(partition=0, records=[
            broker_pb2.Record(key=b"k", value=b"v")]), timeout=5)
        first = await _stats(c.links.proxies["producer-nats-1"])
        assert first["directions"]["upstream"]["bytes_in"] > 0
        for i in (2, 3):
            assert (await _stats(c.links.proxies[f"producer-nats-{i}"]))["accepted"] == 0

        # partition nats-3 from the others (the partition nemesis, armed until healed): a
        # message published on nats-1 does not reach a subscriber on nats-3 until the heal
        n1 = await nats.connect(f"nats://{c.servers[0].client_address}", connect_timeout=5)
        n3 = await nats.connect(f"nats://{c.servers[2].client_address}", connect_timeout=5)
        direct = [n1, n3]
        sub = await n3.subscribe("probe")
        await n3.flush()
        await _crosses(n1, sub, b"before")
        ctx = NemesisContext(SimpleNamespace(nats=c, proxies=c.links.proxies), None)
        out = await PartitionNemesis(ctx).invoke({"at": 0, "f": "partition", "nodes": ["nats-3"]})
        assert out["armed"] and out["server"] == "nats-3"
        assert sorted(out["links"]) == sorted(c.links.crossing(["nats-3"]))
        firings = [ev for link in out["links"] for ev in read_history(tmp_path / f"proxy-{link}" / "faults.jsonl")
                   if ev.get("type") == "fault" and ev.get("fault") == "partition"]
        assert out["fired"] == len(firings) > 0, "the partition toxic fired on no route connection"
        await n1.publish("probe", b"during")
        await n1.flush()
        assert await _next(sub, 1.0) is None, "a message crossed the partition"
        await _heal(c)
        assert await _next(sub, IO_TIMEOUT_S) == b"during"   # held, delivered on the heal

        # "reject": the route proxies switched down (connections closed, new ones refused)
        out = await PartitionNemesis(ctx).invoke({"at": 0, "f": "partition", "nodes": ["nats-3"], "how": "reject"})
        assert out["fired"] == 4 and out["closed"] >= 1
        await n1.publish("probe", b"lost")
        await n1.flush()
        assert await _next(sub, 1.0) is None, "a message crossed the partition"
        await _heal(c)
        await _crosses(n1, sub, b"after")   # the routes are dialled again through the proxies
    finally:
        for nc in direct:
            await nc.close()
        if client is not None:
            await client.close()
        await c.stop()
    assert not any(p.running for p in [*c.servers, *c.links.proxies.values()])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_partition_and_client_latency_fire_then_at_least_once_loses_nothing(tmp_path):
    """A campaign on the proxied cluster: latency with jitter on the producer's links, then the
    stream leader cut off (its routes and its clients' links) for 3 s. Both are shown to fire in
    nemesis.jsonl and the proxies' faults.jsonl before the verdict is read."""
    import subprocess
    import sys
    sched = tmp_path / "schedule.json"
    sched.write_text(json.dumps({"events": 400, "steps": [
        {"at": 50, "f": "link", "link": "producer-broker", "for_ms": 1500,
         "fault": {"kind": "latency", "delay_ms": 30, "jitter_ms": 20}},
        {"at": 150, "f": "partition", "node": "nats", "role": "leader", "clients": True, "for_ms": 3000}]}))
    r = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--broker", "nats", "--mode",
                        "at-least-once", "--schedule", str(sched), "--seed", "5", "--quiet",
                        "--out", str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stdout + r.stderr
    latest = tmp_path / "runs" / "latest"
    entry = json.loads((latest / "result.json").read_text())["modes"][0]
    mode_dir = latest / entry["dir"]
    ops = {op["f"]: op["value"] for op in read_history(mode_dir / "nemesis.jsonl") if op["type"] == "ok"}
    assert ops["link"]["fired"] >= 1 and set(ops["link"]["fault_ids"]) == {f"producer-nats-{i}" for i in (1, 2, 3)}
    part = ops["partition"]
    assert part["server"] in ("nats-1", "nats-2", "nats-3") and part["fired"] >= 1
    assert len([link for link in part["links"] if link.startswith("route-")]) == 4
    firings = {link: [ev for ev in read_history(mode_dir / f"proxy-{link}" / "faults.jsonl")
                      if ev.get("type") == "fault" and ev.get("fault") == "partition" and not ev.get("follow_up")]
               for link in part["links"]}   # the routes, and the clients' links to the cut server
    assert sum(map(len, firings.values())) == part["fired"]
    cut = [ev for link, evs in firings.items() if link.startswith("route-") for ev in evs]
    assert cut and all(ev["method"] == "tcp" for ev in cut)
    # the table's faults column counts every connection the cut acted on
    assert sum(n for k, n in entry["faults"].items() if k.startswith("partition@")) == part["fired"]
    assert entry["faults_fired"] >= part["fired"] + ops["link"]["fired"]
    assert entry["lost"] == 0 and entry["verdict"] in ("held", "not-exercised")
    assert "lost-from-log" not in entry["anomalies"]
