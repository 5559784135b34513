"""The control API's shared token and the non-loopback warning (issue 11): with a token set,
a NodeControl / ProxyControl call without it or with a wrong one is UNAUTHENTICATED; the
data plane and health are not affected; the harness's clients and `fault` send it."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness import proxy_client
from harness.cli_fault import fault
from nodes.common.channels import insecure_channel
from nodes.common.control_auth import METADATA_KEY, TOKEN_ENV, control_channel, is_loopback
from nodes.pb import node_pb2, node_pb2_grpc, proxy_pb2, proxy_pb2_grpc
from tests.proxy_support import apply_code

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-token"


async def status_code(address: str, metadata=None) -> grpc.StatusCode:
    async with insecure_channel(address) as ch:
        try:
            await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=5,
                                                           metadata=metadata)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


async def test_node_control_requires_the_token_and_data_plane_does_not(spawn):
    sink = await spawn("sink", ["--mode", "at-least-once"], start=False)
    sink.env[TOKEN_ENV] = TOKEN
    await sink.start()
    assert await status_code(sink.address) == grpc.StatusCode.UNAUTHENTICATED
    assert await status_code(sink.address, ((METADATA_KEY, "wrong"),)) == grpc.StatusCode.UNAUTHENTICATED
    assert await status_code(sink.address, ((METADATA_KEY, TOKEN),)) == grpc.StatusCode.OK
    with pytest.raises(grpc.aio.AioRpcError) as e:  # a failpoint RPC without the token
        await _list_without_token(sink.address)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with control_channel(sink.address, TOKEN) as ch:  # the harness's control channel
        resp = await node_pb2_grpc.NodeControlStub(ch).ListFailpoints(node_pb2.ListFailpointsRequest(), timeout=5)
        assert resp.failpoints
    assert await apply_code(sink.address, 1) == grpc.StatusCode.OK  # data plane: no token needed
    async with insecure_channel(sink.address) as ch:
        h = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert h.status == health_pb2.HealthCheckResponse.SERVING


async def _list_without_token(address: str) -> None:
    async with insecure_channel(address) as ch:
        await node_pb2_grpc.NodeControlStub(ch).ListFailpoints(node_pb2.ListFailpointsRequest(), timeout=5)


async def test_proxy_control_requires_the_token_and_fault_cli_sends_it(spawn, tmp_path):
    sink = await spawn("sink", ["--mode", "at-least-once"])
    proxy = await spawn("proxy", ["--link", "processor-sink", "--upstream", sink.address, "--seed", "7",
                                  "--control-token", TOKEN])
    async with insecure_channel(proxy.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await proxy_pb2_grpc.ProxyControlStub(ch).ListFaults(proxy_pb2.ListFaultsRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with proxy_client.ProxyControlClient(proxy.address, token=TOKEN) as px:
        assert await px.list() == []
    assert await apply_code(proxy.address, 1) == grpc.StatusCode.OK  # forwarded data plane unaffected

    def manifest(token: str) -> str:
        path = tmp_path / f"cluster-{token}.json"
        path.write_text(json.dumps({"config": {}, "control_token": token, "links": {
            "processor-sink": {"proxy": proxy.address, "upstream": sink.address, "pid": proxy.pid}}}))
        return str(path)

    r = await asyncio.to_thread(CliRunner().invoke, fault, ["--cluster", manifest(TOKEN), "add", "delay",
                                                            "--link", "processor-sink", "--delay-ms", "1"])
    assert r.exit_code == 0 and r.stdout.strip() == "f1 delay on processor-sink", r.output
    r = await asyncio.to_thread(CliRunner().invoke, fault, ["--cluster", manifest("wrong"), "list"])
    assert r.exit_code == 2 and "refused the control token" in r.output, r.output


@pytest.mark.parametrize("listen,warned", [("0.0.0.0:0", True), ("127.0.0.1:0", False)])
async def test_non_loopback_bind_warns_once(spawn, listen, warned):
    sink = await spawn("sink", ["--mode", "at-least-once"], start=False)
    sink.listen = listen
    await sink.start()
    lines = [l for l in (sink.data_dir / "stderr.log").read_text().splitlines() if "warning" in l]
    assert len(lines) == (1 if warned else 0), lines
    if warned:
        assert "not loopback" in lines[0] and "--control-token" in lines[0]


def test_is_loopback():
    assert is_loopback("127.0.0.1:5") and is_loopback("[::1]:5") and is_loopback("localhost:0")
    assert not is_loopback("0.0.0.0:5") and not is_loopback("[::]:5") and not is_loopback("example.org:1")


def test_empty_token_flag_is_refused(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "nodes.sink", "--data-dir", str(tmp_path / "s"),
                        "--control-token", ""], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "must not be empty" in r.stderr, r.stderr
