"""The sink node as a real process on loopback: RPCs, restarts, kill -9, timeout, ablation."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import grpc
import pytest

from harness.process import ROOT
from nodes.common.channels import insecure_channel
from nodes.pb import events_pb2, node_pb2, node_pb2_grpc, sink_pb2, sink_pb2_grpc
from nodes.sink.db import read_snapshot

TIMEOUT_S = 10.0


def orders(n: int, start: int = 0, accounts: int = 7) -> list[events_pb2.Order]:
    return [events_pb2.Order(order_id=f"order-{i:08d}", account=f"acct-{i % accounts}",
                             amount_cents=100 + i) for i in range(start, start + n)]


def expected_balances(batch, times: int = 1) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in batch:
        out[o.account] = out.get(o.account, 0) + o.amount_cents * times
    return out


class Client:
    """A Sink stub plus Status, on a fresh channel (use ``async with``)."""

    def __init__(self, address: str) -> None:
        self.channel = insecure_channel(address)
        self.sink = sink_pb2_grpc.SinkStub(self.channel)
        self.control = node_pb2_grpc.NodeControlStub(self.channel)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.channel.close()

    async def status(self) -> dict:
        r = await self.control.Status(node_pb2.StatusRequest(), timeout=TIMEOUT_S)
        return json.loads(r.status_json)

    async def apply(self, batch) -> int:
        return (await self.sink.Apply(sink_pb2.WriteRequest(orders=batch), timeout=TIMEOUT_S)).applied

    async def pre_commit(self, txn: str, batch) -> None:
        await self.sink.PreCommit(sink_pb2.PreCommitRequest(transaction_id=txn, orders=batch),
                                  timeout=TIMEOUT_S)

    async def commit(self, txn: str) -> sink_pb2.CommitResponse:
        return await self.sink.Commit(sink_pb2.TransactionRequest(transaction_id=txn), timeout=TIMEOUT_S)

    async def list_prepared(self) -> list[str]:
        r = await self.sink.ListPrepared(sink_pb2.ListPreparedRequest(), timeout=TIMEOUT_S)
        return list(r.transaction_ids)

    async def snapshot(self, limit: int = 0) -> tuple[dict[str, int], dict[str, int], int]:
        """All pages -> ({order_id: applied_count}, {account: balance_cents}, pages)."""
        counts: dict[str, int] = {}
        after, pages = "", 0
        while True:
            r = await self.sink.Snapshot(sink_pb2.SnapshotRequest(after_order_id=after, limit=limit),
                                         timeout=TIMEOUT_S)
            pages += 1
            counts.update({o.order_id: o.applied_count for o in r.orders})
            if r.done:
                return counts, {b.account: b.balance_cents for b in r.balances}, pages
            after = r.orders[-1].order_id


async def restart(p, how: str) -> None:
    if how == "kill":
        p.kill()
        assert await p.wait(5) == -9
    else:
        assert await p.stop() == 0
    await p.start()


async def test_apply_twice_upsert_once_and_status(spawn):
    p = await spawn("sink", ["--mode", "at-least-once"])
    batch = orders(200)
    async with Client(p.address) as c:
        assert await c.apply(batch) == 200
        assert await c.apply(batch[:50]) == 50
        up = await c.sink.Upsert(sink_pb2.WriteRequest(orders=orders(100, start=150)), timeout=TIMEOUT_S)
        assert (up.applied, up.skipped) == (50, 50)
        st = await c.status()
        assert st["orders"] == 250 and st["applied_total"] == 300 and st["duplicated_orders"] == 50
        assert st["calls"] == {"Apply": 2, "Upsert": 1}
        counts, balances, _ = await c.snapshot()
    assert counts["order-00000000"] == 2 and counts["order-00000100"] == 1
    want = expected_balances(batch)
    for acct, cents in expected_balances(batch[:50]).items():
        want[acct] += cents
    for acct, cents in expected_balances(orders(50, start=200)).items():
        want[acct] += cents
    assert balances == want


@pytest.mark.parametrize("how", ["term", "kill"])
async def test_commit_repeated_after_restart_is_noop(spawn, how):
    p = await spawn("sink", ["--mode", "exactly-once"])
    batch = orders(300)
    async with Client(p.address) as c:
        await c.pre_commit("ckpt-7", batch)
        r = await c.commit("ckpt-7")
        assert (r.already_committed, r.applied) == (False, 300)
    await restart(p, how)
    async with Client(p.address) as c:
        r = await c.commit("ckpt-7")
        assert (r.already_committed, r.applied) == (True, 0)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await c.pre_commit("ckpt-7", batch)
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
        counts, balances, _ = await c.snapshot()
        assert (await c.status())["committed_transactions"] == 1
    assert len(counts) == 300 and set(counts.values()) == {1}
    assert balances == expected_balances(batch)


async def test_prepared_survive_kill_then_abort_and_commit(spawn):
    p = await spawn("sink", ["--mode", "exactly-once"])
    async with Client(p.address) as c:
        await c.pre_commit("ckpt-1", orders(100))
        await c.pre_commit("ckpt-2", orders(100, start=100))
    await restart(p, "kill")  # kill -9 between PreCommit and Commit
    async with Client(p.address) as c:
        assert sorted(await c.list_prepared()) == ["ckpt-1", "ckpt-2"]
        a = await c.sink.Abort(sink_pb2.TransactionRequest(transaction_id="ckpt-1"), timeout=TIMEOUT_S)
        assert not a.already_aborted
        a = await c.sink.Abort(sink_pb2.TransactionRequest(transaction_id="ckpt-1"), timeout=TIMEOUT_S)
        assert a.already_aborted
        assert (await c.commit("ckpt-2")).applied == 100
        assert await c.list_prepared() == []
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await c.commit("ckpt-1")
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await c.sink.Abort(sink_pb2.TransactionRequest(transaction_id="ckpt-2"), timeout=TIMEOUT_S)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        counts, _, _ = await c.snapshot()
    assert sorted(counts) == [o.order_id for o in orders(100, start=100)]


async def test_prepared_timeout_aborts_and_commit_fails_loudly(spawn):
    p = await spawn("sink", ["--mode", "exactly-once", "--prepared-timeout-ms", "300"])
    async with Client(p.address) as c:
        await c.pre_commit("ckpt-5", orders(20, start=40))
        assert (await c.status())["prepared"] == ["ckpt-5"]
        # The sink's own sweeper (not a ListPrepared or Commit call) must abort it: poll Status.
        deadline = time.monotonic() + 10
        while (st := await c.status())["prepared"]:
            assert time.monotonic() < deadline, f"still prepared after 10 s: {st}"
            await asyncio.sleep(0.05)  # poll interval of a deadline-bounded status poll
        assert st["aborted_by_timeout"] == 1
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await c.commit("ckpt-5")
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "aborted by timeout" in e.value.details()
        counts, _, _ = await c.snapshot()
    assert counts == {}


async def test_no_txn_dedupe_reapplies_commit(spawn):
    p = await spawn("sink", ["--mode", "exactly-once", "--no-txn-dedupe"])
    batch = orders(50)
    async with Client(p.address) as c:
        await c.pre_commit("ckpt-7", batch)
        assert (await c.commit("ckpt-7")).applied == 50
    await restart(p, "kill")
    async with Client(p.address) as c:
        r = await c.commit("ckpt-7")
        assert (r.already_committed, r.applied) == (False, 50)
        counts, balances, _ = await c.snapshot()
        st = await c.status()
    assert set(counts.values()) == {2} and balances == expected_balances(batch, times=2)
    assert st["duplicated_orders"] == 50 and st["reapplied_commits"] == 1


async def test_snapshot_paging_equals_offline_reader(spawn):
    p = await spawn("sink", ["--mode", "at-least-once"])
    batch = orders(3000, accounts=11)
    async with Client(p.address) as c:
        for i in range(0, 3000, 1000):
            await c.apply(batch[i:i + 1000])
        await c.apply(batch[::7])
        counts, balances, pages = await c.snapshot(limit=700)
    assert pages == 5
    assert await p.stop() == 0
    assert read_snapshot(p.data_dir / "sink.db") == (counts, balances)


async def test_bad_input_is_rejected_and_node_keeps_serving(spawn):
    p = await spawn("sink", ["--mode", "at-least-once"])
    async with Client(p.address) as c:
        cases = [
            (c.sink.Apply, sink_pb2.WriteRequest(orders=[events_pb2.Order(account="a", amount_cents=1)]),
             grpc.StatusCode.INVALID_ARGUMENT, "empty order_id"),
            (c.sink.Upsert, sink_pb2.WriteRequest(orders=[events_pb2.Order(order_id="o", amount_cents=1)]),
             grpc.StatusCode.INVALID_ARGUMENT, "no account"),
            (c.sink.PreCommit, sink_pb2.PreCommitRequest(transaction_id="", orders=orders(1)),
             grpc.StatusCode.INVALID_ARGUMENT, "transaction_id"),
            (c.sink.Commit, sink_pb2.TransactionRequest(), grpc.StatusCode.INVALID_ARGUMENT, "transaction_id"),
            (c.sink.Abort, sink_pb2.TransactionRequest(), grpc.StatusCode.INVALID_ARGUMENT, "transaction_id"),
            (c.sink.Commit, sink_pb2.TransactionRequest(transaction_id="nope"),
             grpc.StatusCode.NOT_FOUND, "never pre-committed"),
            (c.sink.Snapshot, sink_pb2.SnapshotRequest(limit=-1), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
            (c.sink.Apply, sink_pb2.WriteRequest(orders=orders(100_001, accounts=3)),
             grpc.StatusCode.RESOURCE_EXHAUSTED, "100000"),
        ]
        for method, request, code, text in cases:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await method(request, timeout=TIMEOUT_S)
            assert e.value.code() == code, (request, e.value)
            assert text in e.value.details()
        assert await c.apply(orders(10)) == 10
        st = await c.status()
    assert st["orders"] == 10 and st["applied_total"] == 10 and p.running


async def test_kill_right_after_apply_ack_loses_nothing(spawn):
    p = await spawn("sink", ["--mode", "at-least-once"])
    batch = orders(5000)
    async with Client(p.address) as c:
        for i in range(0, 5000, 500):
            assert await c.apply(batch[i:i + 500]) == 500
    p.kill()  # no SIGTERM, no close: only what synchronous=FULL put on disk before each ACK
    assert await p.wait(5) == -9
    counts, balances = read_snapshot(p.data_dir / "sink.db")
    assert len(counts) == 5000 and set(counts.values()) == {1}
    assert balances == expected_balances(batch)


def test_bad_flag_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nodes.sink", "--data-dir", str(tmp_path),
                        "--prepared-timeout-ms", "-5"], cwd=ROOT, capture_output=True, timeout=30)
    assert r.returncode == 2 and r.stdout == b""
