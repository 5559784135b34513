"""The sink database's schema, limits and input validation (shared by the node and the offline reader)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

from nodes.common.limits import (MAX_ACCOUNT_BYTES, MAX_MEMBER_ID_BYTES, MAX_ORDER_ID_BYTES, MAX_TRANSACTION_ID_BYTES, short,
                                 too_long)
from nodes.sink.errors import InvalidInput, TooManyOrders

DB_FILE = "sink.db"
MAX_ORDERS_PER_CALL = 100_000
DEFAULT_SNAPSHOT_LIMIT = 10_000
MAX_SNAPSHOT_LIMIT = 100_000

OrderRow = tuple[str, str, int]
"""(order_id, account, amount_cents)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders(
    order_id TEXT PRIMARY KEY, account TEXT NOT NULL, amount_cents INTEGER NOT NULL,
    applied_count INTEGER NOT NULL, first_applied_ms INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS balances(
    account TEXT PRIMARY KEY, balance_cents INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transactions(
    transaction_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted')),
    prepared_at_ms INTEGER, finished_at_ms INTEGER, abort_reason TEXT,
    order_count INTEGER NOT NULL DEFAULT 0, commit_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS prepared(
    transaction_id TEXT NOT NULL, seq INTEGER NOT NULL, order_id TEXT NOT NULL,
    account TEXT NOT NULL, amount_cents INTEGER NOT NULL,
    PRIMARY KEY (transaction_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters(
    partition INTEGER NOT NULL, "offset" INTEGER NOT NULL, order_id TEXT NOT NULL,
    account TEXT NOT NULL, amount_cents INTEGER NOT NULL, value_bytes INTEGER NOT NULL,
    reason TEXT NOT NULL, dead_lettered_ms INTEGER NOT NULL,
    PRIMARY KEY (partition, "offset", order_id)) WITHOUT ROWID;
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the sink database in WAL mode with synchronous=FULL and the schema in place."""
    con = sqlite3.connect(str(path), isolation_level=None)
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(f"{path}: cannot switch to WAL journal mode (got {mode})")
    con.execute("PRAGMA synchronous=FULL")
    con.executescript(SCHEMA)
    return con


_SHORT = min(MAX_ORDER_ID_BYTES, MAX_ACCOUNT_BYTES) // 4
"""Ids and accounts of at most this many characters are within their byte limits."""


def check_orders(rows: Sequence[OrderRow]) -> None:
    """Validate a batch.

    Raises:
        TooManyOrders: more than MAX_ORDERS_PER_CALL rows (gRPC RESOURCE_EXHAUSTED).
        InvalidInput: an empty or too long order_id or account (gRPC INVALID_ARGUMENT).
    """
    if len(rows) > MAX_ORDERS_PER_CALL:
        raise TooManyOrders(f"{len(rows)} orders in one call; at most {MAX_ORDERS_PER_CALL} allowed")
    for i, (order_id, account, _amount) in enumerate(rows):
        if order_id and account and len(order_id) <= _SHORT and len(account) <= _SHORT:
            continue  # at most 4 UTF-8 bytes per character: valid without a call (issue 16)
        problem = order_problem(order_id, account)
        if problem:
            raise InvalidInput(f"order #{i} in the batch: {problem}")


def check_member(member: str) -> None:
    """Raises InvalidInput (gRPC INVALID_ARGUMENT): a member id longer than MAX_MEMBER_ID_BYTES
    (it is stored with every order a member applies: a 1 MiB id on a 20,000-order batch would
    be 20 GB)."""
    if too_long(member, MAX_MEMBER_ID_BYTES):
        raise InvalidInput(f"member_id longer than {MAX_MEMBER_ID_BYTES} bytes: {short(member)}")


def order_problem(order_id: str, account: str) -> str:
    """Why an order is invalid for the sink ("" if it is valid): the one rule the sink
    enforces and the processor checks before sending (to dead-letter it instead)."""
    if not order_id:
        return "empty order_id"
    if too_long(order_id, MAX_ORDER_ID_BYTES):
        return f"order_id {short(order_id)} longer than {MAX_ORDER_ID_BYTES} bytes"
    if not account:
        return f"order {order_id!r} has no account"
    if too_long(account, MAX_ACCOUNT_BYTES):
        return f"order {order_id!r}: account longer than {MAX_ACCOUNT_BYTES} bytes"
    return ""


def check_transaction_id(transaction_id: str) -> None:
    """Raises InvalidInput (gRPC INVALID_ARGUMENT) for an empty transaction id."""
    if not transaction_id:
        raise InvalidInput("transaction_id must not be empty")
    if too_long(transaction_id, MAX_TRANSACTION_ID_BYTES):
        raise InvalidInput(f"transaction_id longer than {MAX_TRANSACTION_ID_BYTES} bytes")


def read_dead_letters(db_path: Path) -> list[dict]:
    """Offline reader for the audit: every row of ``dead_letters`` ([] for a database
    made before the table existed), ordered by (partition, offset)."""
    con = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        try:
            cur = con.execute('SELECT partition, "offset", order_id, account, amount_cents, value_bytes, '
                              'reason, dead_lettered_ms FROM dead_letters ORDER BY partition, "offset"')
        except sqlite3.OperationalError:
            return []
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]
    finally:
        con.close()


def read_snapshot(db_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Offline reader for the audit: ``({order_id: applied_count}, {account: balance_cents})``.

    Usable while the sink is stopped (also after a kill -9: SQLite replays the
    WAL) or running (one read transaction, so a consistent view).

    Raises:
        FileNotFoundError: no database at ``db_path`` (never creates one).
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(f"no sink database at {db_path}")
    con = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
    try:
        con.execute("BEGIN")
        orders = dict(con.execute("SELECT order_id, applied_count FROM orders"))
        balances = dict(con.execute("SELECT account, balance_cents FROM balances"))
        con.execute("COMMIT")
    finally:
        con.close()
    return orders, balances
