"""Network partitions of a NATS cluster: cut the routes between some servers and the others.

    {"at": 800, "f": "partition", "node": "nats", "role": "leader", "for_ms": 8000}
    {"at": 800, "f": "partition", "nodes": ["nats-1"], "for_ms": 8000, "how": "reject",
     "clients": true}

The isolated side is the server of ``role`` (the stream leader of partition 0, a
follower, harness.cluster.Cluster.resolve_node) or the servers listed in ``nodes``;
with 3 servers every split is one server against two, a minority against a majority.
Every route proxy between the two sides is cut, in both directions
(harness/nats_links.py: one proxy per directed route), for ``for_ms`` ms, then healed;
without ``for_ms`` the cut lasts until the final heal (LinkNemesis.heal heals every
proxy). ``clients: true`` also cuts the producer's and processor's links to the
isolated servers (a client on the minority side; nats-py pings every second and moves
to another server after 3 unanswered pings).

``how``:

- ``"drop"`` (default): the TCP proxies' ``partition`` toxic: nothing passes, nothing
  is lost (TCP would retransmit), no FIN or RST: the servers learn of the partition
  from their own timeouts (Raft heartbeats, route pings); on heal the held bytes arrive.
  Jepsen's partition (packets dropped by iptables DROP).
- ``"reject"``: the proxies' down switch: open route connections are closed and new
  ones refused at once (iptables REJECT with an RST): the servers notice at once.

With ``"trigger": "failpoint"`` (harness.nemesis.logical; a ``node: "nats"`` step) the cut is
logical: the producer is first held at its Nth batch and the pipeline drains
(harness.nemesis.quiesce); with ``window_batches`` K the producer then sends exactly K
batches while the streams have no reachable leader (harness.nemesis.window); the cut lasts
until the majority side elected a leader for every stream (``leaders.elected``, asked of the
majority's /jsz) and at least ``for_ms``; once healed the leaders are put back on their
server (``leaders.placed``, harness.nats_leaders) and only then is the producer released.
Without ``for_ms`` the producer is released after the election, the cut still armed.

The ``ok`` op says which servers were isolated (``server`` when one, ``isolated``),
which links were cut, and ``fired``: with ``drop`` the route connections the toxic
was put on (its firings, each in the proxy's faults.jsonl); with ``reject`` the proxies
switched down (``closed``: the connections that closed).
"""

from __future__ import annotations

import asyncio
import time

from harness.nemesis.base import Nemesis
from harness.proxy_client import ProxyControlClient

HOW = ("drop", "reject")


class PartitionNemesis(Nemesis):
    async def invoke(self, step: dict) -> dict:
        cluster = self.ctx.cluster
        links = cluster.nats.links if cluster.nats is not None else None
        if links is None:
            return {"skipped": "no NATS cluster with TCP proxies on its routes "
                               "(--broker nats, without --no-proxy)"}
        waited = None
        if step.get("quiesce"):  # logical: the producer held, the pipeline drained (quiesce.py)
            from harness.nemesis.quiesce import quiesce
            waited = await quiesce(cluster, step["quiesce"])
        if "nodes" in step:
            side = sorted(step["nodes"])
        else:
            side = [(await cluster.resolve_node(step)).name]
        cut = links.crossing(side) + (links.clients_of(side) if step.get("clients") else [])
        how = step.get("how", "drop")
        clients = {link: ProxyControlClient(cluster.proxies[link].address) for link in cut}
        ids: dict[str, str] = {}
        fired = closed = 0
        try:
            for link, px in clients.items():   # every cut in place before waiting
                if how == "reject":
                    r = await px.set_down(True)
                    fired, closed = fired + (not r["was_down"]), closed + r["closed"]
                else:
                    ids[link] = await px.add("partition", direction="both")
            t_cut = time.monotonic()
            if how == "drop":
                for link, px in clients.items():
                    f = {x["fault_id"]: x for x in await px.list()}.get(ids[link], {})
                    fired += int(f.get("fired", 0))
            out = {"isolated": side, "links": cut, "how": how, "fired": fired}
            if how == "reject":
                out["closed"] = closed
            if len(side) == 1:
                out["server"] = side[0]
            if waited is not None:   # K batches into the leaderless window, then the majority's election
                majority = {s.name for s in cluster.nats.servers} - set(side)
                if step.get("window_batches"):
                    from harness.nemesis.window import open_window
                    out["window"] = await open_window(cluster, step, among=majority)
                from harness.nats_leaders import wait_leaders
                out["leaders"] = {"elected": await wait_leaders(cluster.nats, among=majority)}
            if "for_ms" not in step:
                out["armed"] = True
            else:   # the cut lasts for_ms from the cut, and at least until the election
                await asyncio.sleep(max(0.0, step["for_ms"] / 1000 - (time.monotonic() - t_cut)))
        finally:
            if "for_ms" in step:   # heal this cut (an armed one waits for the final heal)
                for link, px in clients.items():
                    try:
                        if how == "reject":
                            await px.set_down(False)
                        elif link in ids:
                            await px.remove(ids[link])
                    except Exception:  # the proxy is gone: the final heal restarts and heals it
                        pass
            for px in clients.values():
                await px.close()
        if waited is not None:   # healed: the leaders back in place, then the producer goes on
            from harness.nats_leaders import PINNED, place_leaders
            from harness.nemesis.quiesce import release
            if "for_ms" in step:
                out["leaders"]["placed"] = await place_leaders(cluster.nats, PINNED)
            await release(cluster, step, waited)
            out["quiesce"] = waited
        return out
