"""Put a TCP fault proxy (nodes/tcpproxy) in front of an address, as a NodeProcess.

    px = await start_tcp_link("route-n1-n2", upstream="127.0.0.1:6222",
                              data_dir=run_dir / "proxy-route-n1-n2", seed=7)
    connect_to = px.data_address       # instead of the upstream
    manifest["links"][px.link] = px.manifest_entry()   # for `testbed fault`
    async with ProxyControlClient(px.address) as c:    # px.address = the control port
        await c.add("partition")
    await px.stop()

A TCP proxy has two ports: the data port (``data_address``, what clients or
peer servers connect to) and the gRPC control port (``address``, as for every
node: health, ProxyControl, Status). A restart binds the same data port again,
so the servers' configuration stays valid. The manifest entry is the shape
``testbed fault`` reads (harness/cli_fault.py), plus ``"kind": "tcp"`` and the
data address. Name the data dir ``<mode dir>/proxy-<link>`` as the gRPC proxies'
are: the report's fault timeline and the ``faults`` counts read
``proxy-*/faults.jsonl`` (a TCP firing shows as "fired on call N", N being the
connection id).

A proxy only sees the traffic that goes through it. Servers and clients that
learn each other's real addresses (a NATS server's INFO advertises its
client ``connect_urls`` and gossips route URLs to its peers) may connect around
it; a setup should make them advertise the proxies' data addresses or nothing
(NATS: ``cluster { no_advertise: true }``, ``advertise``), and a test should
check the proxies' Stats show the traffic before it trusts a partition.
A pair of servers whose route may be opened from either side needs a proxy
each way to be partitioned. harness/nats_links.py does all of this for a NATS
cluster (links ``producer-nats-1``, ``route-nats-1-nats-2``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.process import NodeProcess


class TcpLinkProcess(NodeProcess):
    """A ``python -m nodes.tcpproxy`` process on one link.

    Args:
        link: the link's name (letters, digits, ".", "_", "-"; e.g. "client-n1").
        upstream: "host:port" the proxy forwards to.
        data_dir: its data dir (faults.jsonl, logs).
        seed: the run's seed. data_listen: the data address ("127.0.0.1:0" = any port).
        env: extra environment (the cluster's control token: TESTBED_CONTROL_TOKEN).
        args: extra flags (``["--max-connections", "64"]``).
    """

    def __init__(self, link: str, upstream: str, data_dir: Path, *, seed: int = 0,
                 data_listen: str = "127.0.0.1:0", env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        super().__init__("tcpproxy", data_dir,
                         ["--link", link, "--upstream", upstream, "--seed", str(seed),
                          *(args or [])], name=f"tcpproxy-{link}")
        self.link, self.upstream = link, upstream
        self.data_listen = data_listen
        self.env.update(env or {})

    @property
    def data_address(self) -> str | None:
        """The data port ("host:port") once started."""
        return self.info.get("data_address")

    def command(self) -> list[str]:
        return super().command() + ["--data-listen", self.data_address or self.data_listen]

    def manifest_entry(self) -> dict[str, Any]:
        """``{"proxy": control address, "listen": data address, "upstream", "pid",
        "data_dir", "kind": "tcp"}`` for a cluster manifest's ``links``."""
        return {"proxy": self.address, "listen": self.data_address, "upstream": self.upstream,
                "pid": self.pid, "data_dir": str(self.data_dir), "kind": "tcp"}


async def start_tcp_link(link: str, upstream: str, data_dir: Path, *, seed: int = 0,
                         data_listen: str = "127.0.0.1:0", env: dict[str, str] | None = None,
                         timeout_s: float = 30.0) -> TcpLinkProcess:
    """Start a TCP proxy on ``link`` in front of ``upstream``; return it once SERVING.

    Raises: harness.process.NodeStartError (its stderr tail quoted)."""
    p = TcpLinkProcess(link, upstream, data_dir, seed=seed, data_listen=data_listen, env=env)
    await p.start(timeout_s)
    return p
