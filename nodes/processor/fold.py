"""Folding fetched records into the processor: decode, check, operator state, positions.

:func:`process_batch` is the processor's per-record hot path (issue 16): one inlined loop
in which the common record (it decodes as an Order, its order id and account hold at most
``_SHORT`` (64) characters, so at most 256 UTF-8 bytes, and its amount keeps the account's
total within int64) is checked and folded without a call per step. Any other record takes the general
path (:func:`process_one`: nodes/processor/poison.py's rules, dead letters, StateOverflow)
before the loop changed anything for it, so both give the same result.
"""

from __future__ import annotations

from nodes.common.limits import INT64_MAX, INT64_MIN, MAX_ACCOUNT_BYTES, MAX_ORDER_ID_BYTES
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order
from nodes.processor.poison import decode
from nodes.processor.state import StateOverflow

_SHORT = min(MAX_ORDER_ID_BYTES, MAX_ACCOUNT_BYTES) // 4
"""Ids and accounts of at most this many characters are within their byte limits (a
character is at most 4 UTF-8 bytes)."""


def process_batch(p, fetched) -> list[Order]:
    """Fold each ``(partition, record)`` of ``fetched`` into processor ``p`` in turn
    (Processor.process); returns the valid orders, in order."""
    positions, totals = p.consumer.positions, p.state.totals
    origins, from_string = p.dead_letters.origins, Order.FromString
    out: list[Order] = []
    append = out.append
    for partition, record in fetched:
        offset, value = record.offset, record.value
        positions[partition] = offset + 1
        try:
            order = from_string(value)
        except Exception:  # noqa: BLE001 - the general path names the error
            order = None
        if order is not None:
            oid, account = order.order_id, order.account
            if oid and account and len(oid) <= _SHORT and len(account) <= _SHORT:
                total = totals.get(account, 0) + order.amount_cents
                if INT64_MIN <= total <= INT64_MAX:
                    totals[account] = total
                    origins[oid] = (partition, offset, len(value))
                    p.records += 1
                    append(order)
                    continue
        order = process_one(p, partition, record)
        if order is not None:
            append(order)
    p.dead_letters.rotate()
    return out


def process_one(p, partition: int, record: broker_pb2.Record) -> Order | None:
    """Processor.process, the general path (poison records, long ids, overflow)."""
    p.consumer.positions[partition] = record.offset + 1
    order, problem = decode(record)
    if not problem:
        try:
            p.state.apply(order)
        except StateOverflow as e:
            problem = str(e)
    if problem:
        p.bad_records += 1
        p.dead_letters.add_record(partition, record, order, problem)
        return None
    p.dead_letters.remember(order, partition, record)
    p.records += 1
    return order
