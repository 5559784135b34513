"""Writers to the sink (proto/nodes/pb/sink.proto): Apply, Upsert, and the 2PC calls.

- ``Apply``: non-idempotent increments (a retried write whose ACK was lost is a duplicate).
- ``Upsert``: idempotent, keyed by order id (a repeat is ``skipped`` by the sink).
- ``PreCommit`` / ``Commit`` / ``Abort`` / ``ListPrepared``: the client side of
  Flink's TwoPhaseCommitSinkFunction.

Counters (Status JSON): ``sink_writes`` write RPCs acknowledged; ``sink_errors``
write attempts that failed (error status or deadline); ``sink_retries`` attempts
re-sent after a transient failure; ``sink_dropped`` orders given up (no retry);
``sink_refused`` orders the sink refused with INVALID_ARGUMENT (dead-lettered).

Retries follow nodes/common/retry.py: transient codes only. An INVALID_ARGUMENT
answer to Apply / Upsert means the batch holds a poison order: the batch is
split in halves and each half re-sent until the refused order is alone; that
order goes to ``on_refused`` (the processor dead-letters it) and the rest is
written (nodes/processor/poison.py). Any other permanent code raises
PermanentRpcError: the processor stops with that message (exit 1).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

import grpc

from nodes.pb import sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order
from nodes.common.retry import PermanentRpcError, is_transient
from nodes.processor.membership import is_fencing
from nodes.processor.retry import retry_rpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT


class TransactionLostError(RuntimeError):
    """The sink no longer knows a pre-committed transaction (NOT_FOUND / FAILED_PRECONDITION,
    e.g. aborted by its prepared-transaction timeout): committing it is impossible, and
    advancing past it would lose its orders silently (scenario 5)."""


TXN_LOST_CODES = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)


class SinkClient:
    """Calls the sink with a deadline of ``timeout_ms`` each and counts outcomes."""

    def __init__(self, channel: grpc.aio.Channel, *, log: logging.Logger,
                 timeout_ms: int = 1000, backoff_ms: int = 50) -> None:
        self.stub = sink_pb2_grpc.SinkStub(channel)
        self.log = log
        self.timeout_s = timeout_ms / 1000.0
        self.backoff_ms = backoff_ms
        self.writes = 0
        self.errors = 0
        self.retries = 0
        self.dropped = 0
        self.refused = 0
        self.on_refused: Callable[[Order, str], None] | None = None
        """Called with each order the sink refused (INVALID_ARGUMENT) once isolated."""
        self.member = None
        """A nodes.processor.membership.GroupMember: writes name the member and its epoch
        (generation); a FENCED refusal raises Fenced (nodes/sink/partitions.py)."""

    def _on_error(self, e: grpc.aio.AioRpcError) -> None:
        self.errors += 1
        if is_transient(e.code()):
            self.retries += 1

    async def write(self, method: str, orders: Sequence[Order], *, retry: bool) -> bool:
        """``Apply`` or ``Upsert`` ``orders`` in one RPC.

        With ``retry``: until acknowledged (transient errors retried). Without:
        one attempt; a failure is logged, counted in ``sink_errors`` and the
        orders in ``sink_dropped``. INVALID_ARGUMENT isolates the refused order(s)
        (module doc). Returns True if every order was acknowledged or dead-lettered.

        Raises:
            PermanentRpcError: another permanent code (or INVALID_ARGUMENT with no
                ``on_refused`` handler).
        """
        try:
            return await self._write_once(method, orders, retry)
        except grpc.aio.AioRpcError as e:  # INVALID_ARGUMENT only
            if len(orders) == 1:
                if self.on_refused is None:
                    raise PermanentRpcError(method, e.code(), e.details() or "") from None
                self.refused += 1
                self.on_refused(orders[0], e.details() or "refused")
                return True
            mid = len(orders) // 2
            first = await self.write(method, orders[:mid], retry=retry)
            second = await self.write(method, orders[mid:], retry=retry)
            return first and second

    async def _write_once(self, method: str, orders: Sequence[Order], retry: bool) -> bool:
        rpc = getattr(self.stub, method)
        m = self.member
        req = sink_pb2.WriteRequest(orders=list(orders), member_id=m.generation_member if m else "",
                                    epoch=m.generation if m else 0)
        call = lambda: rpc(req, timeout=self.timeout_s)  # noqa: E731
        if retry:
            await retry_rpc(call, what=method, base_ms=self.backoff_ms, log=self.log,
                            fatal=(INVALID,), on_error=self._on_error)
            self.writes += 1
            return True
        try:
            await call()
        except grpc.aio.AioRpcError as e:
            self.errors += 1
            if e.code() == INVALID:
                raise
            self.dropped += len(orders)
            self.log.warning("%s failed, %d orders dropped (no retry)", method, len(orders),
                             extra={"code": e.code().name, "details": e.details()})
            return False
        self.writes += 1
        return True

    async def dead_letter(self, entries: Sequence[sink_pb2.DeadLetterEntry]) -> None:
        """DeadLetter(entries), retried on transient errors (idempotent by origin)."""
        req = sink_pb2.DeadLetterRequest(entries=list(entries))
        await retry_rpc(lambda: self.stub.DeadLetter(req, timeout=self.timeout_s),
                        what="DeadLetter", base_ms=self.backoff_ms, log=self.log,
                        on_error=self._on_error)

    async def precommit(self, txn: str, orders: Sequence[Order],
                        checkpoints: Sequence[sink_pb2.PartitionCheckpoint] = ()) -> None:
        """PreCommit(txn, orders), retried with the same transaction id until acknowledged.
        A group member's carries its epoch and its partitions' ``checkpoints``.

        Raises:
            Fenced: a group member's pre-commit refused as FENCED (a newer owner).
        """
        m = self.member
        req = sink_pb2.PreCommitRequest(transaction_id=txn, orders=list(orders),
                                        epoch=m.generation if m else 0, member_id=m.generation_member if m else "",
                                        checkpoints=list(checkpoints))
        await self._fenceable(lambda: self.stub.PreCommit(req, timeout=self.timeout_s), f"PreCommit {txn}")
        self.writes += 1

    async def _fenceable(self, call, what: str):
        """retry_rpc(call); for a group member a FENCED answer raises Fenced."""
        m = self.member
        try:
            return await retry_rpc(call, what=what, base_ms=self.backoff_ms, log=self.log,
                                   on_error=self._on_error,
                                   fatal=(grpc.StatusCode.FAILED_PRECONDITION,) if m else ())
        except grpc.aio.AioRpcError as e:
            if m is not None and is_fencing(e):
                raise m.fenced_by(what, e) from None
            raise PermanentRpcError(what, e.code(), e.details() or "") from None

    async def fence(self, partitions: Sequence[int]) -> sink_pb2.FenceResponse:
        """Fence(partitions) for the member's generation, retried; returns their checkpoints.
        Raises: Fenced (a newer owner already claimed one)."""
        m = self.member
        req = sink_pb2.FenceRequest(partitions=list(partitions), epoch=m.generation, member_id=m.generation_member)
        return await self._fenceable(lambda: self.stub.Fence(req, timeout=self.timeout_s), "Fence")

    async def save_checkpoints(self, checkpoints: Sequence[sink_pb2.PartitionCheckpoint]) -> None:
        """SaveCheckpoints for the member's generation, retried. Raises: Fenced."""
        m = self.member
        req = sink_pb2.SaveCheckpointsRequest(epoch=m.generation, member_id=m.generation_member,
                                              checkpoints=list(checkpoints))
        await self._fenceable(lambda: self.stub.SaveCheckpoints(req, timeout=self.timeout_s),
                              "SaveCheckpoints")

    async def commit(self, txn: str) -> sink_pb2.CommitResponse:
        """Commit(txn), retried until acknowledged; ``already_committed`` is success.

        Raises:
            TransactionLostError: the sink answered NOT_FOUND or FAILED_PRECONDITION.
        """
        m = self.member
        req = sink_pb2.TransactionRequest(transaction_id=txn, epoch=m.generation if m else 0)
        try:
            resp = await retry_rpc(lambda: self.stub.Commit(req, timeout=self.timeout_s),
                                   what=f"Commit {txn}", base_ms=self.backoff_ms, log=self.log,
                                   fatal=TXN_LOST_CODES, on_error=self._on_error)
        except grpc.aio.AioRpcError as e:
            if m is not None and is_fencing(e):
                raise m.fenced_by(f"Commit {txn}", e) from None
            raise TransactionLostError(f"sink cannot commit transaction {txn}: "
                                       f"{e.code().name} {e.details()}") from None
        self.writes += 1
        return resp

    async def abort(self, txn: str) -> None:
        """Abort(txn), retried until acknowledged.

        NOT_FOUND (unknown) counts as aborted; FAILED_PRECONDITION (the sink says it is
        committed) is logged as a warning and not retried: there is nothing left to undo.
        """
        req = sink_pb2.TransactionRequest(transaction_id=txn)
        try:
            await retry_rpc(lambda: self.stub.Abort(req, timeout=self.timeout_s),
                            what=f"Abort {txn}", base_ms=self.backoff_ms, log=self.log,
                            fatal=TXN_LOST_CODES)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                self.log.warning("Abort %s refused: %s", txn, e.details())

    async def list_prepared(self) -> list[str]:
        """ListPrepared, retried until it answers."""
        resp = await retry_rpc(lambda: self.stub.ListPrepared(sink_pb2.ListPreparedRequest(),
                                                               timeout=self.timeout_s),
                               what="ListPrepared", base_ms=self.backoff_ms, log=self.log)
        return list(resp.transaction_ids)


class WritePipeline:
    """Up to ``inflight`` concurrent write RPCs (each retried until ACKed unless ``retry`` is off).

    ``submit`` waits for a free slot; ``drain`` waits until every submitted
    write is acknowledged: the idempotent strategy drains before a checkpoint
    completes (scenario 4). A write task failing with a non-gRPC error is
    re-raised by the next ``submit`` or ``drain``.
    """

    def __init__(self, sink: SinkClient, method: str, *, inflight: int = 4, retry: bool = True) -> None:
        self.sink, self.method, self.retry = sink, method, retry
        self._slots = asyncio.Semaphore(max(1, inflight))
        self._tasks: set[asyncio.Task] = set()
        self._failed: BaseException | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def submit(self, orders: Sequence[Order]) -> None:
        self._raise_failure()
        await self._slots.acquire()
        task = asyncio.ensure_future(self._write(list(orders)))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _write(self, orders: list[Order]) -> None:
        try:
            await self.sink.write(self.method, orders, retry=self.retry)
        finally:
            self._slots.release()

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failed is None:
            self._failed = task.exception()

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    async def drain(self) -> None:
        """Wait until no write is in flight."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        self._raise_failure()

    def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()
