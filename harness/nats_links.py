"""The TCP fault proxies of a NATS cluster: every client link and every route goes through one.

Layout (docs/brokers.md, "Links"), for servers ``nats-1`` .. ``nats-N``:

    producer  --[producer-nats-i]-->  nats-i     one proxy per (client, server): the client's
    processor --[processor-nats-i]--> nats-i     url lists only its own proxies
    nats-i    --[route-nats-i-nats-j]--> nats-j  one proxy per *directed* route: server i's
                                                 configured route to j dials this proxy

Each proxy is a ``python -m nodes.tcpproxy`` process (harness/tcp_link.py), data dir
``<run>/proxy-<link>`` (its faults.jsonl, read by the report and the ``faults`` counts),
its data port chosen once and kept across restarts. A route between i and j may be
opened from either side (both have it configured; NATS keeps one connection per pool
slot), so cutting the pair means both ``route-nats-i-nats-j`` and ``route-nats-j-nats-i``:
:meth:`NatsLinks.crossing` gives every route proxy between two sets of servers (Jepsen's
partition of a node from the others, or a minority from a majority).

Nothing may go around the proxies. A NATS server tells clients the other servers'
client URLs and gossips its peers' route URLs to the servers it is routed to:

- ``cluster { no_advertise: true }``: no client URLs in INFO, so a client knows only
  the proxies it was given;
- ``cluster { advertise: 127.0.0.1:<dead port> }``: the route URL a server gossips is
  a loopback port this object holds bound and never listens on (:class:`DeadPort`), so a
  server that learns of a peer by gossip before its configured route is up fails to
  connect there (ECONNREFUSED) instead of opening a direct route around the proxy; the
  configured route (through the proxy) is retried and wins.

tests/test_nats_links.py checks it: the route connections the servers report are those
the route proxies carry, each directed route was dialled through its proxy, the client's
bytes go through its own proxy, and a partitioned server is cut off. The servers' logs
show the gossip at work ("Error trying to connect to route ... <dead port>: connection
refused" after a server restarts).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Iterable

from harness.nats_cluster import free_port
from harness.tcp_link import TcpLinkProcess

CLIENTS = ("producer", "processor")
"""The nodes that reach the cluster; each gets one proxy per server."""


def client_link(client: str, server: str) -> str:
    """"producer-nats-2": ``client``'s link to ``server``."""
    return f"{client}-{server}"


def route_link(src: str, dst: str) -> str:
    """"route-nats-1-nats-2": server ``src``'s configured route to ``dst``."""
    return f"route-{src}-{dst}"


class DeadPort:
    """A loopback port held bound and never listened on: a connect there is refused at
    once (RST), and no other process can take the port while this object lives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


class NatsLinks:
    """The proxies of one cluster (not started until :meth:`start`).

    Args:
        run_dir: the proxies' data dirs go under it (``proxy-<link>``).
        servers: server name -> {"client": port, "route": port} (harness/nats_cluster.py).
        seed: the run's seed (each proxy mixes it with its link name).
        env: extra environment of each proxy (the cluster's control token).
        clients: the client nodes that get a proxy per server.
        routes: False for a cluster whose routes are not the harness's (--nats-url:
            harness/nats_external.py): client links only.
        hosts: server name -> host of its ports (default 127.0.0.1).
    """

    def __init__(self, run_dir: Path, servers: dict[str, dict[str, int]], *, seed: int = 0,
                 env: dict[str, str] | None = None, clients: Iterable[str] = CLIENTS,
                 routes: bool = True, hosts: dict[str, str] | None = None) -> None:
        self.servers = list(servers)
        self.clients = list(clients)
        self.dead_port = DeadPort()
        self.proxies: dict[str, TcpLinkProcess] = {}

        def add(link: str, upstream: str) -> None:
            self.proxies[link] = TcpLinkProcess(
                link, upstream, Path(run_dir) / f"proxy-{link}", seed=seed,
                data_listen=f"127.0.0.1:{free_port()}", env=env)

        host = {name: (hosts or {}).get(name, "127.0.0.1") for name in servers}
        for client in self.clients:
            for name, ports in servers.items():
                add(client_link(client, name), f"{host[name]}:{ports['client']}")
        for src in servers if routes else ():
            for dst, ports in servers.items():
                if src != dst:
                    add(route_link(src, dst), f"{host[dst]}:{ports['route']}")

    def data_address(self, link: str) -> str:
        """Where the link's traffic goes in (known before the proxy starts)."""
        p = self.proxies[link]
        return p.data_address or p.data_listen

    def route_urls(self, server: str) -> list[str]:
        """The route addresses ``server`` is configured with: its outgoing route proxies."""
        return [self.data_address(route_link(server, dst)) for dst in self.servers if dst != server]

    def client_url(self, client: str) -> str:
        """``client``'s connect url: "nats://<proxy to nats-1>,nats://<proxy to nats-2>,..."."""
        return ",".join(f"nats://{self.data_address(client_link(client, s))}" for s in self.servers)

    def crossing(self, side: Iterable[str]) -> list[str]:
        """The route links between the servers of ``side`` and the others, both directions."""
        inside = set(side)
        return [route_link(a, b) for a in self.servers for b in self.servers
                if a != b and ((a in inside) != (b in inside)) and route_link(a, b) in self.proxies]

    def clients_of(self, servers: Iterable[str]) -> list[str]:
        """The client links that end at one of ``servers``."""
        wanted = set(servers)
        return [client_link(c, s) for c in self.clients for s in self.servers if s in wanted]

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start every proxy (concurrently). Raises: NodeStartError (the first failure)."""
        results = await asyncio.gather(*(p.start(timeout_s) for p in self.proxies.values()),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def stop(self, timeout_s: float = 10.0) -> None:
        for p in self.proxies.values():
            await p.stop(timeout_s=timeout_s, cause="cluster stop")
        self.dead_port.close()
