"""Adding amounts to balances with an explicit int64 overflow check.

Money is int64 cents end to end. SQLite stores an INTEGER sum that leaves the
int64 range as a REAL (a rounded float: silently wrong, and later Snapshot
calls fail to encode it as int64), so every addition is checked *before* it is
written; a sum out of range refuses the whole call with InvalidInput
(INVALID_ARGUMENT), nothing applied. The processor then isolates the order
that overflows and dead-letters it (nodes/processor/poison.py).
"""

from __future__ import annotations

import sqlite3
from typing import Mapping

from nodes.common.limits import INT64_MAX, INT64_MIN
from nodes.sink.errors import InvalidInput

_ADD_BALANCE = ("INSERT INTO balances(account, balance_cents) VALUES (?, ?) "
                "ON CONFLICT(account) DO UPDATE SET balance_cents = balance_cents + excluded.balance_cents")


def add_balances(con: sqlite3.Connection, per_account: Mapping[str, int]) -> None:
    """Add ``{account: cents}`` to the balances inside the caller's open transaction.

    Raises:
        InvalidInput: a balance would leave the int64 range (nothing written by this
            function; the caller's transaction is rolled back by its context manager).
    """
    for account, delta in per_account.items():
        row = con.execute("SELECT balance_cents FROM balances WHERE account = ?", (account,)).fetchone()
        current = int(row[0]) if row else 0
        total = current + int(delta)
        if not INT64_MIN <= total <= INT64_MAX:
            raise InvalidInput(f"balance overflow: account {account!r} holds {current} cents; adding "
                               f"{delta} would leave the int64 range")
    con.executemany(_ADD_BALANCE, per_account.items())
