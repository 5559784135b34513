"""Each TCP toxic against a real proxy process and an in-test echo server: it fired
(faults.jsonl) and the client saw what the toxic stands for."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.tcpproxy_support import (IO_TIMEOUT_S, EchoServer, connect, control, proxy_in_front,
                                    records, roundtrip)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def echo():
    s = EchoServer()
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def setup(spawn, echo, **kw):
    px = await proxy_in_front(spawn, await echo.start(), **kw)
    return px


async def test_no_toxic_passes_bytes_and_close(spawn, echo):
    px = await setup(spawn, echo)
    assert px.info["data_address"] == px.data_address != px.address
    r, w = await connect(px)
    assert await roundtrip(r, w, b"hello\n") == b"hello\n"
    w.write_eof()
    assert await asyncio.wait_for(r.read(), IO_TIMEOUT_S) == b""  # half-close passed both ways
    w.close()
    st = await control(px, "stats")
    assert st["calls"] == 1
    assert st["methods"]["upstream"]["bytes_in"] == 6
    assert st["methods"]["downstream"]["bytes_out"] == 6
    assert records(px) == []


async def test_latency_delays_each_chunk(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "latency", delay_ms=150, jitter_ms=20, direction="downstream")
    r, w = await connect(px)
    t0 = time.monotonic()
    assert await roundtrip(r, w, b"x" * 100) == b"x" * 100
    assert time.monotonic() - t0 >= 0.13  # 150 - 20 ms at least
    [rec] = records(px)
    assert (rec["fault"], rec["action"], rec["direction"], rec["connection"]) == \
        ("latency", "delayed", "downstream", 1)
    w.close()


async def test_latency_on_an_open_connection_and_heal(spawn, echo):
    px = await setup(spawn, echo)
    r, w = await connect(px)
    assert await roundtrip(r, w, b"a") == b"a"
    await control(px, "add", "latency", delay_ms=300, direction="upstream")
    assert records(px)[0]["connection"] == 1  # applied to the connection already open
    w.write(b"b")
    await w.drain()
    await control(px, "heal")  # releases the waiting chunk at once
    t0 = time.monotonic()
    assert await asyncio.wait_for(r.readexactly(1), IO_TIMEOUT_S) == b"b"
    assert time.monotonic() - t0 < 0.25
    w.close()


async def test_bandwidth_limits_the_rate(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "bandwidth", rate_kbps=100, direction="upstream")
    r, w = await connect(px)
    data = b"y" * 40_000  # 40 KB at 100 KB/s: >= 0.4 s minus the first 100 ms piece
    t0 = time.monotonic()
    assert await roundtrip(r, w, data) == data
    assert time.monotonic() - t0 >= 0.3
    assert records(px)[0]["fault"] == "bandwidth"
    w.close()


async def test_blackhole_swallows_until_heal(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "blackhole", direction="upstream")
    r, w = await connect(px)
    w.write(b"lost")
    await w.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(r.readexactly(4), 0.5)
    assert not r.at_eof()  # connection kept open
    await control(px, "heal")
    assert await roundtrip(r, w, b"after") == b"after"  # flows again; "lost" is gone
    recs = records(px)
    assert recs[0]["action"] == "black-holed"
    assert recs[1]["action"] == "released" and recs[1]["swallowed_bytes"] == 4
    assert echo.reads[0] == [5]
    w.close()


async def test_partition_holds_then_delivers_in_order(spawn, echo):
    px = await setup(spawn, echo)
    r, w = await connect(px)
    assert await roundtrip(r, w, b"1") == b"1"
    await control(px, "add", "partition")
    w.write(b"234")
    await w.drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(r.readexactly(3), 0.5)
    assert echo.reads[0] == [1]  # nothing reached the server
    await control(px, "heal")
    assert await asyncio.wait_for(r.readexactly(3), IO_TIMEOUT_S) == b"234"
    recs = records(px)
    assert [(x["action"], x["direction"]) for x in recs] == \
        [("partitioned", "both"), ("released", "upstream"), ("released", "downstream")]
    assert recs[1]["held_ms"] >= 400 and recs[2]["held_ms"] == 0  # nothing came back from the server
    w.close()


async def test_reset_after_bytes_is_an_rst(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "reset", bytes=10, direction="upstream")
    r, w = await connect(px)
    w.write(b"z" * 50)
    await w.drain()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(r.read(100_000), IO_TIMEOUT_S)
        await asyncio.wait_for(r.read(100_000), IO_TIMEOUT_S)
    await asyncio.wait_for(echo.ended[0].wait(), IO_TIMEOUT_S)
    assert sum(echo.reads[0]) <= 10
    assert isinstance(echo.errors[0], ConnectionResetError)
    actions = [x["action"] for x in records(px)]
    assert actions == ["reset-armed", "reset"]
    w.close()


async def test_reset_after_timeout(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "reset", delay_ms=200)
    r, w = await connect(px)
    t0 = time.monotonic()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(r.read(10), IO_TIMEOUT_S)
    assert time.monotonic() - t0 >= 0.15
    assert records(px)[-1]["action"] == "reset"
    w.close()


async def test_slicer_gives_the_server_many_small_reads(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "slicer", bytes=16, delay_ms=2, direction="upstream")
    r, w = await connect(px)
    data = bytes(range(256)) * 2
    assert await roundtrip(r, w, data) == data  # intact, in order
    assert len(echo.reads[0]) >= 20  # 512 bytes in slices of 1..16 bytes
    st = await control(px, "stats")  # the proxy wrote >= 32 slices (the kernel may merge a few)
    assert st["methods"]["upstream"]["forwarded"] >= 32
    assert records(px)[0]["action"] == "sliced"
    w.close()


async def test_limit_data_closes_after_n_bytes(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "limit-data", bytes=1000, direction="downstream")
    r, w = await connect(px)
    w.write(b"q" * 3000)
    await w.drain()
    got = await asyncio.wait_for(r.read(-1), IO_TIMEOUT_S)  # until EOF
    assert got == b"q" * 1000
    assert [x["action"] for x in records(px)] == ["limit-armed", "closed-at-limit"]
    w.close()


async def test_slow_close_delays_the_fin(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "slow-close", delay_ms=300, direction="downstream")
    r, w = await connect(px)
    assert await roundtrip(r, w, b"bye") == b"bye"
    await asyncio.wait_for(echo.accepted.wait(), IO_TIMEOUT_S)
    t0 = time.monotonic()
    echo.writers[0].close()  # the server closes
    assert await asyncio.wait_for(r.read(), IO_TIMEOUT_S) == b""
    assert time.monotonic() - t0 >= 0.25
    assert [x["action"] for x in records(px)] == ["close-delayed", "close-delayed"]
    w.close()


async def test_down_refuses_and_closes_then_up(spawn, echo):
    px = await setup(spawn, echo)
    r, w = await connect(px)
    assert await roundtrip(r, w, b"up") == b"up"
    assert (await control(px, "set_down", True)) == {"was_down": False, "closed": 1}
    assert await asyncio.wait_for(r.read(), IO_TIMEOUT_S) == b""
    with pytest.raises(ConnectionRefusedError):
        await connect(px)
    await control(px, "heal")  # heal brings it up (Toxiproxy's reset)
    r2, w2 = await connect(px)
    assert await roundtrip(r2, w2, b"again") == b"again"
    assert [x["event"] for x in records(px, "control")] == ["down", "heal", "up"]
    w.close()
    w2.close()


async def test_count_and_after_pick_connections(spawn, echo):
    px = await setup(spawn, echo)
    await control(px, "add", "latency", delay_ms=1, count=1, after=2)
    conns = [await connect(px) for _ in range(3)]
    for r, w in conns:
        assert await roundtrip(r, w, b".") == b"."
    assert [x["connection"] for x in records(px)] == [2]  # the 2nd connection only
    [f] = await control(px, "list")
    assert (f["matched"], f["fired"], f["exhausted"]) == (2, 1, True)
    for _, w in conns:
        w.close()


async def test_probability_is_seeded(spawn, echo):
    upstream = await echo.start()
    fired = []
    for run in ("a", "b"):  # the same link and seed twice: the same connections fire
        px = await proxy_in_front(spawn, upstream, link="same", seed=3, dirname=f"run-{run}")
        await control(px, "add", "latency", delay_ms=1, probability=0.5)
        conns = [await connect(px) for _ in range(12)]
        for r, w in conns:
            assert await roundtrip(r, w, b".") == b"."
        fired.append([x["connection"] for x in records(px)])
        for _, w in conns:
            w.close()
        await px.stop()
    assert fired[0] == fired[1] and 0 < len(fired[0]) < 12
