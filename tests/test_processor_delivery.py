"""At-most-once and at-least-once processing against in-process fake broker and sink.

The fakes' journal records, in order, the running total of committed offsets
(``CommitOffset``) and of applied orders (``Apply``); with one processor and
no duplicates these are comparable counts of records.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE
from processor_support import (SimulatedCrash, balances, crash_on, drained, fake_cluster, make_orders,
                               make_processor, running)

pytestmark = pytest.mark.timeout(60)
N = 1000


def commit_precedes_apply(journal) -> bool:
    """Every Apply only covers records whose offsets were already committed."""
    committed = 0
    for entry in journal:
        if entry[0] == "CommitOffset":
            committed = entry[1]
        elif entry[0] == "Apply" and entry[1] > committed:
            return False
    return True


def apply_precedes_commit(journal) -> bool:
    """Every CommitOffset only covers records already applied."""
    applied = 0
    for entry in journal:
        if entry[0] == "Apply":
            applied = entry[1]
        elif entry[0] == "CommitOffset" and entry[1] > applied:
            return False
    return True


async def test_at_most_once_commits_before_the_write(tmp_path):
    orders = make_orders(N, seed=1)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p = make_processor(c, tmp_path, mode=AT_MOST_ONCE)
        async with running(p):
            await p.wait_until(lambda p: drained(c)(p) and c.sink.total_applied == N, 20)
        assert any(e[0] == "CommitOffset" for e in c.journal)
        assert commit_precedes_apply(c.journal)
        assert not apply_precedes_commit(c.journal)
        assert dict(c.sink.balances) == balances(orders) == p.state.snapshot()
        assert set(c.sink.applied.values()) == {1}


async def test_at_most_once_drops_a_failed_write(tmp_path):
    orders = make_orders(N, seed=2)
    async with fake_cluster() as c:
        c.broker.append(orders)
        c.sink.faults.errors["Apply"] = [grpc.StatusCode.UNAVAILABLE]
        p = make_processor(c, tmp_path, mode=AT_MOST_ONCE, sink_batch=50)
        async with running(p):
            await p.wait_until(drained(c), 20)
        assert p.sink.errors == 1 and p.sink.retries == 0 and p.sink.dropped == 50
        assert c.sink.total_applied == N - 50
        assert set(c.sink.applied.values()) == {1}


async def test_at_least_once_commits_after_the_ack_and_retries(tmp_path):
    orders = make_orders(N, seed=3)
    async with fake_cluster() as c:
        c.broker.append(orders)
        c.sink.faults.errors["Apply"] = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL]
        c.broker.faults.errors["CommitOffset"] = [grpc.StatusCode.UNAVAILABLE]
        p = make_processor(c, tmp_path, mode=AT_LEAST_ONCE)
        async with running(p):
            await p.wait_until(drained(c), 20)
        assert apply_precedes_commit(c.journal)
        assert not commit_precedes_apply(c.journal)
        assert p.sink.retries == 2
        assert len(c.sink.applied) == N and set(c.sink.applied.values()) == {1}
        assert dict(c.sink.balances) == balances(orders)


async def test_at_least_once_lost_ack_shows_as_a_duplicate(tmp_path):
    orders = make_orders(N, seed=4)
    async with fake_cluster() as c:
        c.broker.append(orders)
        c.sink.faults.lost_acks["Apply"] = 1
        p = make_processor(c, tmp_path, mode=AT_LEAST_ONCE, sink_batch=50)
        async with running(p):
            await p.wait_until(drained(c), 20)
        assert len(c.sink.applied) == N
        assert sorted(c.sink.applied.values()).count(2) == 50  # the batch whose ACK was lost


async def test_at_least_once_replays_uncommitted_after_a_crash(tmp_path):
    """A crash between the ACK and the commit replays (duplicates), never skips."""
    orders = make_orders(N, seed=5)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p = make_processor(c, tmp_path, mode=AT_LEAST_ONCE, fetch_max_records=100)
        crash_on(p.consumer, "commit", nth=1)  # crash after the first batch's ACK, before its commit
        async with running(p) as task:
            await asyncio.wait_for(asyncio.wait({task}), 20)
        assert isinstance(task.exception(), SimulatedCrash)
        assert c.sink.total_applied == 400 and not c.broker.committed["processor"]
        p2 = make_processor(c, tmp_path, mode=AT_LEAST_ONCE)
        async with running(p2):
            await p2.wait_until(drained(c), 20)
        assert len(c.sink.applied) == N and sorted(c.sink.applied.values()).count(2) == 400


async def test_commit_before_sink_ablation_commits_first(tmp_path):
    orders = make_orders(N, seed=6)
    async with fake_cluster() as c:
        c.broker.append(orders)
        p = make_processor(c, tmp_path, mode=AT_LEAST_ONCE, commit_before_sink=True)
        async with running(p):
            await p.wait_until(lambda p: drained(c)(p) and c.sink.total_applied == N, 20)
        assert commit_precedes_apply(c.journal) and not apply_precedes_commit(c.journal)


async def test_no_sink_retry_ablation_drops(tmp_path):
    orders = make_orders(N, seed=7)
    async with fake_cluster() as c:
        c.broker.append(orders)
        c.sink.faults.errors["Apply"] = [grpc.StatusCode.DEADLINE_EXCEEDED]
        p = make_processor(c, tmp_path, mode=AT_LEAST_ONCE, no_sink_retry=True, sink_batch=50)
        async with running(p):
            await p.wait_until(drained(c), 20)
        assert c.sink.total_applied == N - 50


@pytest.mark.parametrize("mode", [AT_MOST_ONCE, AT_LEAST_ONCE])
async def test_committed_offset_fetch_errors_are_retried(tmp_path, mode):
    """Scenario 8: errors on FetchCommittedOffset; the processor resumes at the committed
    offsets (never at 0, never at the log end)."""
    orders = make_orders(300, seed=8)
    async with fake_cluster(partitions=1) as c:
        c.broker.append(orders)
        c.broker.committed["processor"][0] = 100
        c.broker.faults.errors["FetchCommittedOffset"] = [grpc.StatusCode.UNAVAILABLE,
                                                          grpc.StatusCode.INTERNAL,
                                                          grpc.StatusCode.DEADLINE_EXCEEDED]
        p = make_processor(c, tmp_path, mode=mode)
        async with running(p):
            await p.wait_until(drained(c), 20)
        assert c.broker.faults.calls["FetchCommittedOffset"] == 4
        assert sorted(c.sink.applied) == [o.order_id for o in orders[100:]]
