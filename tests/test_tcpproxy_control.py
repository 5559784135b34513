"""The TCP proxy's control API and CLI: bad input, `testbed fault` on a TCP link, stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import grpc
import pytest
from click.testing import CliRunner

from harness.cli_fault import fault
from nodes.pb import proxy_pb2
from nodes.proxy.control import spec_from_pb as grpc_spec_from_pb
from nodes.proxy.fault import InvalidFault
from tests.tcpproxy_support import (IO_TIMEOUT_S, EchoServer, connect, control, proxy_in_front,
                                    records, roundtrip)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def echo():
    s = EchoServer()
    try:
        yield s
    finally:
        await s.close()


BAD = [
    (dict(kind="drop-response"), "kind: unknown toxic 'drop-response'"),
    (dict(kind="latency", delay_ms=-5), "delay_ms: must be >= 0, got -5"),
    (dict(kind="latency", delay_ms=10, probability=float("nan")), "probability: must be in [0, 1]"),
    (dict(kind="latency", delay_ms=10, probability=1.5), "probability: must be in [0, 1]"),
    (dict(kind="latency"), "delay_ms: latency needs delay_ms or jitter_ms > 0"),
    (dict(kind="latency", delay_ms=10, rate_kbps=5), "rate_kbps: latency does not take rate_kbps"),
    (dict(kind="bandwidth"), "rate_kbps: bandwidth needs rate_kbps > 0"),
    (dict(kind="limit-data", bytes=-1), "bytes: must be >= 0, got -1"),
    (dict(kind="partition", direction="sideways"), "direction: must be one of upstream"),
    (dict(kind="partition", method="Produce"), "method: a TCP proxy has no gRPC calls"),
    (dict(kind="partition", count=-1), "count: must be >= 0"),
    (dict(kind="latency", delay_ms=3_600_001), "delay_ms: must be <= 3600000"),
]


async def test_bad_specs_are_invalid_argument_naming_the_field(spawn, echo):
    px = await proxy_in_front(spawn, await echo.start())
    for kw, message in BAD:
        kind = kw.pop("kind")
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await control(px, "add", kind, **kw)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (kind, kw)
        assert e.value.details().startswith(message), (e.value.details(), message)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await control(px, "remove", "f9")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert await control(px, "list") == [] and records(px, "control") == []


def test_grpc_proxy_refuses_tcp_fields():
    with pytest.raises(InvalidFault) as e:
        grpc_spec_from_pb("producer-broker", proxy_pb2.FaultSpec(kind="delay", delay_ms=5,
                                                                 direction="upstream"))
    assert e.value.field == "direction"


async def test_fault_cli_on_a_tcp_link(spawn, echo, tmp_path):
    px = await proxy_in_front(spawn, await echo.start(), link="client-n1")
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"links": {"client-n1": px.manifest_entry()}}))
    runner = CliRunner()

    async def cli(*args: str):
        return await asyncio.to_thread(runner.invoke, fault, ["--cluster", str(cluster), *args])

    r = await cli("add", "latency", "--link", "client-n1", "--delay-ms", "50", "--jitter-ms", "10",
                  "--direction", "downstream")
    assert r.exit_code == 0 and r.stdout.strip() == "f1 latency on client-n1", r.output
    r = await cli("add", "slicer", "--link", "client-n1", "--bytes", "8", "--probability", "0.5")
    assert r.exit_code == 0, r.output
    rd, w = await connect(px)
    assert await roundtrip(rd, w, b"ping\r\n") == b"ping\r\n"
    r = await cli("list")
    assert r.exit_code == 0, r.output
    assert "latency" in r.output and "50+0..10 ms" in r.output and "downstream" in r.output
    assert "8 bytes" in r.output
    r = await cli("stats", "--link", "client-n1")
    assert r.exit_code == 0 and "upstream" in r.output and "downstream" in r.output, r.output

    # Bad input: one line, exit 2 (refused by click, or the proxy's INVALID_ARGUMENT).
    for args, text in ((("add", "latency", "--link", "client-n1", "--probability", "nan"),
                        "is not a finite number"),
                       (("add", "latency", "--link", "client-n1", "--delay-ms", "-1"),
                        "client-n1: delay_ms: must be >= 0"),
                       (("add", "bogus", "--link", "client-n1"), "'bogus' is not one of"),
                       (("add", "delay", "--link", "client-n1", "--delay-ms", "5"),
                        "client-n1: kind: unknown toxic 'delay'"),
                       (("add", "bandwidth", "--link", "client-n1", "--direction", "up"),
                        "Invalid value for '--direction'")):
        r = await cli(*args)
        assert r.exit_code == 2 and text in r.output, (args, r.output)
        assert "Traceback" not in r.output

    r = await cli("down", "--link", "client-n1")
    assert r.exit_code == 0 and r.stdout.strip() == "client-n1 down: 1 connection(s) closed", r.output
    assert await asyncio.wait_for(rd.read(), IO_TIMEOUT_S) == b""
    with pytest.raises(ConnectionRefusedError):
        await connect(px)
    r = await cli("up", "--link", "client-n1")
    assert r.exit_code == 0 and r.stdout.strip() == "client-n1 up", r.output
    r = await cli("heal")
    assert r.exit_code == 0 and "healed client-n1: 2 fault(s) removed" in r.output, r.output
    rd, w = await connect(px)
    assert await roundtrip(rd, w, b"ok") == b"ok"
    assert records(px)[0]["fault"] == "latency"
    w.close()


async def test_sigterm_closes_every_connection(spawn, echo):
    px = await proxy_in_front(spawn, await echo.start())
    await control(px, "add", "partition")  # a held connection too
    conns = [await connect(px) for _ in range(3)]
    for _, w in conns:
        w.write(b"held")
    px.signal(signal.SIGTERM)
    assert await px.wait(IO_TIMEOUT_S) == 0
    for r, w in conns:
        assert await asyncio.wait_for(r.read(), IO_TIMEOUT_S) == b""
        w.close()
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in echo.ended)), IO_TIMEOUT_S)
    assert len(echo.ended) == 3


async def test_restart_keeps_the_data_port_and_nobody_else_takes_it(spawn, echo):
    px = await proxy_in_front(spawn, await echo.start())
    data, control_address = px.data_address, px.address
    await px.restart()
    assert (px.data_address, px.address) == (data, control_address)
    r, w = await connect(px)
    assert await roundtrip(r, w, b"again") == b"again"
    w.close()
    # Another proxy cannot take the data port: one line, exit 2.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodes.tcpproxy", "--data-dir", str(spawn.root / "second"),
        "--upstream", "127.0.0.1:1", "--link", "x", "--data-listen", px.data_address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err
    assert err.decode().strip().startswith("tcpproxy: error: cannot bind") and b"Traceback" not in err
    assert out == b""


@pytest.mark.parametrize("args, text", [
    (["--upstream", "nohost", "--link", "x"], "expected HOST:PORT"),
    (["--upstream", "127.0.0.1:1", "--link", "bad name"], "Invalid value for '--link'"),
    (["--upstream", "127.0.0.1:1", "--link", "x", "--data-listen", "127.0.0.1:99999"],
     "Invalid value for '--data-listen'"),
])
def test_bad_flags_exit_2_without_traceback(tmp_path, args, text):
    from nodes.tcpproxy.__main__ import main
    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), *args])
    assert r.exit_code == 2 and text in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


async def test_down_on_a_grpc_proxy_is_a_usage_error(spawn, tmp_path):
    proxy = await spawn("proxy", ["--link", "producer-broker", "--upstream", "127.0.0.1:1"])
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"links": {"producer-broker": {"proxy": proxy.address,
                                                                 "pid": proxy.pid}}}))
    r = await asyncio.to_thread(CliRunner().invoke, fault,
                                ["--cluster", str(cluster), "down", "--link", "producer-broker"])
    assert r.exit_code == 2 and "a gRPC proxy has no down switch" in r.output, r.output
    r = await asyncio.to_thread(CliRunner().invoke, fault,
                                ["--cluster", str(cluster), "add", "delay", "--link",
                                 "producer-broker", "--delay-ms", "5", "--direction", "upstream"])
    assert r.exit_code == 2 and "direction: direction is for TCP proxy toxics" in r.output, r.output


async def test_control_token_guards_the_toxics_not_the_data(spawn, echo):
    from harness.proxy_client import ProxyControlClient
    from harness.tcp_link import TcpLinkProcess
    px = TcpLinkProcess("tok", await echo.start(), spawn.root / "proxy-tok",
                        env={"TESTBED_CONTROL_TOKEN": "s3cret"})
    spawn.procs.append(px)
    await px.start()
    async with ProxyControlClient(px.address, token="wrong") as c:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await c.add("partition")
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with ProxyControlClient(px.address, token="s3cret") as c:
        assert await c.add("latency", delay_ms=1) == "f1"
    r, w = await connect(px)  # the data port needs no token
    assert await roundtrip(r, w, b"data") == b"data"
    w.close()
