"""``python -m nodes.tcpproxy``: a fault-injecting TCP proxy on one link (Toxiproxy's model).

    python -m nodes.tcpproxy --listen 127.0.0.1:0 --data-listen 127.0.0.1:0 \\
        --upstream 127.0.0.1:4222 --link client-n1 --seed 42 --data-dir DIR

Two ports: ``--data-listen`` is the TCP port clients connect to instead of the
upstream (the proxied bytes); ``--listen`` is the gRPC port, as for every node:
testbed.v1.ProxyControl (the toxics, the down switch), NodeControl/Status and
health. Both are reported in the one stdout line:

    {"event": "listening", "node": "tcpproxy", "address": "127.0.0.1:CONTROL",
     "data_address": "127.0.0.1:DATA", "pid": ..., "data_dir": ...}

``--mode`` is accepted (common option) and unused. Bad flags (malformed
upstream, a bad link name) exit with code 2; a data address that cannot be
bound too. Faults go to ``<data-dir>/faults.jsonl`` (nodes/proxy/history.py's
format; ``method`` is "tcp", ``call`` and ``connection`` the connection id,
``direction`` the stream). On SIGTERM every connection is closed.

Status JSON: {"link", "upstream", "data_address", "down", "accepted", "refused",
"open_connections", "faults_active", "faults_fired", "directions": {"upstream":
{counters}, "downstream": {...}}} (counters: nodes/tcpproxy/stats.py).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click

from nodes.common.runtime import NodeSpec, common_options, run_node
from nodes.pb import proxy_pb2, proxy_pb2_grpc
from nodes.proxy.__main__ import parse_address
from nodes.proxy.history import FaultHistory
from nodes.tcpproxy.control import TcpProxyControlServicer
from nodes.tcpproxy.proxy import MAX_CONNECTIONS, TcpProxy

LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_link(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not LINK_NAME.match(value):
        raise click.BadParameter("1-64 characters of letters, digits, '.', '_', '-' "
                                 f"(starting with a letter or digit), got {value!r}")
    return value


def check_data_listen(ctx: click.Context, param: click.Parameter, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT (port 0 = any free port), got {value!r}")
    return value


def make_spec(log: logging.Logger, *, data_dir: Path, link: str, upstream: str, seed: int,
              data_listen: str, max_connections: int = MAX_CONNECTIONS) -> NodeSpec:
    history = FaultHistory(data_dir, link)
    proxy = TcpProxy(link, data_listen, upstream, seed, history, log, max_connections)

    def register(server) -> None:
        proxy_pb2_grpc.add_ProxyControlServicer_to_server(TcpProxyControlServicer(proxy), server)

    async def bind() -> dict:
        return {"data_address": await proxy.bind()}

    def status() -> dict:
        return {**proxy.status(), "seed": seed}

    async def close() -> None:
        await proxy.stop()
        history.close()

    log.info("tcp proxy configured", extra={"link": link, "upstream": upstream, "seed": seed})
    return NodeSpec(name="tcpproxy", register=register, status=status, close=close, bind=bind,
                    service_names=(proxy_pb2.DESCRIPTOR.services_by_name["ProxyControl"].full_name,))


@click.command()
@common_options
@click.option("--data-listen", default="127.0.0.1:0", show_default=True,
              callback=check_data_listen,
              help="host:port clients connect to (the proxied TCP bytes); port 0 = any free port.")
@click.option("--link", required=True, callback=check_link,
              help="The link's name (in faults.jsonl), e.g. client-n1 or route-n1-n2.")
@click.option("--upstream", required=True, callback=lambda ctx, p, v: parse_address(v),
              help="host:port of the upstream server.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the link's toxic generator (mixed with the link name).")
@click.option("--max-connections", type=click.IntRange(1, 4096), default=MAX_CONNECTIONS,
              show_default=True, help="Open connections at most; more are reset at once.")
def main(listen: str, data_dir: Path, mode: str, log_level: str, data_listen: str, link: str,
         upstream: str, seed: int, max_connections: int) -> None:
    """Fault-injecting TCP proxy in front of one server (NATS, MQTT...)."""
    run_node(lambda log: make_spec(log, data_dir=data_dir, link=link, upstream=upstream,
                                   seed=seed, data_listen=data_listen,
                                   max_connections=max_connections),
             name="tcpproxy", listen=listen, data_dir=data_dir, mode=mode, log_level=log_level)


if __name__ == "__main__":
    main()
