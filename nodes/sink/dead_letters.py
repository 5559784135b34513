"""The sink's dead-letter table: records the processor could not deliver (poison messages).

Kafka Connect's ``errors.tolerance=all`` with a dead-letter queue, Flink's side
output for bad records: a record refused as invalid is stored here with where
it came from and why, so the pipeline moves on and the audit reports it
(``dead-lettered``) instead of the processor retrying it forever. The table
lives in the sink's database (so it is as durable as the orders):

    dead_letters(partition, "offset", order_id, account, amount_cents, value_bytes,
                 reason, dead_lettered_ms)   PRIMARY KEY (partition, offset, order_id)

Keyed by its origin, so dead-lettering a replayed record again stores nothing
new (idempotent in every mode). Strings are cut to the documented limits
(nodes/common/limits.py): a 10 MB order id is stored as its first 256 bytes.
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

from nodes.common.limits import (MAX_ACCOUNT_BYTES, MAX_DEAD_LETTERS_PER_CALL, MAX_ORDER_ID_BYTES,
                                 MAX_REASON_BYTES)
from nodes.sink.errors import TooManyOrders

DeadLetter = tuple[str, int, int, str, int, str, int]
"""(order_id, partition, offset, reason, value_bytes, account, amount_cents)."""


def _cut(s: str, limit: int) -> str:
    b = s.encode("utf-8", "replace")
    return s if len(b) <= limit else b[:limit].decode("utf-8", "ignore")


def store(con: sqlite3.Connection, entries: Sequence[DeadLetter], now_ms: int) -> tuple[int, int]:
    """Insert ``entries`` inside the caller's open transaction; returns (added, existing).

    Raises:
        TooManyOrders: more than MAX_DEAD_LETTERS_PER_CALL entries (RESOURCE_EXHAUSTED).
    """
    if len(entries) > MAX_DEAD_LETTERS_PER_CALL:
        raise TooManyOrders(f"{len(entries)} dead letters in one call; at most "
                            f"{MAX_DEAD_LETTERS_PER_CALL} allowed")
    added = 0
    for order_id, partition, offset, reason, value_bytes, account, amount in entries:
        cur = con.execute(
            'INSERT INTO dead_letters(partition, "offset", order_id, account, amount_cents, value_bytes, '
            "reason, dead_lettered_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (int(partition), int(offset), _cut(order_id, MAX_ORDER_ID_BYTES),
             _cut(account, MAX_ACCOUNT_BYTES), int(amount), int(value_bytes),
             _cut(reason, MAX_REASON_BYTES), now_ms))
        added += cur.rowcount
    return added, len(entries) - added


def count(con: sqlite3.Connection) -> int:
    return con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
