"""Each TCP toxic against a real proxy process and an in-test echo server: it fired
(faults.jsonl) and the client saw what the toxic stands for.

One proxy process serves the whole module (its start costs most of a test's time);
each test starts from a heal and reads only the records and connections it made.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pytest_asyncio

from harness.tcp_link import TcpLinkProcess
from nodes.proxy.history import read_history
from tests.tcpproxy_support import IO_TIMEOUT_S, EchoServer, connect, control, roundtrip

MAX_CONNECTIONS = 24
"""The module's proxy runs with --max-connections 24."""

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


class Rig:
    """The module's echo server and proxy; :meth:`fresh` starts a test from a clean slate."""

    def __init__(self, echo: EchoServer, px: TcpLinkProcess) -> None:
        self.echo, self.px = echo, px
        self.base = 0
        self.conn0 = 0
        self.srv0 = 0

    async def fresh(self) -> "Rig":
        await control(self.px, "heal")
        deadline = time.monotonic() + IO_TIMEOUT_S  # the last test's connections wind down
        while (await control(self.px, "status"))["open_connections"]:
            assert time.monotonic() < deadline, "connections of an earlier test stay open"
            await asyncio.sleep(0.02)  # polling a condition, bounded
        self.base = len(read_history(Path(self.px.data_dir) / "faults.jsonl"))
        self.conn0 = (await control(self.px, "stats"))["calls"]
        self.srv0 = len(self.echo.reads)
        return self

    def records(self, type_: str = "fault") -> list[dict]:
        """This test's faults.jsonl records of ``type_``."""
        return [r for r in read_history(Path(self.px.data_dir) / "faults.jsonl")[self.base:]
                if r["type"] == type_]

    def conn(self, k: int) -> int:
        """The proxy's id of this test's k-th connection (1-based)."""
        return self.conn0 + k

    async def server_side(self, k: int) -> int:
        """The echo server's index of this test's k-th connection, once accepted."""
        return await self.echo.connection(self.srv0 + k - 1)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(tmp_path_factory):
    echo = EchoServer()
    upstream = await echo.start()
    px = TcpLinkProcess("t1", upstream, tmp_path_factory.mktemp("tcpproxy") / "proxy-t1", seed=7,
                        args=["--max-connections", str(MAX_CONNECTIONS)])
    try:
        await px.start()
        yield Rig(echo, px)
    finally:
        await px.stop(timeout_s=5)
        await echo.close()
        assert not px.running


@pytest_asyncio.fixture(loop_scope="module")
async def rig(shared):
    return await shared.fresh()


async def test_no_toxic_passes_bytes_and_close(rig):
    px = rig.px
    assert px.info["data_address"] == px.data_address != px.address
    before = (await control(px, "stats"))["methods"]
    r, w = await connect(px)
    assert await roundtrip(r, w, b"hello\n") == b"hello\n"
    w.write_eof()
    assert await asyncio.wait_for(r.read(), IO_TIMEOUT_S) == b""  # half-close passed both ways
    w.close()
    st = await control(px, "stats")
    assert st["calls"] == rig.conn(1)
    assert st["methods"]["upstream"]["bytes_in"] - before["upstream"]["bytes_in"] == 6
    assert st["methods"]["downstream"]["bytes_out"] - before["downstream"]["bytes_out"] == 6
    assert rig.records() == []


async def test_latency_delays_each_chunk(rig):
    await control(rig.px, "add", "latency", delay_ms=150, jitter_ms=20, direction="downstream")
    r, w = await connect(rig.px)
    t0 = time.monotonic()
    assert await roundtrip(r, w, b"x" * 100) == b"x" * 100
    assert time.monotonic() - t0 >= 0.13  # 150 - 20 ms at least
    [rec] = rig.records()
    assert (rec["fault"], rec["action"], rec["direction"], rec["connection"]) == \
        ("latency", "delayed", "downstream", rig.conn(1))
    w.close()


async def test_latency_on_an_open_connection_and_heal(rig):
    r, w = await connect(rig.px)
    assert await roundtrip(r, w, b"a") == b"a"
    await control(rig.px, "add", "latency", delay_ms=300, direction="upstream")
    assert rig.records()[0]["connection"] == rig.conn(1)  # applied to the open connection
    w.write(b"b")
    await w.drain()
    await control(rig.px, "heal")  # releases the waiting chunk at once
    t0 = time.monotonic()
    assert await asyncio.wait_for(r.readexactly(1), IO_TIMEOUT_S) == b"b"
    assert time.monotonic() - t0 < 0.25
    w.close()


async def test_bandwidth_limits_the_rate(rig):
    await control(rig.px, "add", "bandwidth", rate_kbps=100, direction="upstream")
    r, w = await connect(rig.px)
    data = b"y" * 40_000  # 40 KB at 100 KB/s: >= 0.4 s minus the first 100 ms piece
    t0 = time.monotonic()
    assert await roundtrip(r, w, data) == data
    assert time.monotonic() - t0 >= 0.3
    assert rig.records()[0]["fault"] == "bandwidth"
    w.close()


async def test_blackhole_swallows_until_heal(rig):
    await control(rig.px, "add", "blackhole", direction="upstream")
    r, w = await connect(rig.px)
    w.write(b"lost")
    await w.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(r.readexactly(4), 0.4)
    assert not r.at_eof()  # connection kept open
    await control(rig.px, "heal")
    assert await roundtrip(r, w, b"after") == b"after"  # flows again; "lost" is gone
    recs = rig.records()
    assert recs[0]["action"] == "black-holed"
    assert recs[1]["action"] == "released" and recs[1]["swallowed_bytes"] == 4
    assert rig.echo.reads[await rig.server_side(1)] == [5]
    w.close()


async def test_partition_holds_then_delivers_in_order(rig):
    r, w = await connect(rig.px)
    assert await roundtrip(r, w, b"1") == b"1"
    await control(rig.px, "add", "partition")
    w.write(b"234")
    await w.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(r.readexactly(3), 0.4)
    assert rig.echo.reads[await rig.server_side(1)] == [1]  # nothing reached the server
    await control(rig.px, "heal")
    assert await asyncio.wait_for(r.readexactly(3), IO_TIMEOUT_S) == b"234"
    recs = rig.records()
    assert [(x["action"], x["direction"]) for x in recs] == \
        [("partitioned", "both"), ("released", "upstream"), ("released", "downstream")]
    assert recs[1]["held_ms"] >= 300 and recs[2]["held_ms"] == 0  # nothing came back
    w.close()


async def test_reset_after_bytes_is_an_rst(rig):
    await control(rig.px, "add", "reset", bytes=10, direction="upstream")
    r, w = await connect(rig.px)
    w.write(b"z" * 50)
    await w.drain()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(r.read(100_000), IO_TIMEOUT_S)
        await asyncio.wait_for(r.read(100_000), IO_TIMEOUT_S)
    i = await rig.server_side(1)
    await asyncio.wait_for(rig.echo.ended[i].wait(), IO_TIMEOUT_S)
    assert sum(rig.echo.reads[i]) <= 10
    assert isinstance(rig.echo.errors[i], ConnectionResetError)
    assert [x["action"] for x in rig.records()] == ["reset-armed", "reset"]
    w.close()


async def test_reset_after_timeout(rig):
    await control(rig.px, "add", "reset", delay_ms=200)
    r, w = await connect(rig.px)
    t0 = time.monotonic()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(r.read(10), IO_TIMEOUT_S)
    assert time.monotonic() - t0 >= 0.15
    assert [x["action"] for x in rig.records()] == ["reset-armed", "reset"]  # once, not per direction
    w.close()


async def test_slicer_gives_the_server_many_small_reads(rig):
    await control(rig.px, "add", "slicer", bytes=16, delay_ms=2, direction="upstream")
    before = (await control(rig.px, "stats"))["methods"]["upstream"]["forwarded"]
    r, w = await connect(rig.px)
    data = bytes(range(256)) * 2
    assert await roundtrip(r, w, data) == data  # intact, in order
    assert len(rig.echo.reads[await rig.server_side(1)]) >= 20  # 512 bytes, slices of 1..16
    after = (await control(rig.px, "stats"))["methods"]["upstream"]["forwarded"]
    assert after - before >= 32  # the proxy wrote >= 32 slices (the kernel may merge a few)
    assert rig.records()[0]["action"] == "sliced"
    w.close()


async def test_limit_data_closes_after_n_bytes(rig):
    await control(rig.px, "add", "limit-data", bytes=1000, direction="downstream")
    r, w = await connect(rig.px)
    w.write(b"q" * 3000)
    await w.drain()
    got = await asyncio.wait_for(r.read(-1), IO_TIMEOUT_S)  # until EOF
    assert got == b"q" * 1000
    assert [x["action"] for x in rig.records()] == ["limit-armed", "closed-at-limit"]
    w.close()


async def test_slow_close_delays_the_fin(rig):
    await control(rig.px, "add", "slow-close", delay_ms=300, direction="downstream")
    r, w = await connect(rig.px)
    assert await roundtrip(r, w, b"bye") == b"bye"
    t0 = time.monotonic()
    rig.echo.writers[await rig.server_side(1)].close()  # the server closes
    assert await asyncio.wait_for(r.read(), IO_TIMEOUT_S) == b""
    assert time.monotonic() - t0 >= 0.25
    assert [x["action"] for x in rig.records()] == ["close-delayed", "close-delayed"]
    w.close()


async def test_down_refuses_and_closes_then_up(rig):
    r, w = await connect(rig.px)
    assert await roundtrip(r, w, b"up") == b"up"
    assert (await control(rig.px, "set_down", True)) == {"was_down": False, "closed": 1}
    assert await asyncio.wait_for(r.read(), IO_TIMEOUT_S) == b""
    with pytest.raises(ConnectionRefusedError):
        await connect(rig.px)
    await control(rig.px, "heal")  # heal brings it up (Toxiproxy's reset)
    r2, w2 = await connect(rig.px)
    assert await roundtrip(r2, w2, b"again") == b"again"
    assert [x["event"] for x in rig.records("control")] == ["down", "heal", "up"]
    w.close()
    w2.close()


async def test_count_and_after_pick_connections(rig):
    await control(rig.px, "add", "latency", delay_ms=1, count=1, after=2)
    conns = [await connect(rig.px) for _ in range(3)]
    for r, w in conns:
        assert await roundtrip(r, w, b".") == b"."
    assert [x["connection"] for x in rig.records()] == [rig.conn(2)]  # the 2nd connection only
    [f] = await control(rig.px, "list")
    assert (f["matched"], f["fired"], f["exhausted"]) == (2, 1, True)
    for _, w in conns:
        w.close()


class _FakeStream:
    def __init__(self, conn) -> None:
        self.conn, self.applied = conn, []

    def attach(self, ap) -> None:
        self.applied.append(ap)


class _FakeConn:
    def __init__(self, conn_id: int) -> None:
        self.conn_id, self.closing = conn_id, False
        self.streams = {"upstream": _FakeStream(self), "downstream": _FakeStream(self)}


async def test_probability_is_seeded(tmp_path):
    """The wrapper's decisions (plain classes, no process): the same link and seed pick
    the same connections; another seed others."""
    from nodes.proxy.history import FaultHistory
    from nodes.tcpproxy.table import ToxicTable, make_spec

    def fired(seed: int, run: str) -> list[int]:
        (tmp_path / run).mkdir()
        table = ToxicTable("same", seed, FaultHistory(tmp_path / run, "same"), {})
        table.add(make_spec("same", kind="latency", delay_ms=1, probability=0.5))
        conns = [_FakeConn(i) for i in range(1, 41)]
        for c in conns:
            table.on_connection(c)
        return [c.conn_id for c in conns if c.streams["upstream"].applied]

    a, b, other = fired(3, "a"), fired(3, "b"), fired(4, "c")
    assert a == b and 0 < len(a) < 40 and other != a
    assert [r["connection"] for r in read_history(tmp_path / "a" / "faults.jsonl")
            if r["type"] == "fault"] == a


async def test_an_rst_from_the_server_reaches_the_client(rig):
    from nodes.tcpproxy.link import set_rst
    r, w = await connect(rig.px)
    assert await roundtrip(r, w, b"x") == b"x"
    sw = rig.echo.writers[await rig.server_side(1)]
    set_rst(sw)
    sw.transport.abort()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(r.read(10), IO_TIMEOUT_S)
    w.close()


async def test_connections_beyond_the_limit_are_reset(rig):
    refused = (await control(rig.px, "status"))["refused"]
    conns = []
    try:
        conns += [await connect(rig.px) for _ in range(MAX_CONNECTIONS)]
        assert await roundtrip(*conns[-1], b"last") == b"last"  # all wired
        with pytest.raises(ConnectionResetError):  # at connect or at the first read,
            r, w = await connect(rig.px)            # depending on when the RST lands
            conns.append((r, w))
            await asyncio.wait_for(r.read(10), IO_TIMEOUT_S)
        status = await control(rig.px, "status")
        assert status["refused"] == refused + 1 and status["open_connections"] == MAX_CONNECTIONS
    finally:
        for _, cw in conns:
            cw.close()


async def test_bytes_stay_intact_and_in_order_while_toxics_come_and_go(rig):
    import random
    data = random.Random(1).randbytes(3_000_000)
    r, w = await connect(rig.px)

    async def send() -> None:
        for i in range(0, len(data), 100_000):
            w.write(data[i:i + 100_000])
            await w.drain()
            if i == 500_000:
                await control(rig.px, "add", "latency", delay_ms=2)
            elif i == 1_200_000:
                await control(rig.px, "add", "slicer", bytes=50_000, direction="downstream")
            elif i == 2_000_000:
                await control(rig.px, "heal")

    sender = asyncio.ensure_future(send())
    got = await asyncio.wait_for(r.readexactly(len(data)), 20)
    await sender
    assert got == data
    assert {x["fault"] for x in rig.records()} == {"latency", "slicer"}
    w.close()
