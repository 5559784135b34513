"""An optional shared token on the control services, and a warning for non-loopback binds.

The control services (``testbed.v1.NodeControl``: Status and the failpoint RPCs;
``testbed.v1.ProxyControl``: the link faults) can crash, pause or corrupt a node
by design. A node started with ``--control-token TOKEN`` (or ``$TESTBED_CONTROL_TOKEN``)
answers a control call whose ``x-testbed-token`` metadata is missing or differs
with UNAUTHENTICATED; data-plane RPCs (Produce, Fetch, Apply...) and the health
service are not affected. The harness generates a token per cluster, passes it to
every node it starts and sends it on every control call (:func:`control_channel`);
``testbed fault`` reads it from the cluster's ``cluster.json``. Without a token every
control call is accepted, as before (a cluster bound to loopback only).

This is a shared secret over plain TCP (like Kafka's SASL/PLAIN without TLS): it
keeps a stray client off the control API, not an attacker who can read the traffic.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Any

import grpc

TOKEN_ENV = "TESTBED_CONTROL_TOKEN"
METADATA_KEY = "x-testbed-token"
CONTROL_SERVICES = ("/testbed.v1.NodeControl/", "/testbed.v1.ProxyControl/")


class ControlTokenCheck(grpc.aio.ServerInterceptor):
    """Server side: UNAUTHENTICATED for a control call without the right token.

    Args:
        token: the shared token; "" or None accepts every call.
    """

    def __init__(self, token: str | None) -> None:
        self.token = (token or "").encode()

        async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"control call without the right {METADATA_KEY} metadata "
                                "(the node was started with --control-token)")

        self._refuse = grpc.unary_unary_rpc_method_handler(_refuse)

    async def intercept_service(self, continuation, handler_call_details):
        if self.token and handler_call_details.method.startswith(CONTROL_SERVICES):
            sent = dict(handler_call_details.invocation_metadata or ()).get(METADATA_KEY, "")
            if not hmac.compare_digest(sent.encode() if isinstance(sent, str) else sent, self.token):
                return self._refuse
        return await continuation(handler_call_details)


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` binds loopback only ("127.0.0.1:0", "[::1]:0", "localhost:0")."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


def bind_warning(name: str, listen: str, token: str | None) -> str | None:
    """The one warning line for a non-loopback bind (None for loopback)."""
    if is_loopback(listen):
        return None
    return (f"{name}: warning: binding {listen} (not loopback): anyone who can reach it can call its "
            + ("control API with the token" if token else
               "control API (crash, pause, faults); pass --control-token or $" + TOKEN_ENV))


class _AttachToken(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        md = list(client_call_details.metadata or []) + [(METADATA_KEY, self.token)]
        details = client_call_details._replace(metadata=md) if hasattr(client_call_details, "_replace") \
            else grpc.aio.ClientCallDetails(client_call_details.method, client_call_details.timeout, md,
                                            client_call_details.credentials, client_call_details.wait_for_ready)
        return await continuation(details, request)


_current: str | None = None


def set_token(token: str | None) -> None:
    """The token this process sends on its control calls (the harness sets it per cluster)."""
    global _current
    _current = token or None


def current_token() -> str | None:
    """The token set by :func:`set_token`, else ``$TESTBED_CONTROL_TOKEN``, else None."""
    return _current or os.environ.get(TOKEN_ENV) or None


def control_channel(address: str, token: str | None = None) -> grpc.aio.Channel:
    """A channel whose unary calls carry the control token (``token`` or :func:`current_token`)."""
    from nodes.common.channels import CHANNEL_OPTIONS
    token = token or current_token()
    interceptors = [_AttachToken(token)] if token else None
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS, interceptors=interceptors)
