"""``python -m harness.bench.null_server --listen 127.0.0.1:0``: a gRPC server that does nothing.

It serves ``testbed.v1.Broker/Produce`` with an empty ``ProduceResponse`` and
nothing else (no interceptor, no health service, no logging, no disk): the
other end of the benchmark's baseline hop. Prints one JSON line
``{"address": "127.0.0.1:PORT"}`` to stdout once bound; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import click
import grpc

from nodes.common.channels import SERVER_OPTIONS
from nodes.pb import broker_pb2, broker_pb2_grpc

_EMPTY = broker_pb2.ProduceResponse()


class NullBroker(broker_pb2_grpc.BrokerServicer):
    """Answers every Produce at once with an empty response (the request is parsed by gRPC, then dropped)."""

    async def Produce(self, request, context):
        return _EMPTY


async def _serve(listen: str) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    broker_pb2_grpc.add_BrokerServicer_to_server(NullBroker(), server)
    port = server.add_insecure_port(listen)
    await server.start()
    host = listen.rsplit(":", 1)[0]
    sys.stdout.write(json.dumps({"address": f"{host}:{port}"}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


@click.command()
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="host:port to bind.")
def cli(listen: str) -> None:
    """A do-nothing Produce server (the benchmark's transport baseline)."""
    asyncio.run(_serve(listen))


if __name__ == "__main__":
    cli()
