"""``python -m nodes.proxy``: a fault-injecting proxy on one link.

    python -m nodes.proxy --listen 127.0.0.1:0 --data-dir DIR --link producer-broker \
        --upstream 127.0.0.1:PORT --seed 42 [--data-listen 127.0.0.1:0] [--mode MODE]

Serves, on one loopback port: the link's upstream service by forwarding
(``/testbed.v1.*``), testbed.v1.ProxyControl, the proxy's own
NodeControl/Status and health. ``--mode`` is accepted (common option) and
unused. Bad flags (unknown link, malformed upstream) exit with code 2.
Only unary-unary calls are forwarded: every RPC the nodes use is unary
(Fetch is a unary long-poll, Snapshot is paged), so that is enough.
With ``--data-listen``, a second port, the data port (nodes/proxy/fastpath.py), relays
connections below gRPC while the link has no fault and through the forwarder while it
has one; its address is ``data_address`` in the stdout "listening" line.

Status JSON: {"link", "upstream", "seed", "calls", "caller_gone" (calls whose caller
went away while the request was upstream: forwarded all the same, response discarded),
"faults_active",
"faults_fired", "totals": {calls, forwarded, dropped, duplicated, delayed,
errored, upstream_errors, held}, "methods": {full method: same counters},
"data_port" (with --data-listen): {"data_address", "accepted", "clean", "faulty" (open
connections of each kind), "goaways", "mode"}}.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from nodes.common.runtime import NodeSpec, common_options, run_node
from nodes.pb import proxy_pb2, proxy_pb2_grpc
from nodes.proxy.control import ProxyControlServicer
from nodes.proxy.fastpath import FastPath
from nodes.proxy.forwarder import Forwarder
from nodes.proxy.history import FaultHistory
from nodes.proxy.links import LINKS
from nodes.proxy.stats import LinkStats
from nodes.proxy.table import FaultTable


def parse_address(value: str, *, zero: bool = False, hint: str = "--upstream") -> str:
    """Check "host:port" (port 0 allowed with ``zero``). Raises: click.BadParameter (exit 2)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not (0 if zero else 1) <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint=hint)
    return value


def make_spec(log: logging.Logger, *, data_dir: Path, link: str, upstream: str,
              seed: int, data_listen: str = "") -> NodeSpec:
    history = FaultHistory(data_dir, link)
    table = FaultTable(link, seed, history)
    stats = LinkStats()
    forwarder = Forwarder(link, upstream, table, stats, log)
    fast = FastPath(link, data_listen, upstream, table, stats, forwarder, log) if data_listen else None

    def register(server) -> None:
        forwarder.open()
        proxy_pb2_grpc.add_ProxyControlServicer_to_server(
            ProxyControlServicer(table, stats, lambda: forwarder.calls), server)
        server.add_generic_rpc_handlers((forwarder,))

    def status() -> dict:
        return {"link": link, "upstream": upstream, "seed": seed, "calls": forwarder.calls,
                "caller_gone": forwarder.caller_gone,
                "faults_active": [af.fault_id for af in table.active],
                "faults_fired": {af.fault_id: af.fired for af in table.faults.values()},
                "totals": stats.totals(), "methods": stats.to_json(),
                **({"data_port": fast.status()} if fast else {})}

    async def bind() -> dict:
        fast.grpc_address = spec.address
        return {"data_address": await fast.bind()}

    async def close() -> None:
        if fast is not None:
            await fast.stop()
        await table.close()
        await forwarder.close()
        history.close()

    log.info("proxy configured", extra={"link": link, "upstream": upstream, "seed": seed})
    spec = NodeSpec(name="proxy", register=register, status=status, close=close,
                    bind=bind if fast else None,
                    service_names=(proxy_pb2.DESCRIPTOR.services_by_name["ProxyControl"].full_name,))
    return spec


@click.command()
@common_options
@click.option("--link", required=True, type=click.Choice(sorted(LINKS)),
              help="The link this proxy sits on.")
@click.option("--upstream", required=True, callback=lambda ctx, p, v: parse_address(v),
              help="host:port of the upstream node (broker or sink).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the link's fault generator (mixed with the link name).")
@click.option("--data-listen", default="", metavar="HOST:PORT",
              callback=lambda ctx, p, v: v and parse_address(v, zero=True, hint="--data-listen"),
              help="Also serve the data port here (port 0 = any free port): connections are "
                   "relayed below gRPC while the link has no fault, through the forwarder "
                   "while it has one (nodes/proxy/fastpath.py). Default: none.")
def main(listen: str, data_dir: Path, mode: str, log_level: str, link: str, upstream: str,
         seed: int, data_listen: str) -> None:
    """Fault-injecting gRPC proxy in front of one downstream node."""
    run_node(lambda log: make_spec(log, data_dir=data_dir, link=link, upstream=upstream, seed=seed,
                                   data_listen=data_listen),
             name="proxy", listen=listen, data_dir=data_dir, mode=mode, log_level=log_level,
             uvloop=True)


if __name__ == "__main__":
    main()
