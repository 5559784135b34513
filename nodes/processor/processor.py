"""The processor as a plain class: configuration, shared pipeline pieces, Status.

A :class:`Processor` owns the consumer (broker side), the sink client, the
operator state and the checkpoint store; the per-mode logic lives in a
*strategy* (``delivery.py``: at-most-once, at-least-once; ``exactly_once.py``:
checkpoints with the idempotent or transactional sink) that drives them.
Tests build a Processor on two channels and await :meth:`run` in a task; the
node process (``__main__``) does the same inside the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc

from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SINK_IDEMPOTENT
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order
from nodes.processor.checkpoint import Checkpoint, CheckpointStore, bump_incarnation
from nodes.processor.consumer import Consumer
from nodes.processor.sinks import SinkClient
from nodes.processor import fold
from nodes.processor.poison import DeadLetters
from nodes.processor.state import OperatorState

TWOPC_SAFE = "safe"
TWOPC_COMMIT_BEFORE_CHECKPOINT = "commit-before-checkpoint"
TWOPC_CHECKPOINT_BEFORE_PRECOMMIT = "checkpoint-before-precommit"
TWOPC_ORDERS = (TWOPC_SAFE, TWOPC_COMMIT_BEFORE_CHECKPOINT, TWOPC_CHECKPOINT_BEFORE_PRECOMMIT)


@dataclass
class ProcessorConfig:
    """Every knob of the processor (one per CLI flag; times in ms)."""

    mode: str = AT_LEAST_ONCE
    group: str = "processor"
    sink_strategy: str = SINK_IDEMPOTENT
    checkpoint_records: int = 1000
    checkpoint_ms: int = 500
    sink_inflight: int = 4
    sink_batch: int = 500
    sink_timeout_ms: int = 1000
    rpc_timeout_ms: int = 2000
    retry_backoff_ms: int = 50
    fetch_max_records: int = 500
    fetch_max_wait_ms: int = 500
    fetch_group: int = 0
    """at-most-once / at-least-once: records per processing step, one partition at a
    time (nodes/processor/grouping.py); 0 = whatever one Fetch returns."""
    # Ablations (each off by default).
    commit_before_sink: bool = False
    no_sink_retry: bool = False
    no_checkpoint: bool = False
    twopc_order: str = TWOPC_SAFE
    no_drain_before_checkpoint: bool = False
    member: str = ""
    """Consumer-group member (client id, e.g. ``processor-2``): join the group, process only
    the assigned partitions (nodes/processor/group_loop.py); "" = the standalone consumer of
    every partition (the single-processor pipeline)."""
    session_timeout_ms: int = 2000

    def validate(self) -> None:
        """Raises: ValueError: a count or time is out of range."""
        for name in ("checkpoint_records", "checkpoint_ms", "sink_inflight", "sink_batch",
                     "sink_timeout_ms", "rpc_timeout_ms", "fetch_max_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.fetch_max_wait_ms < 0 or self.retry_backoff_ms < 0:
            raise ValueError("--fetch-max-wait-ms and --retry-backoff-ms must be >= 0")
        if self.sink_batch > 100_000:
            raise ValueError("--sink-batch must be <= 100000 (the sink's limit per call)")
        if self.fetch_max_records > 10_000 or self.fetch_max_wait_ms > 5_000:
            raise ValueError("--fetch-max-records must be <= 10000 and --fetch-max-wait-ms <= 5000")
        if self.member and self.mode == EXACTLY_ONCE and (self.no_checkpoint or self.twopc_order != TWOPC_SAFE):
            raise ValueError("--member (a consumer group) does not support --no-checkpoint or --twopc-order")
        if self.twopc_order not in TWOPC_ORDERS:
            raise ValueError(f"--twopc-order must be one of {TWOPC_ORDERS}")


class Processor:
    """Consumes topic ``orders``, keeps per-account totals, writes each order to the sink.

    Args:
        config: the knobs.
        data_dir: holds ``checkpoint.json`` and ``incarnation.json``.
        broker: grpc.aio channel to the broker (or its proxy).
        sink: grpc.aio channel to the sink (or its proxy).
    """

    def __init__(self, config: ProcessorConfig, data_dir: Path, broker: grpc.aio.Channel,
                 sink: grpc.aio.Channel, log: logging.Logger) -> None:
        config.validate()
        self.config, self.data_dir, self.log = config, Path(data_dir), log
        self.consumer = Consumer(broker, group=config.group, log=log,
                                 rpc_timeout_ms=config.rpc_timeout_ms, backoff_ms=config.retry_backoff_ms,
                                 max_records=config.fetch_max_records, max_wait_ms=config.fetch_max_wait_ms)
        self.sink = SinkClient(sink, log=log, timeout_ms=config.sink_timeout_ms,
                               backoff_ms=config.retry_backoff_ms)
        self.state = OperatorState()
        self.dead_letters = DeadLetters(log)
        self.sink.on_refused = self._refused
        self.store = CheckpointStore(self.data_dir)
        self.incarnation = 0
        self.restored: Checkpoint | None = None
        self.restore_behind: dict[int, tuple[int, int]] = {}  # restore_check.check_restored
        self.durable_positions: dict[int, int] = {}
        self.records = 0
        self.bad_records = 0
        self.checkpoints = 0
        self.last_checkpoint_id: int | None = None
        self.pending_transaction: str | None = None
        self.phase = "created"
        self._changed = asyncio.Event()
        self.strategy = None
        self.member = None
        if config.member:
            from nodes.processor.membership import GroupMember
            self.member = GroupMember(self.consumer.stub, group=config.group, client_id=config.member,
                                      log=log, session_timeout_ms=config.session_timeout_ms,
                                      rpc_timeout_ms=config.rpc_timeout_ms, backoff_ms=config.retry_backoff_ms)
            self.consumer.member = self.member
            self.sink.member = self.member

    @property
    def positions(self) -> dict[int, int]:
        return self.consumer.positions

    def recover_local(self) -> None:
        """Bump the incarnation and load the checkpoint (exactly-once only).

        Raises:
            CheckpointCorruptError: checkpoint.json is unreadable (the node exits 2).
        """
        self.incarnation = bump_incarnation(self.data_dir)
        if self.config.mode == EXACTLY_ONCE and not self.config.no_checkpoint:
            self.restored = self.store.load()
            if self.restored is not None:
                ck = self.restored
                self.state.restore(ck.state)
                self.last_checkpoint_id = ck.checkpoint_id
                self.pending_transaction = ck.pending_transaction
                self.log.info("checkpoint restored", extra={
                    "checkpoint_id": ck.checkpoint_id, "offsets": ck.offsets,
                    "pending_transaction": ck.pending_transaction})
        self.phase = "recovered"

    def make_strategy(self):
        from nodes.processor.delivery import AtLeastOnce, AtMostOnce
        from nodes.processor.exactly_once import make_exactly_once
        mode = self.config.mode
        if mode == AT_MOST_ONCE:
            return AtMostOnce(self)
        if mode == AT_LEAST_ONCE:
            return AtLeastOnce(self)
        if mode == EXACTLY_ONCE:
            return make_exactly_once(self)
        raise ValueError(f"unknown mode {mode!r}")

    async def run(self) -> None:
        """Remote recovery (strategy.start) then the processing loop; runs until cancelled.

        Raises:
            TransactionLostError: a pending transaction can no longer be committed.
        """
        if self.phase == "created":
            self.recover_local()
        if self.member is not None:
            from nodes.processor.group_loop import run_in_group
            await run_in_group(self)
            return
        self.strategy = self.make_strategy()
        self.phase = "starting"
        try:
            await self.strategy.start()
            self.phase = "running"
            self.notify()
            while True:
                await self.strategy.step()
                self.notify()
        except asyncio.CancelledError:
            self.phase = "stopped"
            raise
        except BaseException:
            self.phase = "failed"
            self.notify()
            raise
        finally:
            close = getattr(self.strategy, "close", None)
            if close is not None:
                close()

    async def init_positions(self) -> None:
        """Learn the partition count; position = committed offset (absent -> 0), retried."""
        n = await self.consumer.partition_count()
        offsets = await self.consumer.committed_offsets(n)
        self.consumer.positions.update(offsets)
        self.durable_positions = dict(offsets)
        self.log.info("positions from committed offsets", extra={"offsets": offsets})

    def process(self, partition: int, record: broker_pb2.Record) -> Order | None:
        """Advance the partition's position past ``record`` and fold it into the state.

        Returns the decoded order, or None for a poison record (undecodable, invalid
        for the sink, or overflowing the operator state), which is queued as a dead
        letter (nodes/processor/poison.py) and counted.
        """
        got = self.process_batch(((partition, record),))
        return got[0] if got else None

    def process_batch(self, fetched) -> list[Order]:
        """:meth:`process` of each ``(partition, record)`` in turn; returns the valid orders
        (nodes/processor/fold.py: one inlined loop)."""
        return fold.process_batch(self, fetched)

    def _refused(self, order: Order, reason: str) -> None:
        """The sink refused ``order`` (INVALID_ARGUMENT): dead-letter it, take it out of the state."""
        self.state.revert(order)
        self.dead_letters.add_refused(order, reason)

    async def flush_dead_letters(self) -> None:
        """Send the pending dead letters to the sink (before their offsets are committed
        or checkpointed). Raises: PermanentRpcError (the processor stops)."""
        entries = self.dead_letters.take()
        if entries:
            await self.sink.dead_letter(entries)
            self.dead_letters.sent += len(entries)

    def notify(self) -> None:
        """Wake every :meth:`wait_until` (called after each step and checkpoint)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, pred: Callable[["Processor"], bool], timeout_s: float) -> None:
        """Wait until ``pred(self)`` holds: re-checked at each progress notification and every 20 ms.

        Raises:
            asyncio.TimeoutError: not within ``timeout_s``.
            RuntimeError: the processor failed (phase "failed") before that.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not pred(self):
            if self.phase == "failed":
                raise RuntimeError("processor failed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"condition not reached within {timeout_s} s")
            try:  # woken by progress, or re-check every 20 ms (pred may read other objects)
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.02))
            except asyncio.TimeoutError:
                pass

    def status(self) -> dict:
        """The Status JSON (see nodes/processor/__main__.py for the field list)."""
        strat = self.strategy
        return {
            "phase": self.phase,
            "mode": self.config.mode,
            "sink_strategy": self.config.sink_strategy if self.config.mode == EXACTLY_ONCE else None,
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "durable_positions": {str(p): o for p, o in sorted(self.durable_positions.items())},
            "high_watermarks": {str(p): o for p, o in sorted(self.consumer.high_watermarks.items())},
            "state": self.state.snapshot(),
            "records": self.records,
            "bad_records": self.bad_records,
            "dead_lettered": self.dead_letters.sent,
            "dead_letter_pending": len(self.dead_letters.pending),
            "sink_refused": self.sink.refused,
            "checkpoints": self.checkpoints,
            "last_checkpoint_id": self.last_checkpoint_id,
            "pending_transaction": self.pending_transaction,
            "sink_writes": self.sink.writes,
            "sink_retries": self.sink.retries,
            "sink_errors": self.sink.errors,
            "sink_dropped": self.sink.dropped,
            "sink_in_flight": getattr(getattr(strat, "pipeline", None), "in_flight", 0),
            "fetch_errors": self.consumer.fetch_errors,
            "commits_kept": self.consumer.commits_kept,
            "incarnation": self.incarnation,
            "restore_behind": {str(q): list(v) for q, v in self.restore_behind.items()},
            "group": self.member.status() if self.member is not None else None,
            "time": time.time(),
            **({"log_client": self.consumer.stub.status()}   # a real broker's client (MQTT)
               if callable(getattr(self.consumer.stub, "status", None)) else {}),
        }
