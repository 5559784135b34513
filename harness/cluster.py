"""A local cluster: producer, broker, processor and sink processes, with a
fault-injecting proxy on every link, on free loopback ports.

    producer --[producer-broker]--> broker --[processor-broker]--> processor --[processor-sink]--> sink

Every process is a :class:`~harness.process.NodeProcess` held by pid. The
cluster writes ``<run-dir>/cluster.json`` (addresses, pids, data dirs) so
that ``testbed fault ...`` can find the proxies of a running cluster, and
ends everything it started in :meth:`Cluster.stop`, also when interrupted.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import grpc

from harness import interrupt
from harness.ablations import flags_for
from harness import group_cluster
from harness.mosquitto import MosquittoServer
from harness.nats_cluster import SERVERS as NATS_SERVERS, NatsCluster
from harness.port_retry import empty_dir, start_on_fresh_ports
from harness.process import NodeProcess
from harness.proxy_process import GrpcProxyProcess
from harness.storage import LazyMount
from nodes.common import control_auth
from nodes.common.channels import insecure_channel
from nodes.common.modes import EXACTLY_ONCE, SINK_IDEMPOTENT, TOPIC
from nodes.pb import broker_pb2, broker_pb2_grpc, node_pb2, node_pb2_grpc

LINKS = {
    # link name: (client node, server node)
    "producer-broker": ("producer", "broker"),
    "processor-broker": ("processor", "broker"),
    "processor-sink": ("processor", "sink"),
}
NODE_ORDER = ("sink", "broker", "processor", "producer")
MQTT_QUIET_MS = 1000
"""--broker mosquitto: drained needs the processor's session connected and silent this
long (mosquitto pushes every queued message at once to a connected subscriber)."""


class DrainTimeout(Exception):
    """The pipeline did not drain within the allowed time; the message says what lagged."""


@dataclass
class ClusterConfig:
    """Everything that decides how a cluster is started.

    Attributes:
        mode: "at-most-once" | "at-least-once" | "exactly-once".
        sink_strategy: exactly-once only: "idempotent" | "transactional".
        seed: workload and proxy RNG seed.
        events: number of orders in the generated workload.
        workload_file: a JSONL workload instead of the generated one.
        rate: producer rate in events/s (0 = as fast as possible).
        batch_size: producer batch size (events).
        partitions: broker partition count.
        proxies: put a fault-injecting proxy on every link.
        disabled: ablation names (harness.ablations.ABLATIONS).
        extra_args: extra command-line flags per node name.
        external: node name ("processor", "sink") -> the user's command that runs
            in its place (harness.external; docs/contract.md).
        storage: "direct" (data dirs on the real file system) | "lazy" (each node's
            data dir a lazy FUSE mount that drops unsynced writes on power loss,
            harness.storage).
        broker: "builtin" (the testbed's gRPC broker) | "nats" (a 3-server NATS JetStream
            cluster, harness/nats_cluster.py; with ``proxies`` a TCP proxy on every client
            link and route, harness/nats_links.py).
        nats_sync: "default" | "always": JetStream's ``sync_interval``.
        nats_url: "nats://h:p[,...]": a NATS cluster the user runs elsewhere (--nats-url,
            harness/nats_external.py): no server started, client-link proxies only.
    """

    mode: str = "at-least-once"
    sink_strategy: str | None = None
    seed: int = 1
    events: int = 10_000
    accounts: int = 16
    workload_file: str | None = None
    rate: float = 0.0
    batch_size: int = 100
    partitions: int = 4
    proxies: bool = True
    disabled: list[str] = field(default_factory=list)
    extra_args: dict[str, list[str]] = field(default_factory=dict)
    ack_timeout_ms: int = 1000
    sink_timeout_ms: int = 1000
    external: dict[str, str] = field(default_factory=dict)
    external_start_s: float = 30.0
    """How long an external node may take to report SERVING (check-node's --timeout)."""
    storage: str = "direct"
    sequential_sends: bool = False
    """Producer ``--sequential-sends`` (a batch's partitions one after another;
    at-most-once: ``--max-in-flight 1``)."""
    fetch_group: int = 0
    """Processor ``--fetch-group`` (at-most/at-least-once steps of K records of one
    partition, nodes/processor/grouping.py); 0 = one Fetch per step."""
    broker: str = "builtin"
    nats_sync: str = "default"
    nats_url: str | None = None
    processors: int = 1
    """Processor processes in consumer group ``processor`` (harness/group_cluster.py); 1 =
    the standalone single processor."""
    session_timeout_ms: int = group_cluster.DEFAULT_SESSION_TIMEOUT_MS
    """With processors > 1: each member's consumer-group session timeout (ms)."""
    mqtt_autosave: str = "default"
    mqtt_subscribe_qos: int | None = None
    """--broker mosquitto: the processor's subscription QoS; None = the mode's (0/1/2)."""

    def __post_init__(self) -> None:
        if self.mode == EXACTLY_ONCE and self.sink_strategy is None:
            self.sink_strategy = SINK_IDEMPOTENT
        if self.mode != EXACTLY_ONCE:
            self.sink_strategy = None

    @property
    def label(self) -> str:
        return f"{self.mode}/{self.sink_strategy}" if self.sink_strategy else self.mode


class Cluster:
    """Start, inspect and stop one cluster under ``run_dir``.

    Args:
        config: how to start it.
        run_dir: directory for the nodes' data dirs and ``cluster.json``.
    """

    def __init__(self, config: ClusterConfig, run_dir: Path) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.nodes: dict[str, NodeProcess] = {}
        self.proxies: dict[str, NodeProcess] = {}
        self.mounts: dict[str, LazyMount] = {}
        self.nats: NatsCluster | None = None
        self.mosquitto: MosquittoServer | None = None
        self.started_at: float | None = None
        self.control_token = os.environ.get(control_auth.TOKEN_ENV) or secrets.token_hex(16)
        """Required on every node's and proxy's control calls (nodes/common/control_auth.py);
        the user's $TESTBED_CONTROL_TOKEN, else a fresh one per cluster."""
        self.first_start_env: dict[str, dict[str, str]] = {}
        """Per node not started yet: environment for its first start only (the failpoint
        nemesis arms a producer's failpoints this way before the workload starts)."""

    # ----- start / stop -------------------------------------------------------------------

    def _node_args(self, name: str) -> list[str]:
        c = self.config
        args = ["--mode", c.mode]
        if name == "broker":
            args += ["--partitions", str(c.partitions)]
        elif name == "producer":
            args += ["--broker", self.address_for("producer", "broker"), "--batch-size",
                     str(c.batch_size), "--rate", str(c.rate), "--ack-timeout-ms", str(c.ack_timeout_ms)]
            if c.sequential_sends:  # at-most-once: one fire-and-forget send in flight at a time
                args += ["--sequential-sends"] if c.mode != "at-most-once" else ["--max-in-flight", "1"]
            if c.workload_file:
                args += ["--workload", str(c.workload_file)]
            else:
                args += ["--seed", str(c.seed), "--count", str(c.events), "--accounts", str(c.accounts)]
        elif group_cluster.is_processor(name):
            args += ["--broker", self.address_for(name, "broker"),
                     "--sink", self.address_for(name, "sink"),
                     "--sink-timeout-ms", str(c.sink_timeout_ms)]
            if c.processors > 1:
                args += group_cluster.member_args(name, c.session_timeout_ms)
            if c.fetch_group:
                args += ["--fetch-group", str(c.fetch_group)]
            if c.sink_strategy:
                args += ["--sink-strategy", c.sink_strategy]
        node = "processor" if group_cluster.is_processor(name) else name
        return args + flags_for(node, c.disabled) + list(c.extra_args.get(name, []))

    def address_for(self, client: str, server: str) -> str:
        """The address ``client`` dials to reach ``server``: the link's proxy, or direct."""
        link = f"{client}-{server}"
        if server == "broker" and self.nats is not None:
            return self.nats.client_url(client)
        if server == "broker" and self.mosquitto is not None:
            return self.mqtt_url(client)
        if link in self.proxies:
            p = self.proxies[link]
            return getattr(p, "dial_address", None) or p.address  # type: ignore[return-value]
        return self.nodes[server].address  # type: ignore[return-value]

    async def start(self, *, start_producer: bool = True,
                    links_up: Callable[[], Awaitable[object]] | None = None) -> None:
        """Start sink, broker, the proxies, processor and (unless told not to) producer.

        ``links_up`` is awaited once the proxies run and before any node that calls
        through them (processor, producer) starts: link faults armed there count
        every call of those nodes, from their first.

        Raises:
            harness.process.NodeStartError: a node failed to reach SERVING; the
                nodes already started are stopped before the error propagates.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        try:
            # Independent processes start concurrently (sink with broker, then the three
            # proxies): each pays its interpreter start-up on its own, in parallel.
            await _all(self._start_node("sink"), self._start_broker())
            if self.config.proxies:
                for link, (client, server) in self.links().items():
                    if server not in self.nodes:
                        continue   # the NATS servers: no gRPC proxy (a TCP proxy would go there)
                    self.proxies[link] = GrpcProxyProcess(
                        link, self.nodes[server].address, self.run_dir / f"proxy-{link}",
                        seed=self.config.seed, control_token=self.control_token)
                await _all(*(p.start() for p in self.proxies.values() if not p.running))
            self.write_manifest()
            if links_up is not None:
                await links_up()
            for name in self.processor_names():
                await self._start_node(name)
            if self.mosquitto is not None and "processor" not in self.config.external:
                # nothing published before the subscriber's session is connected: no message
                # queued (and saved, with autosave on changes) at start, whatever the timing
                from harness.nemesis.hold import wait_session
                await wait_session(self)
            if start_producer:
                await self._start_node("producer")
        except BaseException:
            await self.stop()
            raise
        finally:
            self.write_manifest()

    def processor_names(self) -> list[str]:
        """``["processor"]``, or with ``processors`` N > 1 the N group members
        (harness/group_cluster.py), plus any added by :meth:`add_processor`."""
        names = group_cluster.member_names(self.config.processors)
        return names + sorted((n for n in self.nodes if group_cluster.is_processor(n) and n not in names),
                              key=lambda n: int(n.rsplit("-", 1)[1]))

    def links(self) -> dict[str, tuple[str, str]]:
        """Every proxied link: {link: (client, server)}."""
        return LINKS | group_cluster.member_links(self.processor_names())

    def _external_settings(self, name: str) -> dict:
        """What an external node is told (flags and TESTBED_* env; docs/contract.md)."""
        c = self.config
        settings = {"mode": c.mode}
        if name == "processor":
            settings |= {"broker": self.address_for("processor", "broker"),
                         "sink": self.address_for("processor", "sink"), "group": "processor"}
        if c.sink_strategy:
            settings["sink_strategy"] = c.sink_strategy
        return settings

    def mqtt_url(self, client: str) -> str:
        """The address ``client`` is given for the MQTT broker (nodes/logclient/mqtt.py)."""
        link = self.proxies.get(f"{client}-broker")   # a TCP fault proxy on the client's link
        where = getattr(link, "data_address", None) or self.mosquitto.address
        url = f"mqtt://{where}?partitions={self.config.partitions}&client={client}"
        if client == "processor" and self.config.mqtt_subscribe_qos is not None:
            url += f"&sub_qos={self.config.mqtt_subscribe_qos}"
        return url

    async def _start_mosquitto(self) -> None:
        """mosquitto (registered in ``nodes`` as ``mosquitto``), then the processor's persistent
        session, subscribed before anything is published (nodes/logclient/mqtt.py)."""
        from nodes.logclient.mqtt import create_session
        def make() -> MosquittoServer:
            self.mosquitto = MosquittoServer(self.run_dir / "mosquitto", self.config.mqtt_autosave)
            self.nodes["mosquitto"] = self.mosquitto
            return self.mosquitto

        async def undo(server: MosquittoServer) -> None:
            empty_dir(server.data_dir)   # it exited on the bind: nothing to stop
        await start_on_fresh_ports(make, lambda server: server.start(), undo, "mosquitto")
        await create_session(self.mqtt_url("processor"), self.config.mode)   # direct, no proxy yet
        if self.config.proxies:   # producer and processor reach mosquitto through a TCP fault proxy
            from harness.tcp_link import TcpLinkProcess
            for link in ("producer-broker", "processor-broker"):
                self.proxies[link] = TcpLinkProcess(link, self.mosquitto.address, self.run_dir / f"proxy-{link}",
                                                    seed=self.config.seed,
                                                    env={control_auth.TOKEN_ENV: self.control_token})
            await _all(*(self.proxies[link].start() for link in ("producer-broker", "processor-broker")))
        self.write_manifest()

    async def _start_broker(self) -> None:
        """The builtin broker node, or the NATS servers (registered in ``nodes`` as nats-<i>),
        or mosquitto."""
        if self.config.broker == "mosquitto":
            await self._start_mosquitto()
            return
        if self.config.broker != "nats":
            await self._start_node("broker")
            return
        if self.config.nats_url:   # the user's cluster: proxies in front of it, streams set up
            from harness.nats_external import ExternalNats
            self.nats = ExternalNats(self.run_dir, self.config.nats_url, self.config.partitions,
                                     seed=self.config.seed, env={control_auth.TOKEN_ENV: self.control_token})
            self.proxies.update(self.nats.links.proxies)
            await self.nats.start()
            self.write_manifest()
            return
        names = [f"nats-{i + 1}" for i in range(NATS_SERVERS)]
        if self.config.storage == "lazy":   # each server's data dir on its own lazy FUSE mount
            for name in names:
                mount = self.mounts.setdefault(name, LazyMount(self.run_dir, name))
                if not mount.running:
                    await mount.start()
        def data_dir_for(name: str) -> Path:
            return self.mounts[name].mount if name in self.mounts else self.run_dir / name
        def make() -> NatsCluster:
            self.nats = NatsCluster(self.run_dir, self.config.partitions, self.config.nats_sync,
                                    data_dir_for=data_dir_for, links=self.config.proxies,
                                    seed=self.config.seed, env={control_auth.TOKEN_ENV: self.control_token})
            for srv in self.nats.servers:
                self.nodes[srv.name] = srv
            if self.nats.links is not None:   # TCP proxies on every client link and route
                self.proxies.update(self.nats.links.proxies)
            return self.nats

        async def undo(nats: NatsCluster) -> None:
            await nats.stop()
            for srv in nats.servers:
                empty_dir(srv.data_dir)
        await start_on_fresh_ports(make, lambda nats: nats.start(), undo, "NATS cluster")
        for name in names:   # the stream definitions are on disk before the workload starts
            if name in self.mounts:
                await self.mounts[name].control("sync")
        self.write_manifest()

    async def _start_node(self, name: str) -> NodeProcess:
        data_dir = self.run_dir / name
        if self.config.storage == "lazy":
            mount = self.mounts.setdefault(name, LazyMount(self.run_dir, name))
            if not mount.running:
                await mount.start()
            data_dir = mount.mount
        if name in self.config.external:
            from harness.external import ExternalNodeProcess
            p: NodeProcess = ExternalNodeProcess(name, self.config.external[name], data_dir,
                                                 self._external_settings(name),
                                                 start_timeout_s=self.config.external_start_s)
        else:
            module = "processor" if group_cluster.is_processor(name) else name
            p = NodeProcess(module, data_dir, self._node_args(name), name=name)
        p.env[control_auth.TOKEN_ENV] = self.control_token
        control_auth.set_token(self.control_token)
        p.once_env.update(self.first_start_env.pop(name, {}))
        self.nodes[name] = p
        await p.start()
        self.write_manifest()
        return p

    async def start_producer(self) -> NodeProcess:
        """Start the producer (when :meth:`start` was told not to)."""
        p = await self._start_node("producer")
        self.write_manifest()
        return p

    async def resolve_node(self, step: dict) -> NodeProcess:
        """The process a process-fault step acts on: ``step["node"]``, or for ``"nats"`` the
        server of role ``step["role"]`` ("leader": the stream leader of partition 0, asked
        of the servers' /jsz; "follower": another server; "any": the first running one).

        Raises:
            KeyError: no such node, or no server of that role answers.
        """
        if step["node"] != "nats":
            return self.nodes[step["node"]]
        if self.nats is None:
            raise KeyError("nats: this cluster runs the builtin broker")
        leader = await self.nats.leader()
        role = step.get("role", "leader")
        by_name = {s.name: s for s in self.nats.servers}
        if role == "leader" and leader in by_name:
            return by_name[leader]
        if role == "follower":
            for s in self.nats.servers:
                if s.name != leader and s.running:
                    return s
        if role == "any":
            return next(s for s in self.nats.servers if s.running)
        raise KeyError(f"nats: no running server of role {role!r} (leader {leader!r})")

    def link_proxies(self, link: str) -> dict[str, NodeProcess]:
        """The proxies a link step acts on: the link's own, or with NATS, for
        "producer-broker" / "processor-broker", the client's proxy to every server
        (harness/nats_links.py). Empty when there is none."""
        if link in self.proxies:
            return {link: self.proxies[link]}
        if self.nats is not None and self.nats.links is not None and link in ("producer-broker", "processor-broker"):
            from harness.nats_links import client_link
            client = link.split("-", 1)[0]
            return {n: self.proxies[n] for n in (client_link(client, s) for s in self.nats.links.servers)
                    if n in self.proxies}
        return {}

    def all_processes(self) -> list[NodeProcess]:
        return [*self.nodes.values(), *self.proxies.values()]

    async def stop(self) -> None:
        """SIGTERM every process (producer first, sink last); SIGKILL any that hangs."""
        order = ["producer", *self.processor_names()]
        procs = [self.nodes[n] for n in order if n in self.nodes]
        # a NATS cluster's routes stay up until its servers stop (the dump needs a quorum)
        procs += [p for n, p in self.proxies.items() if not n.startswith("route-")]
        servers = [self.nodes[n] for n in ("broker", "sink") if n in self.nodes]
        if self.nats is not None:
            servers = self.nats.servers + servers
        if self.mosquitto is not None:
            servers = [self.mosquitto, *servers]
        try:
            for p in procs:
                await p.stop(timeout_s=10, cause="cluster stop")
            if self.nats is not None:
                try:
                    await self.dump_streams()
                except Exception as e:   # servers down: the audit says the dump is missing
                    (self.run_dir / "broker").mkdir(parents=True, exist_ok=True)
                    (self.run_dir / "broker" / "nats-dump-error.txt").write_text(f"{e!r}\n")
            for p in servers:
                await p.stop(timeout_s=10, cause="cluster stop")
            if self.nats is not None:
                await self.nats.stop()   # the route proxies (the servers are down already)
        finally:
            for m in self.mounts.values():
                await m.stop()

    async def dump_streams(self) -> None:
        """What the NATS streams hold, per server, into ``broker/nats-streams.json`` (the
        audit's input in place of the builtin broker's log files; harness/nats_dump.py)."""
        from harness.nats_dump import dump_streams
        await dump_streams(self.nats, self.run_dir / "broker")

    def kill_all_now(self) -> None:
        """kill -9 everything at once (last resort, e.g. from an atexit hook), and unmount."""
        for p in self.all_processes():
            p.kill_now()
        for m in self.mounts.values():
            m.kill_now()

    def write_manifest(self) -> None:
        """Write ``cluster.json``: {run_dir, config, nodes: {name: {address, pid, data_dir,
        storage (lazy only): {kind, backing, mount, pid, state_dir}}},
        links: {link: {proxy, upstream, pid, data_dir}}, nats (NATS only): {url, sync,
        servers: {name: ports}, pids: {name: pid}, external}, mosquitto (MQTT only): {address,
        pid, autosave, persistence}}."""
        def info(p: NodeProcess) -> dict:
            out = {"address": p.address, "pid": p.pid, "data_dir": str(p.data_dir)}
            if getattr(p, "external", False):
                out |= {"external_command": p.command_line, "node_control": p.control}
            if p.name in self.mounts:
                m = self.mounts[p.name]
                out["storage"] = {"kind": "lazy", "backing": str(m.backing), "mount": str(m.mount),
                                  "pid": m.pid, "state_dir": str(m.state_dir)}
            return out
        links = {}
        for link, p in self.proxies.items():
            links[link] = p.manifest_entry()   # a GrpcProxyProcess, or a TCP proxy (MQTT's client links)
        manifest = {"run_dir": str(self.run_dir), "config": asdict(self.config),
                    "nodes": {n: info(p) for n, p in self.nodes.items()}, "links": links,
                    "control_token": self.control_token}
        if self.nats is not None:
            manifest["nats"] = {"url": self.nats.url, "sync": self.nats.sync,
                                "servers": {s.name: dict(s.ports) for s in self.nats.servers},
                                "pids": {s.name: s.pid for s in self.nats.servers},
                                "external": bool(self.config.nats_url)}
        if self.mosquitto is not None:
            manifest["mosquitto"] = {"address": self.mosquitto.address, "pid": self.mosquitto.pid,
                                     "autosave": self.mosquitto.autosave,
                                     "persistence": str(self.mosquitto.data_dir / "mosquitto.db")}
        (self.run_dir / "cluster.json").write_text(json.dumps(manifest, indent=2) + "\n")

    # ----- inspection ---------------------------------------------------------------------

    async def status(self, name: str, timeout_s: float = 2.0) -> dict:
        """The node's NodeControl.Status JSON (direct, never through a proxy).

        Raises:
            grpc.aio.AioRpcError: the node is down or did not answer in time.
        """
        p = self.nodes.get(name) or self.proxies[name]
        async with control_auth.control_channel(p.address, self.control_token) as ch:
            resp = await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=timeout_s)
        return json.loads(resp.status_json)

    def has_status(self, name: str) -> bool:
        """Whether the node serves NodeControl.Status (every built-in node does; an
        external one only if its probe at start said so)."""
        p = self.nodes.get(name)
        return p is None or getattr(p, "control", True) is not False

    async def committed_progress(self, group: str = "processor", timeout_s: float = 2.0) -> dict:
        """A processor's progress without its Status: the group's committed offsets at the
        broker as ``durable_positions`` (the contract: an external processor commits the
        offsets whose effects are durable in the sink)."""
        async with insecure_channel(self.nodes["broker"].address) as ch:
            resp = await broker_pb2_grpc.BrokerStub(ch).FetchCommittedOffset(
                broker_pb2.FetchCommittedOffsetRequest(group=group, topic=TOPIC), timeout=timeout_s)
        offsets = {str(po.partition): po.offset for po in resp.offsets}
        return {"durable_positions": offsets, "positions": offsets, "source": "broker committed offsets"}

    async def high_watermarks(self, timeout_s: float = 2.0) -> dict[int, int]:
        """Broker high watermark per partition (direct). MQTT keeps no log: the processor's
        local queue ends, once its session is connected and no message arrived for
        :data:`MQTT_QUIET_MS` (else UNAVAILABLE: not drained yet)."""
        if self.mosquitto is not None:
            st = await self.status("processor", timeout_s)
            lc = st.get("log_client") or {}
            ends = lc.get("ends") or {}
            if not lc.get("connected") or int(lc.get("quiet_ms", 0)) < MQTT_QUIET_MS \
                    or len(ends) < self.config.partitions:
                from nodes.logclient import log_error
                raise log_error(grpc.StatusCode.UNAVAILABLE,
                                f"mqtt session {'quiet' if lc.get('connected') else 'disconnected'} "
                                f"for {lc.get('quiet_ms')} ms")
            return {int(p): o for p, o in ends.items()}
        if self.nats is not None:
            from nodes.logclient import open_client
            client = open_client(self.nats.url, mode=self.config.mode)
            try:
                resp = await client.ListOffsets(broker_pb2.ListOffsetsRequest(topic=TOPIC), timeout=timeout_s)
            finally:
                await client.close()
            return {p.partition: p.offset for p in resp.high_watermarks}
        async with insecure_channel(self.nodes["broker"].address) as ch:
            resp = await broker_pb2_grpc.BrokerStub(ch).ListOffsets(
                broker_pb2.ListOffsetsRequest(topic=TOPIC), timeout=timeout_s)
        return {p.partition: p.offset for p in resp.high_watermarks}

    async def drain_progress(self) -> dict:
        """One look at how far the pipeline is: producer position, broker ends, processor positions."""
        out: dict = {}
        for name in ("producer", "processor"):
            try:
                if name == "processor" and self.config.processors > 1:
                    out[name] = await group_cluster.group_status(self)
                elif name == "processor" and not self.has_status("processor"):
                    out[name] = await self.committed_progress()
                else:
                    out[name] = await self.status(name)
                    if name == "processor" and "durable_positions" not in out[name]:
                        # an external processor's Status without it: its committed offsets
                        out[name] |= await self.committed_progress()
            except grpc.aio.AioRpcError as e:
                out[name] = {"error": e.code().name}
        try:
            out["high_watermarks"] = await self.high_watermarks()
        except grpc.aio.AioRpcError as e:
            out["high_watermarks"] = {"error": e.code().name}
        return out

    async def wait_drained_or_stuck(self, timeout_s: float, stuck_s: float, poll_s: float = 0.1) -> tuple[bool, dict]:
        """Wait until drained (True) or until nothing moved for ``stuck_s`` seconds or
        ``timeout_s`` passed (False): the bounded wait with faults still armed, before
        the final heal. Returns (drained, last progress)."""
        deadline = time.monotonic() + timeout_s
        last: dict = {}
        mark, moved_at = None, time.monotonic()
        while True:
            interrupt.check()
            last = await self.drain_progress()
            if _drained(last):
                return True, last
            now = time.monotonic()
            m = _progress_mark(last)
            if m != mark:
                mark, moved_at = m, now
            if now > deadline or now - moved_at > stuck_s:
                return False, last
            await asyncio.sleep(poll_s)

    def could_not_restart(self) -> str | None:
        """"<node> could not restart: <why>" for a node that is down because its last start
        failed (e.g. it refused its data dir: exit 2 naming the file), else None."""
        for name, p in self.nodes.items():
            if not p.running and p.start_error:
                return f"{name} could not restart: {p.start_error}"
        return None

    async def wait_drained(self, timeout_s: float = 60.0, poll_s: float = 0.1) -> dict:
        """Wait until the producer is done and the processor's durable positions reach
        the broker's high watermarks on every partition; return the last progress.

        Raises:
            DrainTimeout: not drained after ``timeout_s``, or at once when a node is down
                because it could not restart (:meth:`could_not_restart`); says what lagged.
        """
        deadline = time.monotonic() + timeout_s
        last: dict = {}
        while True:
            interrupt.check()
            down = self.could_not_restart()
            if down:
                raise DrainTimeout(f"pipeline cannot drain: {down}")
            last = await self.drain_progress()
            if _drained(last):
                return last
            if time.monotonic() > deadline:
                raise DrainTimeout(f"pipeline not drained after {timeout_s:.0f} s: {_lag(last)}")
            await asyncio.sleep(poll_s)


async def _all(*starts) -> None:
    """Await every start; then raise the first error (none is left running unobserved)."""
    results = await asyncio.gather(*starts, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _drained(progress: dict) -> bool:
    prod, proc, hw = progress.get("producer", {}), progress.get("processor", {}), progress.get("high_watermarks", {})
    if "error" in prod or "error" in proc or "error" in hw or not prod.get("done"):
        return False
    durable = {int(k): v for k, v in proc.get("durable_positions", {}).items()}
    return all(durable.get(p, 0) >= off for p, off in hw.items())


def _progress_mark(progress: dict) -> tuple:
    """What changes while the pipeline moves: producer position, high watermarks,
    the processor's positions (an error counts as a state, not as movement)."""
    prod, proc, hw = progress.get("producer", {}), progress.get("processor", {}), progress.get("high_watermarks", {})
    return (prod.get("position"), prod.get("done"), json.dumps(hw, sort_keys=True, default=str),
            json.dumps(proc.get("durable_positions"), sort_keys=True, default=str),
            json.dumps(proc.get("positions"), sort_keys=True, default=str), proc.get("records"),
            proc.get("checkpoints"))


def lag(progress: dict) -> str:
    """What keeps the pipeline from being drained, in one line."""
    return _lag(progress)


def _lag(progress: dict) -> str:
    prod, proc, hw = progress.get("producer", {}), progress.get("processor", {}), progress.get("high_watermarks", {})
    parts = []
    if "error" in prod:
        parts.append(f"producer unreachable ({prod['error']})")
    elif not prod.get("done"):
        parts.append(f"producer at {prod.get('position')}/{prod.get('total')}")
    if "error" in proc:
        parts.append(f"processor unreachable ({proc['error']})")
    elif "error" not in hw:
        durable = {int(k): v for k, v in proc.get("durable_positions", {}).items()}
        lag = {p: off - durable.get(p, 0) for p, off in hw.items() if durable.get(p, 0) < off}
        if lag:
            parts.append(f"processor behind the broker by {lag} records per partition")
    if "error" in hw:
        parts.append(f"broker unreachable ({hw['error']})")
    return "; ".join(parts) or "unknown"
