"""Log clients: how the producer and processor reach the log, one module per system.

Jepsen's client protocol (open, invoke, close): :func:`open_client` opens a client for
an address, the producer and processor invoke the log's operations on it
(``base.LogClient``), and ``close`` releases it. The producer and processor never
name a system: the address picks it.

    "host:port"                         -> builtin.BuiltinClient (the testbed's gRPC broker)
    "nats://h:p[,nats://h:p...]"        -> nats.NatsClient (NATS JetStream)
    "mqtt://h:p?partitions=N&client=C"  -> mqtt.MqttClient (an MQTT broker: mosquitto)
"""

from __future__ import annotations

from nodes.logclient.base import LogClient, log_error

__all__ = ["LogClient", "log_error", "open_client", "is_nats", "is_mqtt"]


def is_nats(address: str) -> bool:
    """True when ``address`` names a NATS server (``nats://`` URL, comma-separated list)."""
    return address.startswith("nats://")


def is_mqtt(address: str) -> bool:
    """True when ``address`` names an MQTT broker (``mqtt://`` URL)."""
    return address.startswith("mqtt://")


def open_client(address: str, *, mode: str) -> LogClient:
    """A log client for ``address`` (connected lazily on the first call).

    Args:
        address: "host:port" (builtin broker), "nats://host:port[,nats://...]" or
            "mqtt://host:port?partitions=N&client=C".
        mode: the delivery mode (nodes.common.modes): NATS maps it onto its publish calls.
    """
    if is_nats(address):
        from nodes.logclient.nats import NatsClient
        return NatsClient(address, mode=mode)
    if is_mqtt(address):
        from nodes.logclient.mqtt import MqttClient
        return MqttClient(address, mode=mode)
    from nodes.logclient.builtin import BuiltinClient
    return BuiltinClient(address)
