"""gRPC channel and server options shared by every node and the harness; address parsing."""

from __future__ import annotations

import grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest request or response any node accepts or sends (64 MiB)."""

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a peer restarts (the default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Refuse to share a port with a still-running old incarnation of a node.
    ("grpc.so_reuseport", 0),
]


def insecure_channel(address: str) -> grpc.aio.Channel:
    """An asyncio channel to ``address`` ("host:port") with the shared options.

    Retries are off: every retry in this testbed is an explicit, recorded
    decision of a node, never a hidden one of the gRPC library.
    """
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port" (an IPv6 host may be bracketed). Raises ValueError
    when the port is not an integer."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
