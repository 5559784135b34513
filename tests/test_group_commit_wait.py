"""nodes/broker/group_commit.py: wait_until's shared wake-up future (issue 16) wakes every
waiter once its predicate holds, times out, and a cancelled waiter leaves the others waiting."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from nodes.broker.group_commit import GroupCommit, wait_shared


def _commit() -> GroupCommit:
    return GroupCommit(SimpleNamespace(partitions=[]), fsync=True, checkpoint_interval_s=0,
                       snapshot=lambda ends: {}, snapshot_path=Path("/nonexistent"))


def test_wake_releases_each_waiter_when_its_predicate_holds_and_times_out_otherwise():
    async def main():
        gc, state = _commit(), {"n": 0}
        a = asyncio.ensure_future(gc.wait_until(lambda: state["n"] >= 1, None))
        b = asyncio.ensure_future(gc.wait_until(lambda: state["n"] >= 2, None))
        c = asyncio.ensure_future(gc.wait_until(lambda: state["n"] >= 9, 0.05))
        await asyncio.sleep(0)
        state["n"] = 1
        gc.wake()
        assert await asyncio.wait_for(a, 5) is True
        assert not b.done()
        state["n"] = 2
        gc.wake()
        assert await asyncio.wait_for(b, 5) is True
        assert await asyncio.wait_for(c, 5) is False  # its timeout, not a wake-up
        assert gc._progress is None or not gc._progress.done()
    asyncio.run(main())


def test_a_cancelled_waiter_does_not_cancel_the_shared_future():
    async def main():
        gc, state = _commit(), {"ok": False}
        a = asyncio.ensure_future(gc.wait_until(lambda: state["ok"], None))
        b = asyncio.ensure_future(gc.wait_until(lambda: state["ok"], None))
        await asyncio.sleep(0)
        shared = gc._progress
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)
        assert not shared.cancelled() and not b.done()
        state["ok"] = True
        gc.wake()
        assert await asyncio.wait_for(b, 5) is True
    asyncio.run(main())


def test_wait_shared_returns_at_once_on_a_done_future_and_after_its_timeout():
    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        done.set_result(None)
        await asyncio.wait_for(wait_shared(done, None), 1)
        pending = loop.create_future()
        t0 = loop.time()
        await wait_shared(pending, 0.02)
        assert loop.time() - t0 >= 0.015 and not pending.done()
    asyncio.run(main())
