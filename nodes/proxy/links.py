"""The links a proxy can sit on, and the upstream service each one carries.

    producer-broker   producer  -> broker   testbed.v1.Broker
    processor-broker  processor -> broker   testbed.v1.Broker
    processor-sink    processor -> sink     testbed.v1.Sink
    processor-K-broker, processor-K-sink    the same for consumer-group member K (2..16;
                      harness/group_cluster.py)

Method names in fault specs are checked against the upstream service's
descriptor (from the generated ``nodes.pb.*_pb2`` modules).
"""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor

from nodes.common.limits import short
from nodes.pb import broker_pb2, sink_pb2
from nodes.proxy.fault import InvalidFault

LINKS: dict[str, ServiceDescriptor] = {
    "producer-broker": broker_pb2.DESCRIPTOR.services_by_name["Broker"],
    "processor-broker": broker_pb2.DESCRIPTOR.services_by_name["Broker"],
    "processor-sink": sink_pb2.DESCRIPTOR.services_by_name["Sink"],
}
MAX_MEMBERS = 16
"""Processors of one consumer group that get their own links (``--processors`` at most this)."""
for _k in range(2, MAX_MEMBERS + 1):
    LINKS[f"processor-{_k}-broker"] = LINKS["processor-broker"]
    LINKS[f"processor-{_k}-sink"] = LINKS["processor-sink"]

FORWARDED_PREFIX = "/testbed.v1."
"""Every method under this prefix that the proxy does not serve itself is forwarded."""


def service_methods(link: str) -> list[str]:
    """Full method names of the link's upstream service ("/testbed.v1.Broker/Produce", ...)."""
    svc = LINKS[link]
    return [f"/{svc.full_name}/{m.name}" for m in svc.methods]


def resolve_method(link: str, method: str) -> str:
    """Full method name for ``method`` (short "Produce" or full "/testbed.v1.Broker/Produce").

    Returns "" for "" (every method).

    Raises:
        InvalidFault("method"): not a method of the link's upstream service.
    """
    if not method:
        return ""
    full = service_methods(link)
    for name in full:
        if method == name or method == name.rsplit("/", 1)[1]:
            return name
    names = ", ".join(n.rsplit("/", 1)[1] for n in full)
    raise InvalidFault("method", f"{short(method)} is not a method of {LINKS[link].full_name} "
                                 f"on link {link} (one of {names})")
