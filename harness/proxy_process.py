"""A gRPC fault proxy (``python -m nodes.proxy``) on one link, as a NodeProcess.

The proxy has two ports: its gRPC port (``address``: ProxyControl, Status, health, and
the forwarder) and, with ``TESTBED_PROXY_FAST=1``, the data port (``data_address``)
that the link's client dials: connections there are relayed below gRPC while the link
has no fault and through the forwarder while it has one (nodes/proxy/fastpath.py).
A restart binds the same data port again, so the clients' address stays valid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.process import NodeProcess
from nodes.common import control_auth

FAST_ENV = "TESTBED_PROXY_FAST"
"""``1`` in the environment: the proxies get a data port and the clients dial it; unset or
``0`` (the default): the clients dial the proxies' gRPC ports, every call through the
forwarder. Off by default: with the nodes' retries disabled, a call a client opens in the
round trip after a fault was added fails UNAVAILABLE (not executed) instead of meeting
the fault (nodes/proxy/fastpath.py, docs/bench.md issue 16 section 9)."""


def fast_path_enabled() -> bool:
    return os.environ.get(FAST_ENV, "0") == "1"


class GrpcProxyProcess(NodeProcess):
    """The proxy of ``link`` in front of ``upstream`` ("host:port").

    Args:
        data_dir: its data dir (faults.jsonl, logs). seed: the run's seed.
        control_token: the cluster's control token (TESTBED_CONTROL_TOKEN); None: none.
    """

    def __init__(self, link: str, upstream: str, data_dir: Path, *, seed: int,
                 control_token: str | None = None) -> None:
        super().__init__("proxy", data_dir, ["--link", link, "--upstream", upstream,
                                             "--seed", str(seed)], name=f"proxy:{link}")
        self.link, self.upstream = link, upstream
        self.fast = fast_path_enabled()
        if control_token:
            self.env[control_auth.TOKEN_ENV] = control_token

    @property
    def data_address(self) -> str | None:
        """The data port ("host:port") once started; None without the fast path."""
        return self.info.get("data_address") if self.fast else None

    @property
    def dial_address(self) -> str | None:
        """What the link's client dials: the data port, else the gRPC port."""
        return self.data_address or self.address

    def command(self) -> list[str]:
        extra = ["--data-listen", self.info.get("data_address") or "127.0.0.1:0"] if self.fast else []
        return super().command() + extra

    def manifest_entry(self) -> dict[str, Any]:
        """``{"proxy": gRPC (control) address, "listen": what clients dial, "upstream",
        "pid", "data_dir"}`` for a cluster manifest's ``links``."""
        return {"proxy": self.address, "listen": self.dial_address, "upstream": self.upstream,
                "pid": self.pid, "data_dir": str(self.data_dir)}
