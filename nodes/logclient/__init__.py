"""Log clients: how the producer and processor reach the log, one module per system.

Jepsen's client protocol (open, invoke, close): :func:`open_client` opens a client for
an address, the producer and processor invoke the log's operations on it
(``base.LogClient``), and ``close`` releases it. The producer and processor never
name a system: the address picks it.

    "host:port"                         -> builtin.BuiltinClient (the testbed's gRPC broker)
    "nats://h:p[,nats://h:p...]"        -> nats.NatsClient (NATS JetStream)
"""

from __future__ import annotations

from nodes.logclient.base import LogClient, log_error

__all__ = ["LogClient", "log_error", "open_client", "is_nats"]


def is_nats(address: str) -> bool:
    """True when ``address`` names a NATS server (``nats://`` URL, comma-separated list)."""
    return address.startswith("nats://")


def open_client(address: str, *, mode: str) -> LogClient:
    """A log client for ``address`` (connected lazily on the first call).

    Args:
        address: "host:port" (builtin broker) or "nats://host:port[,nats://...]".
        mode: the delivery mode (nodes.common.modes): NATS maps it onto its publish calls.
    """
    if is_nats(address):
        from nodes.logclient.nats import NatsClient
        return NatsClient(address, mode=mode)
    from nodes.logclient.builtin import BuiltinClient
    return BuiltinClient(address)
