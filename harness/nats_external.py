"""``--nats-url``: audit a NATS JetStream cluster the user runs elsewhere (link faults only).

    ./run.sh campaign --nats-url nats://10.0.0.5:4222,nats://10.0.0.6:4222 --events 2000

The harness starts no server. It puts one TCP fault proxy in front of each given url per
client (``producer-nats-<i>``, ``processor-nats-<i>``, i = the url's position, as in
harness/nats_links.py), gives the producer and processor only those proxies, and reads the
streams directly (the given urls) for the audit. The servers must not advertise other
client URLs the clients would follow around the proxies: the clients connect with
``dont_randomize`` and nats-py adds discovered URLs only after the given ones, but a
server configured with ``no_advertise: true`` keeps every byte on the proxies.

What it creates on the cluster (the same layout as the local cluster's,
nodes/logclient/nats.py): streams ``orders-<p>`` on subjects ``orders.<p>`` (file storage,
replicas min(3, number of urls), duplicate window 2 min) and the key-value bucket
``offsets``, each with the description :data:`MARK`. Before each mode's run, a stream or
bucket of those names that carries the mark (a previous testbed run's) is deleted and
created again; one without the mark is the user's and is never touched: the run is
refused (:class:`ExternalRefused`, one line, exit 2) naming it.

Refused as well (exit 2): a url that is malformed or does not answer as a NATS server
with JetStream within :data:`REACH_TIMEOUT_S`, and a schedule step that needs the
servers' processes, files or routes (kill, stop, pause, corrupt, power loss of a NATS
server, a partition of the routes): the harness does not run them.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from harness.nats_links import NatsLinks

MARK = "delivery-testbed: orders stream (deleted and re-created by the next testbed run)"
REACH_TIMEOUT_S = 5.0
URL = re.compile(r"^(nats://)?(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
SERVER_STEPS = ("kill", "stop", "pause", "corrupt", "power-loss", "fsync-error", "disk-full",
                "snapshot", "rollback", "wipe", "partition")
"""Steps that act on a server's process, files or routes: not for an external cluster."""


class ExternalRefused(ValueError):
    """The external cluster cannot be used as given; the message is the one line to print."""


def parse_urls(value: str) -> list[str]:
    """"nats://h:p,h2:p2" -> ["h:p", "h2:p2"]. Raises: ExternalRefused naming the bad url."""
    out = []
    for item in (s.strip() for s in value.split(",")):
        m = URL.match(item)
        if not m or not 0 < int(m["port"]) < 65536:
            raise ExternalRefused(f"--nats-url: {item!r} is not nats://HOST:PORT")
        out.append(f"{m['host']}:{m['port']}")
    if not out:
        raise ExternalRefused("--nats-url: no url given")
    return out


def check_steps(steps: list[dict]) -> None:
    """Raises: ExternalRefused for the first step aimed at the external cluster's servers."""
    for i, step in enumerate(steps):
        node = str(step.get("node", ""))
        nodes = step.get("nodes")
        aimed = node.startswith("nats") or node == "broker" or step["f"] == "partition" or (
            step["f"] == "power-loss" and (nodes in (None, "all") or any(str(n).startswith(("nats", "broker"))
                                                                        for n in nodes)))
        if step["f"] in SERVER_STEPS and aimed:
            raise ExternalRefused(f"--nats-url: step {i} ({step['f']} of {node or nodes or 'all'}) needs the "
                                  "servers' processes or files, which the harness does not run for an "
                                  "external cluster: only link faults and faults of the testbed's own nodes")
        if step["f"] == "link" and str(step.get("link", "")).startswith("route-"):
            raise ExternalRefused(f"--nats-url: step {i} faults a route ({step['link']}): an external "
                                  "cluster's routes do not go through the testbed's proxies")


async def check_reachable(addresses: list[str], partitions: int = 4,
                          timeout_s: float = REACH_TIMEOUT_S) -> list[str]:
    """Each address answers as a NATS server, JetStream answers through it, and no
    stream or bucket of the testbed's names belongs to the user (:func:`check_names`).
    Returns notes: a server that advertises other client URLs (``connect_urls``), which a
    client may reconnect to around the proxies.

    Raises: ExternalRefused with the first failure."""
    import nats
    notes = []
    for a in addresses:
        info = await _probe(a, timeout_s)
        others = [u for u in info.get("connect_urls") or [] if u not in addresses]
        if others:
            notes.append(f"note: nats://{a} advertises client URLs {', '.join(others)}: after a fault "
                         "the clients may reconnect there around the proxies (set cluster "
                         "{ no_advertise: true } on the servers)")
        try:
            nc = await asyncio.wait_for(nats.connect(f"nats://{a}", connect_timeout=timeout_s,
                                                     allow_reconnect=False, error_cb=_quiet),
                                        timeout_s + 1)
        except Exception as e:  # refused meanwhile, auth required
            raise ExternalRefused(f"--nats-url: cannot connect to nats://{a}: "
                                  f"{type(e).__name__}: {e or 'no answer'}") from None
        try:
            js = nc.jetstream(timeout=timeout_s)
            try:
                await js.account_info()
            except Exception as e:  # JetStream not enabled, no quorum
                from nats.errors import NoRespondersError
                from nats.js.errors import ServiceUnavailableError
                why = ("no JetStream there (a server started without -js, or a cluster without quorum)"
                       if isinstance(e, (ServiceUnavailableError, NoRespondersError))   # nats-py's repr is
                       else f"{type(e).__name__}: {e}")                                  # all "None" fields
                raise ExternalRefused(f"--nats-url: nats://{a} answers but JetStream does not: {why}") from None
            await check_names(js, partitions)
        finally:
            await nc.close()
    return notes


async def _quiet(e: Exception) -> None:
    """nats-py's error callback: the caller reports failures itself (no traceback on stderr)."""


async def _probe(address: str, timeout_s: float) -> dict:
    """A TCP connect and the server's first line (a NATS server greets with ``INFO {...}``);
    returns the INFO's JSON.

    Raises: ExternalRefused: refused, timed out, or not a NATS server."""
    host, _, port = address.rpartition(":")
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), timeout_s)
    except asyncio.TimeoutError:
        raise ExternalRefused(f"--nats-url: nats://{address} did not accept a connection within "
                              f"{timeout_s:.0f} s") from None
    except OSError as e:
        raise ExternalRefused(f"--nats-url: cannot reach nats://{address}: {e.strerror or e}") from None
    try:
        line = await asyncio.wait_for(r.readline(), timeout_s)
    except (OSError, asyncio.TimeoutError):
        line = b""
    finally:
        w.close()
    if not line.startswith(b"INFO "):
        raise ExternalRefused(f"--nats-url: nats://{address} is not a NATS server (it did not greet "
                              "with INFO)")
    try:
        return json.loads(line[5:])
    except ValueError:
        return {}


def _names(partitions: int) -> list[str]:
    from nodes.logclient.nats import OFFSETS_BUCKET, stream_name
    return [stream_name(p) for p in range(partitions)] + [f"KV_{OFFSETS_BUCKET}"]


async def check_names(js, partitions: int) -> list[str]:
    """The testbed's own streams that exist (to delete). Raises: ExternalRefused: one of
    the names is a stream without :data:`MARK` (the user's)."""
    import nats.js.errors
    ours = []
    for name in _names(partitions):
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            continue
        if (info.config.description or "") != MARK:
            raise ExternalRefused(
                f"--nats-url: stream {name} already exists and was not created by the testbed "
                f"(description {info.config.description!r}, {info.state.messages} messages): the "
                "testbed needs streams orders-<p> and the bucket offsets (stream KV_offsets) of its "
                "own; remove it or use another cluster or account")
        ours.append(name)
    return ours


def validate_external(nats_url: str, schedule: dict, storage: str, partitions: int = 4,
                      note=lambda line: None) -> str:
    """The CLI's check before a run: urls, steps, storage, reachability. Returns the
    normalised url ("nats://h:p,..."); ``note`` gets each warning line (advertised URLs).
    Raises: ExternalRefused (one line)."""
    addresses = parse_urls(nats_url)
    check_steps(schedule.get("steps", []))
    if storage == "lazy":
        raise ExternalRefused("--nats-url: --storage lazy needs the servers' data dirs; an external "
                              "cluster's are not the harness's")
    for line in asyncio.run(check_reachable(addresses, partitions)):
        note(line)
    return ",".join(f"nats://{a}" for a in addresses)


class ExternalNats:
    """Stands where harness.nats_cluster.NatsCluster stands in a Cluster: no server
    processes, client proxies in front of the given urls, the streams set up on start.

    Args:
        run_dir: the proxies' data dirs go under it. url: "nats://h:p[,...]".
        partitions: one stream per partition. seed, env: the proxies'.
    """

    sync = "external"

    def __init__(self, run_dir: Path, url: str, partitions: int, *, seed: int = 0,
                 env: dict[str, str] | None = None) -> None:
        self.addresses = parse_urls(url)
        self.partitions = partitions
        self.servers: list = []   # none of the harness's
        ports = {f"nats-{i + 1}": {"client": int(a.rsplit(":", 1)[1])} for i, a in enumerate(self.addresses)}
        self.links = NatsLinks(Path(run_dir), ports, seed=seed, env=env, routes=False,
                               hosts={f"nats-{i + 1}": a.rsplit(":", 1)[0] for i, a in enumerate(self.addresses)})

    @property
    def url(self) -> str:
        return ",".join(f"nats://{a}" for a in self.addresses)

    def client_url(self, client: str) -> str:
        return self.links.client_url(client)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start the proxies, then (re)create the streams and the offsets bucket.

        Raises: ExternalRefused (a stream or bucket of the user's), NodeStartError."""
        from harness.process import NodeStartError
        await self.links.start(timeout_s)
        try:
            await setup_streams(self.url, self.partitions, min(3, len(self.addresses)), timeout_s)
        except ExternalRefused as e:
            raise NodeStartError(str(e)) from None
        except Exception as e:   # the cluster went away since the CLI's check
            raise NodeStartError(f"--nats-url: cannot set up the streams on {self.url}: "
                                 f"{type(e).__name__}: {e}") from None

    async def leader(self, partition: int = 0) -> None:
        return None

    async def stop(self, timeout_s: float = 10.0) -> None:
        await self.links.stop(timeout_s)


async def setup_streams(url: str, partitions: int, replicas: int, timeout_s: float) -> None:
    """Delete the testbed's own leftovers (marked :data:`MARK`), create the streams and bucket.

    Raises: ExternalRefused: a stream or bucket of those names without the mark."""
    import nats
    import nats.js.errors
    from nats.js.api import KeyValueConfig, StorageType, StreamConfig
    from nodes.logclient.nats import OFFSETS_BUCKET, stream_name, subject
    nc = await nats.connect(servers=url.split(","), connect_timeout=timeout_s, dont_randomize=True,
                            error_cb=_quiet)
    try:
        js = nc.jetstream(timeout=timeout_s)
        for name in await check_names(js, partitions):   # a previous testbed run's
            await js.delete_stream(name)
        try:
            for p in range(partitions):
                await js.add_stream(StreamConfig(name=stream_name(p), subjects=[subject(p)],
                                                 num_replicas=replicas, storage=StorageType.FILE,
                                                 duplicate_window=120.0, description=MARK))
            await js.create_key_value(KeyValueConfig(bucket=OFFSETS_BUCKET, replicas=replicas,
                                                     storage=StorageType.FILE, description=MARK))
        except nats.js.errors.APIError as e:   # subjects overlap a stream of the user's, no resources
            raise ExternalRefused(f"--nats-url: cannot create the testbed's streams: {e.description or e}") from None
    finally:
        await nc.close()
