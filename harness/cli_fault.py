"""``testbed fault ...``: add, remove, list and heal link faults on a running cluster.

    testbed fault add drop-response --link producer-broker --probability 0.3
    testbed fault add late --link processor-broker --method CommitOffset --hold-ms 800
    testbed fault add drop-request --link producer-broker --method Produce --match partition=2
    testbed fault list
    testbed fault stats --link producer-broker
    testbed fault remove f1 --link producer-broker
    testbed fault heal
    testbed fault add latency --link route-n1-n2 --delay-ms 100 --jitter-ms 20   # a TCP link
    testbed fault add partition --link route-n1-n2 --direction both
    testbed fault down --link client-n1      # TCP links: refuse and close connections
    testbed fault up --link client-n1

TCP links (nodes/tcpproxy, ``"kind": "tcp"`` in the manifest) take the TCP
toxics (latency, bandwidth, blackhole, partition, reset, slow-close, slicer,
limit-data) with ``--direction``; gRPC links take the gRPC fault kinds. A kind
or option the link's proxy does not take is refused by the proxy
(INVALID_ARGUMENT, exit 2).

The proxies are found in the cluster manifest: ``--cluster PATH``, or by default
the running ``up`` of this checkout, named in the pid-checked ``runs/up.json``
(harness.upfile; a stale file whose ``up`` died is ignored with a one-line note;
never ``runs/latest``). Every command prints the cluster it acts on to stderr.
The manifest (written by harness.cluster):
``{"links": {"producer-broker": {"proxy": "127.0.0.1:P", "upstream": ..., "pid": ...,
"data_dir": ...}, ...}, ...}``.

Exit codes: 0 done; 1 a proxy could not be reached or failed; 2 usage error
(no cluster, unknown link, an unknown fault id (NOT_FOUND), or a fault spec the
proxy refused as INVALID_ARGUMENT, with the field's name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click
import grpc
from rich.console import Console
from rich.table import Table

from nodes.common.cli_types import FiniteFloat
from harness import proxy_client, upfile
from nodes.proxy.faults import FAULTS
from nodes.proxy.fault import InvalidFault
from nodes.proxy.faults.delay import SIDES
from nodes.proxy.match import parse_rules
from nodes.tcpproxy.toxic import DIRECTION_CHOICES
from nodes.tcpproxy.toxics import TOXICS

KINDS = list(FAULTS) + [k for k in TOXICS if k not in FAULTS]
"""gRPC fault kinds, then the TCP toxics (partition is both)."""

NO_CLUSTER = "no running cluster: start one with ./run.sh up (or pass --cluster)"


class FaultUsageError(click.ClickException):
    """A one-line usage error ("Error: ..."), exit code 2."""

    exit_code = 2


def resolve_cluster(cluster: Path | None) -> Path:
    """The manifest to act on: ``--cluster``, else the running ``up``'s (runs/up.json);
    says which on stderr. Raises: FaultUsageError (exit 2): no running ``up``."""
    if cluster is not None:
        click.echo(f"cluster: {cluster}", err=True)
        return cluster
    try:
        path, pid = upfile.running_cluster()
    except upfile.NoRunningUp as e:
        if e.stale:
            click.echo(e.stale, err=True)
        raise FaultUsageError(str(e)) from None
    click.echo(f"cluster: {path} (the running up, pid {pid})", err=True)
    return path


def load_links(cluster: Path | None, into: dict | None = None) -> dict[str, dict[str, Any]]:
    """The ``links`` of a cluster manifest (see :func:`resolve_cluster`).
    Raises: FaultUsageError (exit 2) if missing, unreadable or of the wrong shape."""
    cluster = resolve_cluster(cluster)
    try:
        manifest = json.loads(Path(cluster).read_text())
    except FileNotFoundError:
        raise FaultUsageError(f"{cluster}: missing ({NO_CLUSTER})") from None
    except (OSError, ValueError) as e:
        raise FaultUsageError(f"cannot read cluster manifest {cluster}: {getattr(e, 'strerror', None) or e}") \
            from None
    links = manifest.get("links") if isinstance(manifest, dict) else None
    if links is not None and (not isinstance(links, dict) or not all(
            isinstance(i, dict) and isinstance(i.get("proxy"), str) for i in links.values())):
        raise FaultUsageError(f"{cluster}: 'links' should map each link to {{\"proxy\": \"host:port\", ...}}")
    links = links or {}
    if into is not None:  # the cluster's control token (nodes/common/control_auth.py)
        token = manifest.get("control_token")
        into["token"] = token if isinstance(token, str) and token else None
    gone = [f"{name} (pid {i['pid']})" for name, i in sorted(links.items())
            if isinstance(i.get("pid"), int) and upfile.start_ticks(i["pid"]) is None]
    if gone:
        raise FaultUsageError(f"the cluster in {cluster} is not running: proxy {', '.join(gone)} gone "
                              "(a finished run? start one with ./run.sh up)")
    if not links:
        raise FaultUsageError(f"the cluster in {cluster} has no proxies (started without them?)")
    return links


def pick_links(ctx: click.Context, link: str | None) -> dict[str, str]:
    """link -> proxy address, for one link (``--link``) or for all. Raises: FaultUsageError."""
    links = load_links(ctx.obj["cluster"], ctx.obj)
    if link is None:
        return {name: info["proxy"] for name, info in sorted(links.items())}
    if link in links:
        return {link: links[link]["proxy"]}
    group = group_links(link, links)
    if group:
        return {name: links[name]["proxy"] for name in group}
    raise FaultUsageError(f"unknown link {link!r} (this cluster has: {', '.join(sorted(links))})")


def group_links(link: str, links: dict[str, Any]) -> list[str]:
    """With NATS, "producer-broker" / "processor-broker" stand for the client's TCP proxy to
    every server ("producer-nats-1", ...: harness/nats_links.py), as in a schedule's link
    step; [] for any other name."""
    if link not in ("producer-broker", "processor-broker"):
        return []
    prefix = link.split("-", 1)[0] + "-nats-"
    return sorted(n for n in links if n.startswith(prefix) and n[len(prefix):].isdigit())


def on_proxy(link: str, address: str, fn: Callable[[], Any]) -> Any:
    """Run one control call; map gRPC errors to CLI errors (see the exit codes above)."""
    try:
        return fn()
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise FaultUsageError(f"{link}: {e.details()}") from None
        if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.UNIMPLEMENTED):  # an unknown fault id, too many faults: usage
            raise FaultUsageError(f"{link}: {e.code().name}: {e.details()}") from None
        if e.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise FaultUsageError(f"{link}: the proxy at {address} refused the control token "
                                  "(cluster.json's control_token differs from the one it was started with)") from None
        if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise click.ClickException(f"{link}: proxy at {address} not reachable "
                                       f"({e.code().name}); is the cluster still running?") from None
        raise click.ClickException(f"{link}: {e.code().name}: {e.details()}") from None


@click.group()
@click.option("--cluster", type=click.Path(path_type=Path), default=None,
              help="Cluster manifest (cluster.json), or the directory holding it (the cluster "
                   "directory `up` prints), to act on [default: the running `up` of this "
                   "checkout, named in runs/up.json].")
@click.pass_context
def fault(ctx: click.Context, cluster: Path) -> None:
    """Inject link faults through the proxies of a running cluster."""
    if cluster is not None and cluster.is_dir():   # was "is a directory" (exit 2) for `up`'s own dir
        cluster = cluster / "cluster.json"
    ctx.ensure_object(dict)["cluster"] = cluster


@fault.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--link", required=True, help="producer-broker, processor-broker, processor-sink, "
                                            "or a TCP link of the cluster (with NATS, producer-broker "
                                            "and processor-broker mean the client's link to every server).")
@click.option("--method", default="", help='RPC method, short ("Produce") or full; default all.')
@click.option("--probability", type=FiniteFloat(), default=None, help="Chance per matching call [0, 1]; default 1.")
@click.option("--count", type=int, default=0, show_default=True, help="Fire at most N times; 0 = unlimited.")
@click.option("--after", type=int, default=0, show_default=True, help="Fire from the Nth matching call (TCP: connection) on.")
@click.option("--delay-ms", type=int, default=0, show_default=True,
              help="delay, latency: latency (ms); slow-close: close delay; slicer: between slices; "
                   "reset: RST after N ms. duplicate: send the copy N ms after the caller got its answer "
                   "(0 = at once, before the answer).")
@click.option("--jitter-ms", type=int, default=0, show_default=True,
              help="delay: extra uniform 0..N ms; latency (TCP): ± N ms.")
@click.option("--side", type=click.Choice(SIDES), default=None, help="delay: before or after forwarding.")
@click.option("--code", default="", help="error: gRPC status code name (default UNAVAILABLE).")
@click.option("--hold-ms", type=int, default=0, show_default=True,
              help="late: deliver the request upstream N ms after the caller's deadline (required); "
                   "reorder: longest wait for the next call (0 = 1000).")
@click.option("--match", "match", multiple=True, metavar="FIELD=VALUE",
              help="Only calls whose request has FIELD=VALUE (repeatable, all must hold), e.g. "
                   "partition=2 (also any element of a repeated field: Fetch partitions, "
                   "CommitOffset offsets, Apply orders), transaction_id=..., account=acct-3.")
@click.option("--direction", type=click.Choice(DIRECTION_CHOICES), default=None,
              help="TCP toxics: upstream (client -> server), downstream, or both [default: both].")
@click.option("--rate-kbps", type=int, default=0, show_default=True,
              help="bandwidth (TCP): rate limit in KB/s (1 KB = 1000 bytes).")
@click.option("--bytes", "nbytes", type=int, default=0, show_default=True,
              help="TCP: limit-data: close after N bytes; reset: RST after N bytes; "
                   "slicer: largest slice.")
@click.pass_context
def add(ctx: click.Context, kind: str, link: str, method: str, probability: float | None,
        count: int, after: int, delay_ms: int, jitter_ms: int, side: str | None, code: str,
        hold_ms: int, match: tuple[str, ...], direction: str | None, rate_kbps: int,
        nbytes: int) -> None:
    """Add a fault of KIND on one link; print its id.

    \b
    late      the caller gets DEADLINE_EXCEEDED at its deadline; the request reaches
              upstream --hold-ms later (or at remove/heal), its answer discarded
    reorder   hold a call until the next call of its method came back (<= --hold-ms)
    duplicate forwarded twice; with --delay-ms the copy comes after the answer

    \b
    TCP links (per connection, --direction upstream|downstream|both):
    latency --delay-ms [--jitter-ms]   bandwidth --rate-kbps   blackhole   partition
    reset [--bytes] [--delay-ms]       slow-close --delay-ms   slicer --bytes [--delay-ms]
    limit-data --bytes
    """
    try:
        rules = parse_rules(match)
    except InvalidFault as e:
        raise FaultUsageError(str(e)) from None
    for name, address in pick_links(ctx, link).items():   # a NATS client link: every server's proxy
        fid = on_proxy(name, address, lambda: proxy_client.add_sync(
            address, kind, method=method, probability=probability, count=count, after=after,
            delay_ms=delay_ms, jitter_ms=jitter_ms, side=side or "", code=code, link=name,
            hold_ms=hold_ms, match=rules, direction=direction or "", rate_kbps=rate_kbps,
            bytes=nbytes, token=ctx.obj.get("token")))
        click.echo(f"{fid} {kind} on {name}")


@fault.command()
@click.argument("fault_id")
@click.option("--link", default=None, help="The link the fault is on (with NATS, producer-broker and processor-broker "
                                           "mean the client's link to every server). Default: the one link that "
                                           "has FAULT_ID.")
@click.pass_context
def remove(ctx: click.Context, fault_id: str, link: str | None) -> None:
    """Remove fault FAULT_ID (as `fault add` printed it, e.g. f1) from its link. Each link
    numbers its own faults, so without --link the id must be on exactly one link. With NATS,
    --link producer-broker / processor-broker: from each of the client's links that has it;
    an error only if none has it."""
    links = pick_links(ctx, link)
    if link is None:
        token = ctx.obj.get("token")
        holders = [name for name, address in links.items()
                   if any(f["fault_id"] == fault_id for f in on_proxy(
                       name, address, lambda: proxy_client.list_sync(address, token=token)))]
        if len(holders) > 1:
            raise FaultUsageError(f"{fault_id!r} is on {len(holders)} links ({', '.join(holders)}): "
                                  "each link numbers its own faults; say which with --link")
        links = {n: links[n] for n in holders}
        if not links:
            raise FaultUsageError(f"no fault {fault_id!r} on any link (see: fault list)")
    removed = 0
    for name, address in links.items():
        try:
            on_proxy(name, address, lambda: proxy_client.remove_sync(address, fault_id, token=ctx.obj.get('token')))
        except FaultUsageError as e:
            # a fault added on one server's link only (fault add --link producer-nats-2)
            if len(links) > 1 and ": NOT_FOUND:" in e.message:
                continue
            raise
        removed += 1
        click.echo(f"removed {fault_id} from {name}")
    if not removed:
        raise FaultUsageError(f"no fault {fault_id!r} on {', '.join(links)}")


def _console() -> Console:
    """A rich console; not wrapped to 80 columns when the output is a pipe or a file."""
    c = Console()
    return c if c.is_terminal else Console(width=200)


def _params(spec: dict[str, Any]) -> str:
    parts = []
    if spec.get("kind") == "duplicate" and spec.get("delay_ms"):
        parts.append(f"copy +{spec['delay_ms']} ms")
    elif spec.get("delay_ms") or spec.get("jitter_ms"):
        parts.append(f"{spec.get('delay_ms', 0)}+0..{spec.get('jitter_ms', 0)} ms "
                     f"{spec.get('side') or 'request'}")
    if spec.get("code"):
        parts.append(spec["code"])
    if spec.get("direction"):
        parts.append(spec["direction"])
    if spec.get("rate_kbps"):
        parts.append(f"{spec['rate_kbps']} KB/s")
    if spec.get("bytes"):
        parts.append(f"{spec['bytes']} bytes")
    if spec.get("hold_ms"):
        parts.append(f"hold {spec['hold_ms']} ms")
    if spec.get("match"):
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(spec["match"].items())))
    return " ".join(parts)


@fault.command("list")
@click.option("--link", default=None, help="Only this link (with NATS, producer-broker and processor-broker mean the client's link to every server).")
@click.pass_context
def list_(ctx: click.Context, link: str | None) -> None:
    """List the faults on every link (or one)."""
    table = Table("link", "id", "kind", "method", "p", "count", "after", "params", "matched", "fired")
    for name, address in pick_links(ctx, link).items():
        for f in on_proxy(name, address, lambda: proxy_client.list_sync(address, token=ctx.obj.get('token'))):
            s = f["spec"]
            table.add_row(name, f["fault_id"], s["kind"], (s.get("method") or "*").rsplit("/", 1)[-1],
                          f"{s.get('probability', 1):g}", str(s.get("count", 0)),
                          str(s.get("after_calls", 0)), _params(s), str(f["matched"]),
                          f"{f['fired']}{' (exhausted)' if f['exhausted'] else ''}")
    _console().print(table)


@fault.command()
@click.option("--link", default=None, help="Only this link (default: every link).")
@click.pass_context
def heal(ctx: click.Context, link: str | None) -> None:
    """Remove every fault (on every link, or one)."""
    for name, address in pick_links(ctx, link).items():
        n = on_proxy(name, address, lambda: proxy_client.heal_sync(address, token=ctx.obj.get('token')))
        click.echo(f"healed {name}: {n} fault(s) removed")


def _switch(ctx: click.Context, link: str, down: bool) -> None:
    for name, address in pick_links(ctx, link).items():   # a NATS client link: every server's proxy
        _switch_one(ctx, name, address, down)


def _switch_one(ctx: click.Context, link: str, address: str, down: bool) -> None:
    def call() -> dict:
        try:
            return proxy_client.set_down_sync(address, down, token=ctx.obj.get("token"))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise FaultUsageError(f"{link}: a gRPC proxy has no down switch (TCP links "
                                      "only); use `fault add partition`") from None
            raise

    r = on_proxy(link, address, call)
    if down:
        click.echo(f"{link} down: {r['closed']} connection(s) closed"
                   + (" (was already down)" if r["was_down"] else ""))
    else:
        click.echo(f"{link} up" + ("" if r["was_down"] else " (was not down)"))


@fault.command()
@click.option("--link", required=True, help="The TCP link (with NATS, producer-broker and processor-broker mean the client's link to every server).")
@click.pass_context
def down(ctx: click.Context, link: str) -> None:
    """TCP links: refuse new connections and close the open ones, until `up` or `heal`."""
    _switch(ctx, link, True)


@fault.command()
@click.option("--link", required=True, help="The TCP link (with NATS, producer-broker and processor-broker mean the client's link to every server).")
@click.pass_context
def up(ctx: click.Context, link: str) -> None:
    """TCP links: accept connections again after `down`."""
    _switch(ctx, link, False)


@fault.command()
@click.option("--link", default=None, help="Only this link (with NATS, producer-broker and processor-broker mean the client's link to every server).")
@click.pass_context
def stats(ctx: click.Context, link: str | None) -> None:
    """Calls forwarded / dropped / duplicated / delayed / errored per link and method."""
    cols = ("calls", "forwarded", "dropped", "duplicated", "delayed", "errored", "upstream_errors",
            "held")
    table = Table("link", "method", *cols)
    gone, paths = {}, {}
    for name, address in pick_links(ctx, link).items():
        st = on_proxy(name, address, lambda: proxy_client.stats_sync(address, token=ctx.obj.get('token')))
        for method, counters in sorted(st["methods"].items()):
            table.add_row(name, method.rsplit("/", 1)[-1], *(str(counters[c]) for c in cols))
        status = on_proxy(name, address, lambda: proxy_client.call_sync(address, "status", token=ctx.obj.get('token')))
        if "caller_gone" in status:   # the gRPC proxy's NodeControl.Status (nodes/proxy/forwarder.py)
            gone[name] = status["caller_gone"]
        if isinstance(status.get("data_port"), dict):   # the data port (nodes/proxy/fastpath.py)
            dp = status["data_port"]
            paths[name] = f"{dp.get('clean', 0)} clean / {dp.get('faulty', 0)} faulty, {dp.get('goaways', 0)} GOAWAYs"
    _console().print(table)
    if gone:
        click.echo("caller_gone (forwarded, ran upstream to its end, answer discarded: the caller died "
                   "or gave up meanwhile): " + ", ".join(f"{n} {c}" for n, c in gone.items()))
    if paths:
        click.echo("data port connections (clean: relayed below gRPC; faulty: through the "
                   "forwarder): " + "; ".join(f"{n} {p}" for n, p in paths.items()))
