"""Writers to the sink (proto/nodes/pb/sink.proto): Apply, Upsert, and the 2PC calls.

- ``Apply``: non-idempotent increments (a retried write whose ACK was lost is a duplicate).
- ``Upsert``: idempotent, keyed by order id (a repeat is ``skipped`` by the sink).
- ``PreCommit`` / ``Commit`` / ``Abort`` / ``ListPrepared``: the client side of
  Flink's TwoPhaseCommitSinkFunction.

Counters (Status JSON): ``sink_writes`` write RPCs acknowledged; ``sink_errors``
write attempts that failed (error status or deadline); ``sink_retries`` attempts
re-sent after a failure; ``sink_dropped`` orders given up (no retry).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import grpc

from nodes.pb import sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order
from nodes.processor.retry import retry_rpc


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

    def _on_error(self, e: grpc.aio.AioRpcError) -> None:
        self.errors += 1
        self.retries += 1

    async def write(self, method: str, orders: Sequence[Order], *, retry: bool) -> bool:
        """``Apply`` or ``Upsert`` ``orders`` in one RPC.

        With ``retry``: until acknowledged (every error code is retried). Without:
        one attempt; a failure is logged, counted in ``sink_errors`` and the
        orders in ``sink_dropped``. Returns True if acknowledged.
        """
        rpc = getattr(self.stub, method)
        req = sink_pb2.WriteRequest(orders=list(orders))
        call = lambda: rpc(req, timeout=self.timeout_s)  # noqa: E731
        if retry:
            await retry_rpc(call, what=method, base_ms=self.backoff_ms, log=self.log,
                            on_error=self._on_error)
            self.writes += 1
            return True
        try:
            await call()
        except grpc.aio.AioRpcError as e:
            self.errors += 1
            self.dropped += len(orders)
            self.log.warning("%s failed, %d orders dropped (no retry)", method, len(orders),
                             extra={"code": e.code().name, "details": e.details()})
            return False
        self.writes += 1
        return True

    async def precommit(self, txn: str, orders: Sequence[Order]) -> None:
        """PreCommit(txn, orders), retried with the same transaction id until acknowledged."""
        req = sink_pb2.PreCommitRequest(transaction_id=txn, orders=list(orders))
        await retry_rpc(lambda: self.stub.PreCommit(req, timeout=self.timeout_s),
                        what=f"PreCommit {txn}", base_ms=self.backoff_ms, log=self.log,
                        on_error=self._on_error)
        self.writes += 1

    async def commit(self, txn: str) -> sink_pb2.CommitResponse:
        """Commit(txn), retried until acknowledged; ``already_committed`` is success.

        Raises:
            TransactionLostError: the sink answered NOT_FOUND or FAILED_PRECONDITION.
        """
        req = sink_pb2.TransactionRequest(transaction_id=txn)
        try:
            resp = await retry_rpc(lambda: self.stub.Commit(req, timeout=self.timeout_s),
                                   what=f"Commit {txn}", base_ms=self.backoff_ms, log=self.log,
                                   fatal=TXN_LOST_CODES, on_error=self._on_error)
        except grpc.aio.AioRpcError as e:
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
