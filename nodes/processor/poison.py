"""Poison messages: records the processor cannot deliver because they are invalid.

Kafka Connect's ``errors.tolerance=all`` with a dead-letter queue, Flink's side
output for bad records. A record is *poison* when

- its value does not decode as a ``testbed.v1.Order`` (e.g. garbage produced
  straight to the broker);
- the order violates the sink's rule (:func:`nodes.sink.schema.order_problem`:
  empty or longer than 256 bytes order id or account; an empty value decodes
  as an order with an empty id);
- adding its amount would take the account's operator state out of the int64
  range (:class:`nodes.processor.state.StateOverflow`);
- the sink refuses it with INVALID_ARGUMENT (e.g. its balance would overflow at
  the sink): the refused write batch is split in halves until the single
  refused order is isolated; the other orders are written (an INVALID_ARGUMENT
  is definite: the refused call applied nothing, so re-sending the halves
  cannot duplicate).

A poison record is not folded into the operator state and not written; it is
sent to the sink's dead-letter table (``Sink.DeadLetter``, keyed by partition
and offset, so a replay re-sends it harmlessly), and the offset moves on.
Dead letters are flushed before the offsets that cover them are committed or
checkpointed, so a crash never skips one. The sink keeps them (decision: the
sink is the durable store every mode already audits; a processor-local file
would be lost with its data dir). A dead-letter call is retried on transient
errors like every write; a permanent error stops the processor (exit 1).

Transactional sink: PreCommit is checked with the same rule before it is sent
(ids), and in exactly-once the operator state equals the sink's balances, so the
state check catches an overflow first; should the sink still refuse a Commit
with INVALID_ARGUMENT (someone else wrote to its balances), the transaction
cannot be split after the fact: the processor stops with that error (exit 1)
rather than skip or retry it.

Status JSON: ``dead_lettered`` (records the sink stored or already held as dead
letters, this incarnation), ``dead_letter_pending``.
"""

from __future__ import annotations

import logging

from nodes.pb import broker_pb2, sink_pb2
from nodes.pb.events_pb2 import Order
from nodes.sink.schema import order_problem

MAX_ORIGINS = 100_000
"""Order ids whose (partition, offset) the processor remembers for a sink-side refusal, at
most; at least the ``MAX_ORIGINS // 2`` most recent are kept (two generations of dicts:
one dict store per order instead of an OrderedDict's move_to_end, issue 16); older ones are
forgotten (their dead letter then has partition and offset -1)."""


def decode(record: broker_pb2.Record) -> tuple[Order | None, str]:
    """(order, "") for a valid record, (order or None, reason) for a poison one."""
    try:
        order = Order.FromString(record.value)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        return None, f"undecodable value ({len(record.value)} bytes): {type(e).__name__}"
    problem = order_problem(order.order_id, order.account)
    return (order, problem) if problem else (order, "")


class DeadLetters:
    """Pending dead letters of the processor and where recent orders came from."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.pending: list[sink_pb2.DeadLetterEntry] = []
        self.sent = 0
        self.origins: dict[str, tuple[int, int, int]] = {}
        """The current generation: order id -> (partition, offset, value bytes); callers on
        the hot path store into it directly, then call :meth:`rotate`."""
        self._older: dict[str, tuple[int, int, int]] = {}

    def remember(self, order: Order, partition: int, record: broker_pb2.Record) -> None:
        self.origins[order.order_id] = (partition, record.offset, len(record.value))
        self.rotate()

    def rotate(self) -> None:
        """Start a new generation once the current one holds MAX_ORIGINS // 2 ids."""
        if len(self.origins) >= MAX_ORIGINS // 2:
            self._older, self.origins = self.origins, {}

    def origin(self, order_id: str) -> tuple[int, int, int] | None:
        """(partition, offset, value bytes) of a remembered order id, else None."""
        got = self.origins.get(order_id)
        return got if got is not None else self._older.get(order_id)

    def add_record(self, partition: int, record: broker_pb2.Record, order: Order | None,
                   reason: str) -> None:
        """Queue a poison record read at (partition, record.offset)."""
        self.pending.append(sink_pb2.DeadLetterEntry(
            order_id=order.order_id[:256] if order else "", partition=partition, offset=record.offset,
            reason=reason[:1024], value_bytes=len(record.value),
            account=order.account[:256] if order else "", amount_cents=order.amount_cents if order else 0))
        self.log.warning("poison record dead-lettered", extra={
            "partition": partition, "offset": record.offset,
            "order_id": (order.order_id[:64] if order else None), "reason": reason[:200]})

    def add_refused(self, order: Order, reason: str) -> None:
        """Queue an order the sink refused with INVALID_ARGUMENT."""
        partition, offset, size = self.origin(order.order_id) or (-1, -1, order.ByteSize())
        self.pending.append(sink_pb2.DeadLetterEntry(
            order_id=order.order_id, partition=partition, offset=offset, reason=reason[:1024],
            value_bytes=size, account=order.account, amount_cents=order.amount_cents))
        self.log.warning("order refused by the sink, dead-lettered", extra={
            "partition": partition, "offset": offset, "order_id": order.order_id, "reason": reason[:200]})

    def take(self) -> list[sink_pb2.DeadLetterEntry]:
        out, self.pending = self.pending, []
        return out
