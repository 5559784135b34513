"""Exactly-once processing (checkpoints + idempotent or transactional sink) against fakes.

A crash is simulated in-process: the run task is cancelled (or a SimulatedCrash is
raised at an exact point) and a new Processor recovers from the same data dir.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from nodes.common.modes import EXACTLY_ONCE, SINK_IDEMPOTENT, SINK_TRANSACTIONAL
from nodes.processor.checkpoint import CheckpointStore
from nodes.processor.sinks import TransactionLostError
from processor_support import (SimulatedCrash, balances, crash_on, drained, fake_cluster,
                               journal_saves, make_orders, make_processor, running)

pytestmark = pytest.mark.timeout(60)
N = 1000
EO = dict(mode=EXACTLY_ONCE, checkpoint_records=200, fetch_max_records=60)


def idem(**kw):
    return {**EO, "sink_strategy": SINK_IDEMPOTENT, **kw}


def tx(**kw):
    return {**EO, "sink_strategy": SINK_TRANSACTIONAL, **kw}


async def run_failing(proc, timeout_s=20):
    """Run ``proc`` until run() raises; return the exception."""
    task = asyncio.ensure_future(proc.run())
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except Exception as e:  # noqa: BLE001
        return e
    finally:
        task.cancel()
    raise AssertionError("run() returned")


def assert_exactly_once(c, orders):
    assert sorted(c.sink.applied) == sorted(o.order_id for o in orders)
    assert set(c.sink.applied.values()) == {1}
    assert dict(c.sink.balances) == balances(orders)


@pytest.mark.parametrize("strategy", [SINK_IDEMPOTENT, SINK_TRANSACTIONAL])
async def test_no_fault_run_applies_each_order_once(tmp_path, strategy):
    orders = make_orders(N, seed=11)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p = make_processor(c, tmp_path, **EO, sink_strategy=strategy)
        hw = c.broker.high_watermarks()
        async with running(p):
            await p.wait_until(drained(c), 20)
            # then the informational CommitOffset of the last checkpoint
            await p.wait_until(lambda p: c.broker.committed["processor"] == hw, 5)
        assert_exactly_once(c, orders)
        assert p.state.snapshot() == balances(orders)
        ck = CheckpointStore(tmp_path).load()
        assert ck.offsets == c.broker.high_watermarks() and ck.state == balances(orders)
        assert p.checkpoints >= N // 200 and ck.checkpoint_id == p.last_checkpoint_id


@pytest.mark.parametrize("strategy", [SINK_IDEMPOTENT, SINK_TRANSACTIONAL])
async def test_crash_mid_stream_restores_the_checkpoint(tmp_path, strategy):
    orders = make_orders(N, seed=12)
    async with fake_cluster() as c:
        c.broker.append(orders[:600])
        p1 = make_processor(c, tmp_path, **EO, sink_strategy=strategy, checkpoint_ms=10_000)
        async with running(p1):
            await p1.wait_until(lambda p: p.checkpoints >= 2, 20)
        c.broker.append(orders[600:])
        p2 = make_processor(c, tmp_path, **EO, sink_strategy=strategy)
        async with running(p2):
            await p2.wait_until(drained(c), 20)
        assert p2.restored is not None and p2.restored.checkpoint_id >= 2
        assert p2.incarnation == 2
        assert p2.records < N  # replayed from the checkpoint, not from offset 0
        assert_exactly_once(c, orders)
        assert p2.state.snapshot() == balances(orders)


async def test_idempotent_checkpoint_waits_for_writes_in_flight(tmp_path):
    """Scenario 4: with Upserts held unacknowledged, no checkpoint completes."""
    orders = make_orders(N, seed=13)
    async with fake_cluster() as c:
        c.broker.append(orders)
        gate = c.sink.faults.gate("Upsert")
        p = make_processor(c, tmp_path, **idem(checkpoint_records=30, sink_batch=10, sink_inflight=4))
        journal_saves(p, c.journal)
        async with running(p):
            await p.wait_until(lambda p: c.sink.faults.calls["Upsert"] == 3 and p.records == 30, 20)
            assert p.checkpoints == 0 and not (tmp_path / "checkpoint.json").exists()
            assert p.status()["sink_in_flight"] == 3
            gate.set()
            await p.wait_until(drained(c), 20)
        assert_exactly_once(c, orders)
        saves = [e for e in c.journal if e[0] == "Save"]
        assert saves
        applied = 0
        for e in c.journal:  # every checkpoint covers only acknowledged writes
            if e[0] == "Upsert":
                applied = e[1]
            elif e[0] == "Save":
                assert e[3] <= applied


async def test_no_drain_ablation_checkpoints_unacknowledged_writes(tmp_path):
    orders = make_orders(N, seed=14)
    async with fake_cluster() as c:
        c.broker.append(orders)
        gate = c.sink.faults.gate("Upsert")
        p = make_processor(c, tmp_path, **idem(checkpoint_records=30, sink_batch=10,
                                                 no_drain_before_checkpoint=True))
        async with running(p):
            await p.wait_until(lambda p: p.checkpoints >= 1, 20)
            ck = CheckpointStore(tmp_path).load()
            assert sum(ck.offsets.values()) >= 30 and c.sink.total_applied == 0
            gate.set()


async def test_transactional_order_is_precommit_persist_commit(tmp_path):
    orders = make_orders(N, seed=15)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p = make_processor(c, tmp_path, **tx())
        journal_saves(p, c.journal)
        async with running(p):
            await p.wait_until(drained(c), 20)
        steps = [e for e in c.journal if e[0] in ("PreCommit", "Save", "Commit")]
        txns = [e[1] for e in steps if e[0] == "PreCommit"]
        assert txns and all(t.startswith("processor-i1-c") for t in txns)
        for t in txns:
            kinds = [e[0] for e in steps if (e[0] == "Save" and e[2] == t) or (e[0] != "Save" and e[1] == t)]
            assert kinds == ["PreCommit", "Save", "Commit"], (t, kinds)


async def test_recovery_recommits_the_pending_transaction_and_aborts_others(tmp_path):
    """Crash between PreCommit+persist and Commit; a stale prepared txn of an older
    incarnation and another group's txn exist: re-commit, abort ours only, replay."""
    orders = make_orders(N, seed=16)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p1 = make_processor(c, tmp_path, **tx())
        crash_on(p1.sink, "commit", nth=2)
        assert isinstance(await run_failing(p1), SimulatedCrash)
        pending = CheckpointStore(tmp_path).load().pending_transaction
        assert pending == "processor-i1-c2" and pending in c.sink.prepared
        c.sink.prepared["processor-i0-c99"] = orders[:5]
        c.sink.prepared["other-i1-c1"] = orders[:5]
        p2 = make_processor(c, tmp_path, **tx())
        async with running(p2):
            await p2.wait_until(drained(c), 20)
        assert ("Commit", pending) in c.journal
        assert c.journal.index(("Commit", pending)) < c.journal.index(("Abort", "processor-i0-c99"))
        assert c.sink.aborted == {"processor-i0-c99"} and "other-i1-c1" in c.sink.prepared
        assert_exactly_once(c, orders)
        assert p2.state.snapshot() == balances(orders)


async def test_a_failing_recommit_stops_the_processor(tmp_path):
    """Scenario 5: the sink aborted the pending txn (its timeout) while we were down:
    fail loudly, do not fetch, do not touch the checkpoint."""
    orders = make_orders(N, seed=17)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p1 = make_processor(c, tmp_path, **tx())
        crash_on(p1.sink, "commit", nth=2)
        await run_failing(p1)
        before = (tmp_path / "checkpoint.json").read_bytes()
        pending = CheckpointStore(tmp_path).load().pending_transaction
        c.sink.aborted.add(pending)
        del c.sink.prepared[pending]
        fetches = c.broker.faults.calls["Fetch"]
        p2 = make_processor(c, tmp_path, **tx())
        err = await run_failing(p2)
        assert isinstance(err, TransactionLostError) and pending in str(err)
        assert p2.phase == "failed" and p2.status()["phase"] == "failed"
        assert c.broker.faults.calls["Fetch"] == fetches
        assert (tmp_path / "checkpoint.json").read_bytes() == before


async def test_lost_commit_ack_is_retried_with_the_same_id(tmp_path):
    """Scenario 6 (in-run variant): Commit applied, its ACK lost; the retry is already_committed."""
    orders = make_orders(N, seed=18)
    async with fake_cluster() as c:
        c.broker.append(orders)
        c.sink.faults.lost_acks["Commit"] = 1
        c.sink.faults.errors["PreCommit"] = [grpc.StatusCode.UNAVAILABLE]
        p = make_processor(c, tmp_path, **tx())
        async with running(p):
            await p.wait_until(drained(c), 20)
        assert any(e[0] == "Commit" and len(e) == 3 for e in c.journal)
        assert p.sink.retries == 2
        assert_exactly_once(c, orders)


@pytest.mark.parametrize("twopc_order, crash_point, duplicates, lost", [
    ("safe", "save", False, False),                        # crash after PreCommit, before persist
    ("commit-before-checkpoint", "save", True, False),      # crash after Commit, before persist
    ("safe", "precommit", False, False),                    # crash before PreCommit
    ("checkpoint-before-precommit", "precommit", False, True),  # persisted, then crash before PreCommit
])
async def test_twopc_order_ablations(tmp_path, twopc_order, crash_point, duplicates, lost):
    orders = make_orders(N, seed=19)
    async with fake_cluster() as c:
        c.broker.append(orders)
        # count-based checkpoints only (200 records each), whatever the machine's speed
        p1 = make_processor(c, tmp_path, **tx(twopc_order=twopc_order, checkpoint_ms=60_000))
        if crash_point == "save":
            real = p1.store.save
            calls = {"n": 0}

            def save(ck):
                calls["n"] += 1
                if calls["n"] == 2:
                    raise SimulatedCrash("before persisting checkpoint 2")
                real(ck)
            p1.store.save = save
        else:
            crash_on(p1.sink, "precommit", nth=2)
        assert isinstance(await run_failing(p1), SimulatedCrash)
        p2 = make_processor(c, tmp_path, **tx(twopc_order=twopc_order, checkpoint_ms=60_000))
        async with running(p2):
            await p2.wait_until(drained(c), 20)
        dup = [k for k, v in c.sink.applied.items() if v > 1]
        missing = {o.order_id for o in orders} - set(c.sink.applied)
        assert bool(dup) == duplicates and bool(missing) == lost
        if duplicates:
            assert len(dup) == 200
        if lost:
            assert len(missing) == 200
        if not duplicates and not lost:
            assert_exactly_once(c, orders)


async def test_no_checkpoint_ablation_loses_operator_state(tmp_path):
    orders = make_orders(N, seed=20)
    async with fake_cluster() as c:
        c.broker.append(orders[:500])
        p1 = make_processor(c, tmp_path, **idem(no_checkpoint=True))
        async with running(p1):
            await p1.wait_until(drained(c), 20)
        c.broker.append(orders[500:])
        p2 = make_processor(c, tmp_path, **idem(no_checkpoint=True))
        async with running(p2):
            await p2.wait_until(drained(c), 20)
        assert not (tmp_path / "checkpoint.json").exists()
        assert_exactly_once(c, orders)   # Upsert keeps the sink right...
        assert p2.state.snapshot() == balances(orders[500:]) != balances(orders)  # ...the state is lost


async def test_no_checkpoint_transactional_duplicates_after_a_crash(tmp_path):
    """Each batch's txn committed right away; a crash before its offsets are committed
    replays it under a new txn id."""
    orders = make_orders(N, seed=21)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p1 = make_processor(c, tmp_path, **tx(no_checkpoint=True))
        crash_on(p1.consumer, "commit", nth=2)
        assert isinstance(await run_failing(p1), SimulatedCrash)
        p2 = make_processor(c, tmp_path, **tx(no_checkpoint=True))
        async with running(p2):
            await p2.wait_until(drained(c), 20)
        assert set(c.sink.applied) == {o.order_id for o in orders}
        assert max(c.sink.applied.values()) == 2
