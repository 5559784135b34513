"""Group commit: one flusher task fsyncs the log for many Produce calls, and wakes waiters.

Kafka and PostgreSQL's WAL flusher do the same: appends go to the page cache on
the event loop and mark the log dirty; the flusher fsyncs every partition with
un-synced records in a worker thread, then advances each partition's *durable
end* (first offset not yet fsynced). Appends that arrive while an fsync runs are
covered by the next round, so there is one fsync per batch of appends, not per
record. The flusher also persists the recovery point (segment indexes and the
producer-state snapshot) every ``checkpoint_interval_s`` seconds.

Waiters (a Produce awaiting its fsync, a long-poll Fetch) use :meth:`wait_until`,
woken by :meth:`wake` after every append or flush. A wake-up is one shared future per
generation (resolved by :meth:`wake`, then replaced), each waiter a callback on it and a
timer: the same wake-ups, in the same order, as an ``asyncio.Event`` waited for through
``asyncio.wait({ensure_future(ev.wait())}, timeout)``, without a Task and its
cancellation per waiter and wake-up (issue 16: a Produce wakes every waiter after its
append and again after its fsync; measured with ``python -m harness.bench.broker_call``,
docs/bench.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from pathlib import Path
from typing import Callable

from nodes.broker.errors import StorageError
from nodes.broker.log import TopicLog
from nodes.common.durable import atomic_write_bytes, atomic_write_json

log = logging.getLogger("broker")


class GroupCommit:
    """The flusher of one :class:`TopicLog`.

    Args:
        topic: the opened topic log.
        fsync: False = ablation --no-fsync: no fsync ever; the write-back buffers are
            written out (write(), no fsync) ``writeback_s`` after they became dirty.
        checkpoint_interval_s: recovery-point period (s); 0 = only :meth:`checkpoint_now` calls.
        snapshot: returns the producer-state snapshot for given log ends ({partition: offset}).
        snapshot_path: where that snapshot is written (atomically).
        writeback_s: delay of the write-back with ``fsync=False`` (s).
    """

    def __init__(self, topic: TopicLog, *, fsync: bool, checkpoint_interval_s: float,
                 snapshot: Callable[[dict[int, int]], dict], snapshot_path: Path,
                 writeback_s: float = 1.0) -> None:
        self.topic = topic
        self.fsync = fsync
        self.checkpoint_interval_s = checkpoint_interval_s
        self.writeback_s = writeback_s
        self._stopping = asyncio.Event()
        self._snapshot = snapshot
        self._snapshot_path = snapshot_path
        self.durable = [0] * len(topic.partitions)
        self.fsyncs = 0
        self.failed: BaseException | None = None
        self.fatal = asyncio.Event()
        self._progress: asyncio.Future | None = None  # resolved and dropped by wake() (wakes waiters)
        self._dirty = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._last_checkpoint = time.monotonic()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop after the current round (no fd is closed under a running fsync)."""
        self._closing = True
        self._stopping.set()
        self._dirty.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=30)
            self._task.cancel()

    def mark_dirty(self) -> None:
        self._dirty.set()

    def wake(self) -> None:
        fut, self._progress = self._progress, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float | None) -> bool:
        """Wait until ``predicate()`` holds (True) or ``timeout_s`` passed (False).

        Raises:
            StorageError: the flusher failed (an fsync error); nothing more becomes durable.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            if self._progress is None:
                self._progress = loop.create_future()
            progress = self._progress
            if predicate():
                return True
            if self.failed is not None:
                raise StorageError(f"storage failure: {self.failed}")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await wait_shared(progress, remaining)

    async def _loop(self) -> None:
        while not self._closing:
            await wait_event(self._dirty, self.checkpoint_interval_s or None)
            self._dirty.clear()
            targets = [(p.partition, p.end_offset, p.sync_targets()) for p in self.topic.partitions
                       if p.end_offset > self.durable[p.partition]]
            if not self.fsync:
                await wait_event(self._stopping, self.writeback_s)  # the ablation's loss window
                try:
                    for p in self.topic.partitions:
                        p.write_out()
                except OSError as e:
                    self._fail(e)
                    return
            elif targets:
                fds = [seg.fd for _, _, segs in targets for seg in segs]
                try:
                    await asyncio.to_thread(_fsync_all, fds,
                                            [seg.path for _, _, segs in targets for seg in segs])
                except OSError as e:
                    self._fail(e)
                    return
                self.fsyncs += len(fds)
            for p, end, _ in targets:
                self.durable[p] = max(self.durable[p], end)
            if targets:
                self.wake()
            if self.checkpoint_interval_s > 0 and \
                    time.monotonic() - self._last_checkpoint >= self.checkpoint_interval_s:
                parts = self._checkpoint_parts()
                self._last_checkpoint = time.monotonic()
                try:
                    await asyncio.to_thread(self._write_checkpoint, *parts)
                except OSError as e:
                    log.warning("recovery point not written: %s", e)

    def _fail(self, e: BaseException) -> None:
        # After a failed fsync the page cache state is unknown (PostgreSQL's "fsyncgate"):
        # fail-stop rather than acknowledge anything more.
        log.error("fsync failed, refusing all produce requests: %s", e)
        self.failed = e
        self.fatal.set()
        self.wake()

    def _checkpoint_parts(self) -> tuple[list[tuple[Path, bytes]], dict]:
        # Computed in one go on the event loop: the snapshot's log ends are covered by the indexes.
        idx = [(p.active.index_file, p.active.index_bytes()) for p in self.topic.partitions]
        return idx, self._snapshot(self.topic.end_offsets())

    def _write_checkpoint(self, idx: list[tuple[Path, bytes]], snap: dict) -> None:
        if self.fsync:
            # A recovery point claims its bytes are on disk: a log found shorter than it at a
            # restart is then acknowledged data lost (the broker refuses to start), never the
            # unsynced tail of a crash. So the segments are fsynced before it is written.
            _fsync_all([p.active.fd for p in self.topic.partitions if p.active.fd >= 0])
        for path, data in idx:
            atomic_write_bytes(path, data, fsync=self.fsync)
        atomic_write_json(self._snapshot_path, snap, fsync=self.fsync)

    def checkpoint_now(self) -> None:
        """Persist the recovery point synchronously (graceful stop)."""
        self._write_checkpoint(*self._checkpoint_parts())
        self._last_checkpoint = time.monotonic()


async def wait_event(ev: asyncio.Event, timeout_s: float | None) -> None:
    """Wait until ``ev`` is set or ``timeout_s`` passed (asyncio.wait: no wait_for cancel races)."""
    waiter = asyncio.ensure_future(ev.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout_s)
    finally:
        waiter.cancel()


async def wait_shared(fut: asyncio.Future, timeout_s: float | None) -> None:
    """Wait until ``fut`` is done or ``timeout_s`` passed, never cancelling ``fut`` (other
    waiters share it): a callback on ``fut`` and a timer release this waiter's own future."""
    if fut.done():
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    release = functools.partial(_release, waiter)
    fut.add_done_callback(release)
    timer = loop.call_later(timeout_s, _release, waiter, None) if timeout_s is not None else None
    try:
        await waiter
    finally:
        if timer is not None:
            timer.cancel()
        fut.remove_done_callback(release)


def _release(waiter: asyncio.Future, _done: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _fsync_all(fds: list[int], paths: list | None = None) -> None:
    """fsync each fd; a failure names its file (``paths[i]``) for the storage error line."""
    for i, fd in enumerate(fds):
        try:
            os.fsync(fd)
        except OSError as e:
            if paths is not None and e.filename is None:
                e.filename = str(paths[i])
            raise
