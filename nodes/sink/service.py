"""The Sink gRPC service: a thin shell running :class:`nodes.sink.db.SinkDB` on one worker thread.

Threading: every SQLite call runs on a single dedicated worker thread
(``ThreadPoolExecutor(max_workers=1)``) that also opened the connection. SQLite
serialises writers anyway, so one thread and one connection need no locks and
no ``check_same_thread=False``, and the event loop stays free for health checks
and Status while a 100,000-order commit and its fsync run. Status reads the
counters SinkDB replaces atomically after each commit, without touching SQLite.

A call whose client gives up (deadline, cancel) while its job is on the worker
still completes and commits: the client must treat that outcome as unknown.

Status codes: INVALID_ARGUMENT (empty or too long order_id, account or
transaction id, a balance that would leave the int64 range, negative snapshot
limit), RESOURCE_EXHAUSTED (more than 100,000 orders or 10,000 dead letters),
NOT_FOUND (Commit of an unknown id), FAILED_PRECONDITION (Commit of an aborted
id, Abort of a committed id), ALREADY_EXISTS (PreCommit of a committed id),
INTERNAL (an SQLite error; logged), UNAVAILABLE (an armed ``error`` failpoint:
at ``sink.before-*`` nothing is applied (a lost request); at ``sink.after-*`` the
write IS applied, only the reply is replaced (a lost ACK)).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import grpc

from nodes.common import storage_fault

from nodes.common.failpoints import FAILPOINTS, FailpointError
from nodes.pb import sink_pb2, sink_pb2_grpc
from nodes.sink.db import DB_FILE, SinkDB
from nodes.sink.errors import SinkError
from nodes.sink.identity import check_identity

T = TypeVar("T")


def order_rows(orders: Any) -> list[tuple[str, str, int]]:
    """Protobuf ``repeated Order`` -> [(order_id, account, amount_cents)]."""
    return [(o.order_id, o.account, o.amount_cents) for o in orders]


def checkpoint_rows(cks: Any) -> list[tuple[int, int, dict, int]]:
    """Protobuf ``repeated PartitionCheckpoint`` -> [(partition, offset, state, checkpoint_id)]."""
    return [(c.partition, c.offset, dict(c.state), c.checkpoint_id) for c in cks]


class SinkRunner:
    """Owns the worker thread and the SinkDB living on it; counts calls per RPC."""

    def __init__(self, data_dir: Path, *, txn_dedupe: bool, prepared_timeout_ms: int,
                 log: logging.Logger, epoch_fencing: bool = True) -> None:
        self.epoch_fencing = epoch_fencing
        self.db_path = Path(data_dir) / DB_FILE
        self.txn_dedupe = txn_dedupe
        self.prepared_timeout_ms = prepared_timeout_ms
        self.log = log
        self.calls: Counter[str] = Counter()
        self.db: SinkDB | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-db")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        """Recovery: check the database's identity (nodes/sink/identity.py: refuse a lost or
        replaced database), open it (SQLite replays its WAL), abort expired prepared transactions.

        Raises:
            RefuseToStart: see :func:`nodes.sink.identity.check_identity` (the node exits 2).
        """
        await self.run(check_identity, self.db_path)
        self.db = await self.run(lambda: SinkDB(self.db_path, txn_dedupe=self.txn_dedupe,
                                                prepared_timeout_ms=self.prepared_timeout_ms,
                                                log=self.log, epoch_fencing=self.epoch_fencing))
        await self.run(self.db.abort_expired)
        c = self.db.counters
        self.log.info("sink database open", extra={"path": str(self.db_path), "orders": c.orders,
                                                   "prepared": list(c.prepared)})

    async def expire_prepared(self) -> None:
        """Main task: abort timed-out prepared transactions every timeout/4 (at most each second)."""
        if self.prepared_timeout_ms <= 0:
            return
        interval_s = max(0.05, min(1.0, self.prepared_timeout_ms / 4000))
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.run(self.db.abort_expired)
            except sqlite3.Error as e:  # e.g. busy: try again next round, keep serving
                self.log.error("prepared-timeout sweep failed: %r", e)

    async def close(self) -> None:
        if self.db is not None:
            await self.run(self.db.close)
        self._executor.shutdown(wait=True)

    def status(self) -> dict:
        """Status JSON: orders, applied_total, duplicated_orders, prepared, committed_transactions,
        aborted_transactions, aborted_by_timeout, reapplied_commits, calls, txn_dedupe,
        prepared_timeout_ms."""
        c = self.db.counters if self.db is not None else None
        out: dict[str, Any] = {}
        if c is not None:
            out = {"orders": c.orders, "applied_total": c.applied_total,
                   "duplicated_orders": c.duplicated_orders, "prepared": list(c.prepared),
                   "committed_transactions": c.committed_transactions,
                   "aborted_transactions": c.aborted_transactions,
                   "aborted_by_timeout": c.aborted_by_timeout,
                   "reapplied_commits": c.reapplied_commits, "dead_letters": c.dead_letters}
        if self.db is not None:
            out["fenced_refusals"] = self.db.fenced_refusals
        out.update(calls=dict(self.calls), txn_dedupe=self.txn_dedupe, epoch_fencing=self.epoch_fencing,
                   prepared_timeout_ms=self.prepared_timeout_ms)
        return out


class SinkServicer(sink_pb2_grpc.SinkServicer):
    """gRPC Sink service over a :class:`SinkRunner` (see the module doc for status codes)."""

    def __init__(self, runner: SinkRunner) -> None:
        self._r = runner

    async def _call(self, name: str, context: grpc.aio.ServicerContext, fn: Callable[[SinkDB], T]) -> T:
        self._r.calls[name] += 1
        db = self._r.db
        try:
            return await self._r.run(fn, db)
        except SinkError as e:
            self._r.log.info("%s refused: %s", name, e, extra={"code": e.code.name})
            await context.abort(e.code, str(e))
        except sqlite3.Error as e:
            storage_fault.failed(e)  # SQLITE_FULL / SQLITE_IOERR: fail-stop, exit 3
            self._r.log.error("%s failed: %r", name, e, exc_info=True)
            await context.abort(grpc.StatusCode.INTERNAL, f"sink database error: {e}")
        raise AssertionError("unreachable")  # context.abort raises

    async def _failpoint(self, failpoint: str, context: grpc.aio.ServicerContext) -> None:
        """A failpoint (``error``: UNAVAILABLE). ``sink.before-*``: before the database
        call, nothing applied; ``sink.after-*``: after it committed, the write stays
        applied and the client sees a lost ACK."""
        if FAILPOINTS.armed:
            try:
                await FAILPOINTS.hit(failpoint)
            except FailpointError as e:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))

    async def Apply(self, request, context):
        await self._failpoint("sink.before-apply", context)
        n = await self._call("Apply", context, lambda db: db.apply(order_rows(request.orders),
                                                                   member=request.member_id, epoch=request.epoch))
        await self._failpoint("sink.after-apply-before-reply", context)
        return sink_pb2.WriteResponse(applied=n)

    async def Upsert(self, request, context):
        await self._failpoint("sink.before-upsert", context)
        applied, skipped = await self._call("Upsert", context,
                                            lambda db: db.upsert(order_rows(request.orders),
                                                                 member=request.member_id, epoch=request.epoch))
        await self._failpoint("sink.after-upsert-before-reply", context)
        return sink_pb2.WriteResponse(applied=applied, skipped=skipped)

    async def PreCommit(self, request, context):
        await self._failpoint("sink.before-precommit", context)
        await self._call("PreCommit", context,
                         lambda db: db.pre_commit(request.transaction_id, order_rows(request.orders),
                                                  epoch=request.epoch, member=request.member_id,
                                                  checkpoints=checkpoint_rows(request.checkpoints)))
        await self._failpoint("sink.after-pre-commit", context)
        return sink_pb2.PreCommitResponse()

    async def Commit(self, request, context):
        await self._failpoint("sink.before-commit", context)
        r = await self._call("Commit", context, lambda db: db.commit(request.transaction_id, epoch=request.epoch))
        await self._failpoint("sink.after-commit-before-reply", context)
        return sink_pb2.CommitResponse(already_committed=r.already_committed, applied=r.applied)

    async def Abort(self, request, context):
        await self._failpoint("sink.before-abort", context)
        already = await self._call("Abort", context, lambda db: db.abort(request.transaction_id))
        return sink_pb2.AbortResponse(already_aborted=already)

    async def ListPrepared(self, request, context):
        ids = await self._call("ListPrepared", context, lambda db: db.list_prepared())
        return sink_pb2.ListPreparedResponse(transaction_ids=ids)

    async def DeadLetter(self, request, context):
        entries = [(e.order_id, e.partition, e.offset, e.reason, e.value_bytes, e.account, e.amount_cents)
                   for e in request.entries]
        added, existing = await self._call("DeadLetter", context, lambda db: db.dead_letter(entries))
        return sink_pb2.DeadLetterResponse(added=added, existing=existing)

    async def Fence(self, request, context):
        rows, aborted = await self._call("Fence", context, lambda db: db.fence(
            list(request.partitions), request.epoch, request.member_id))
        return sink_pb2.FenceResponse(checkpoints=[
            sink_pb2.PartitionCheckpoint(partition=p, offset=o, state=json.loads(st), checkpoint_id=c,
                                         epoch=e, member_id=m) for p, o, st, c, e, m in rows],
            aborted=aborted)

    async def SaveCheckpoints(self, request, context):
        await self._call("SaveCheckpoints", context, lambda db: db.save_checkpoints(
            checkpoint_rows(request.checkpoints), request.epoch, request.member_id))
        return sink_pb2.SaveCheckpointsResponse()

    async def Snapshot(self, request, context):
        orders, balances, done = await self._call(
            "Snapshot", context, lambda db: db.snapshot_page(request.after_order_id, request.limit))
        return sink_pb2.SnapshotResponse(
            orders=[sink_pb2.OrderCount(order_id=o, account=a, amount_cents=m, applied_count=c)
                    for o, a, m, c in orders],
            balances=[sink_pb2.Balance(account=a, balance_cents=b) for a, b in balances],
            done=done)
