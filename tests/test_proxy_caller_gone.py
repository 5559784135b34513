"""A request the proxy has received is forwarded even when its caller goes away.

Like a network, a dying client does not recall the packets it already sent: the
proxy's upstream call runs to its end when the caller is killed (kill -9 of a
real caller process) or cancels, and the response is discarded (counted in the
proxy's Status JSON as ``caller_gone``). A real proxy process in front of an
in-process upstream whose handler holds each request until the test releases
it, so the caller is gone while the request is upstream, in every run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import grpc
import pytest

from nodes.common.channels import insecure_channel
from nodes.pb import node_pb2, node_pb2_grpc
from tests.conftest import pid_alive

pytestmark = pytest.mark.timeout(60)
WAIT_S = 10.0
METHOD = "/testbed.v1.Sink/Apply"

CALLER = """
import asyncio, sys
import grpc
async def main():
    async with grpc.aio.insecure_channel(sys.argv[1]) as ch:
        await ch.unary_unary(sys.argv[2])(b"held-request", timeout=30)
asyncio.run(main())
"""


class HeldUpstream(grpc.GenericRpcHandler):
    """Every unary method: records the request, holds it until :attr:`release` is set,
    then answers b""; records whether each handler completed or was cancelled."""

    def __init__(self) -> None:
        self.arrived: list[bytes] = []
        self.completed: list[bytes] = []
        self.cancelled: list[bytes] = []
        self.release = asyncio.Event()
        self.changed = asyncio.Event()
        self.server: grpc.aio.Server | None = None
        self.address = ""

    def service(self, details):
        async def handle(request: bytes, context) -> bytes:
            self.arrived.append(request)
            self.changed.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.append(request)
                self.changed.set()
                raise
            self.completed.append(request)
            self.changed.set()
            return b"response-to-discard"
        return grpc.unary_unary_rpc_method_handler(handle)

    async def until(self, predicate) -> None:
        async def loop():
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), WAIT_S)

    async def start(self) -> "HeldUpstream":
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((self,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self


@pytest.fixture
async def upstream():
    up = await HeldUpstream().start()
    try:
        yield up
    finally:
        up.release.set()
        await up.server.stop(None)


async def proxy_status(address: str) -> dict:
    async with insecure_channel(address) as ch:
        resp = await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=5)
    return json.loads(resp.status_json)


async def until_caller_gone(address: str, n: int, upstream: HeldUpstream) -> dict:
    """Poll the proxy's Status until ``caller_gone`` reaches ``n``, or the upstream call
    was cancelled (the failure this file is about), bounded by WAIT_S."""
    async def loop():
        while True:
            st = await proxy_status(address)
            if st.get("caller_gone", 0) >= n or upstream.cancelled:
                return st
            await asyncio.sleep(0.02)  # a poll interval: the condition is checked each time
    return await asyncio.wait_for(loop(), WAIT_S)


async def assert_forwarded_after_caller_left(upstream: HeldUpstream, proxy_address: str) -> None:
    st = await until_caller_gone(proxy_address, 1, upstream)  # the proxy saw its caller go
    assert upstream.cancelled == [], "the caller's departure cancelled the upstream call"
    assert upstream.completed == []  # still held upstream
    upstream.release.set()
    await upstream.until(lambda: upstream.completed or upstream.cancelled)
    assert upstream.cancelled == [], "the caller's departure cancelled the upstream call"
    assert upstream.completed == [b"held-request"]
    assert st["methods"][METHOD]["forwarded"] == 1
    # the proxy is unharmed: the next call goes through (and is answered)
    upstream.release.set()
    async with insecure_channel(proxy_address) as ch:
        assert await ch.unary_unary(METHOD)(b"next", timeout=5) == b"response-to-discard"


VIA = pytest.mark.parametrize("via", ["forwarder", "data-port"])


async def _proxy(spawn, upstream, via: str) -> tuple[object, str]:
    """A proxy (with its data port) and the address a caller dials: the gRPC port
    (the forwarder) or the data port (relayed below gRPC: nodes/proxy/fastpath.py)."""
    proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", upstream.address,
                                  "--data-listen", "127.0.0.1:0"])
    return proxy, (proxy.address if via == "forwarder" else proxy.info["data_address"])


@VIA
async def test_request_of_a_killed_caller_is_still_executed_upstream(spawn, upstream, tmp_path, via):
    proxy, dial = await _proxy(spawn, upstream, via)
    caller = await asyncio.create_subprocess_exec(sys.executable, "-c", CALLER, dial, METHOD,
                                                  stderr=asyncio.subprocess.DEVNULL)
    try:
        await upstream.until(lambda: upstream.arrived)  # forwarded, held upstream
        os.kill(caller.pid, signal.SIGKILL)
        assert await asyncio.wait_for(caller.wait(), WAIT_S) == -signal.SIGKILL
    finally:
        if caller.returncode is None and pid_alive(caller.pid):
            os.kill(caller.pid, signal.SIGKILL)
            await caller.wait()
    await assert_forwarded_after_caller_left(upstream, proxy.address)


@VIA
async def test_request_of_a_cancelled_call_is_still_executed_upstream(spawn, upstream, via):
    proxy, dial = await _proxy(spawn, upstream, via)
    async with insecure_channel(dial) as ch:
        call = ch.unary_unary(METHOD)(b"held-request", timeout=30)
        await upstream.until(lambda: upstream.arrived)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    await assert_forwarded_after_caller_left(upstream, proxy.address)
