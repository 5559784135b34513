"""The sink's database: orders and account balances in SQLite, plus a two-phase-commit table.

:class:`SinkDB` is the whole logic of the sink node; the gRPC servicer
(:mod:`nodes.sink.service`) is a thin shell over it. File ``<data-dir>/sink.db``,
``journal_mode=WAL``, ``synchronous=FULL``: a write is fsynced to the WAL before
the call returns, so an acknowledged write survives kill -9 and power loss.

Tables::

    orders(order_id PK, account, amount_cents, applied_count)  applied_count = times applied
    balances(account PK, balance_cents)
    transactions(transaction_id PK, state 'prepared'|'committed'|'aborted',
                 prepared_at_ms, finished_at_ms, abort_reason 'abort'|'timeout'|NULL,
                 order_count, commit_count)                     times: unix ms
    prepared(transaction_id, seq, order_id, account, amount_cents)  the pre-committed writes

Write semantics (one SQLite transaction per call, all or nothing):

* ``apply`` (at-least-once, NON-idempotent): each order is inserted with
  applied_count 1 or gets applied_count += 1; its amount is added to its
  account's balance every time. A retried batch is applied twice.
* ``upsert`` (exactly-once, idempotent sink): an order already present is
  skipped and changes nothing.
* two-phase commit (Flink's TwoPhaseCommitSinkFunction, the sink side):
  ``pre_commit`` stores the writes durably as prepared; ``commit`` applies them
  with ``apply`` semantics and marks the transaction committed; a repeated
  ``commit`` is a no-op answering already_committed (idempotent by transaction
  id, remembered in the database, so across restarts); ``abort`` drops them.
  A ``pre_commit`` repeated while prepared *replaces* the prepared writes (and
  restarts the timeout clock); one repeated after commit is refused
  (:class:`AlreadyCommitted`, gRPC ALREADY_EXISTS); one after an abort
  re-opens the transaction as prepared.
* ``prepared_timeout_ms`` > 0: a transaction prepared longer ago than this is
  aborted by the sink with reason "timeout" (like Kafka's transaction.timeout.ms);
  a later commit fails with :class:`TransactionAborted` "aborted by timeout".
* ``txn_dedupe=False`` (ablation ``--no-txn-dedupe``): commit ignores that the
  transaction is already committed and keeps the prepared writes after a
  commit, so a repeated commit of the same id applies them again.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from nodes.common.limits import MAX_ORDER_ID_BYTES, too_long
from nodes.sink import bulk, dead_letters, partitions
from nodes.sink.errors import (AlreadyCommitted, InvalidInput, TransactionAborted, TransactionCommitted,
                               TransactionNotFound)
from nodes.sink.schema import (DB_FILE, DEFAULT_SNAPSHOT_LIMIT, MAX_ORDERS_PER_CALL, MAX_SNAPSHOT_LIMIT,
                               OrderRow, check_member, check_orders, check_transaction_id, connect,
                               read_snapshot)

__all__ = ["DB_FILE", "MAX_ORDERS_PER_CALL", "CommitResult", "SinkCounters", "SinkDB", "read_snapshot"]

@dataclasses.dataclass(frozen=True)
class SinkCounters:
    """What Status reports; replaced as a whole after each SQLite commit (safe to read from any thread)."""

    orders: int = 0                  # distinct order ids present
    applied_total: int = 0           # sum of applied_count
    duplicated_orders: int = 0       # orders with applied_count > 1
    committed_transactions: int = 0  # transactions in state committed
    aborted_transactions: int = 0    # transactions in state aborted
    aborted_by_timeout: int = 0      # of which aborted by --prepared-timeout-ms
    reapplied_commits: int = 0       # commits that applied an already committed id (--no-txn-dedupe)
    prepared: tuple[str, ...] = ()   # ids in state prepared, oldest first
    dead_letters: int = 0            # rows of the dead_letters table


@dataclasses.dataclass(frozen=True)
class CommitResult:
    already_committed: bool  # True: a repeated commit, nothing applied
    applied: int             # orders applied by this call


def _now_ms() -> int:
    return int(time.time() * 1000)


class SinkDB:
    """The sink's state machine over one SQLite connection.

    Not thread-safe: use it from one thread only (the node runs every call on
    one dedicated worker thread). :attr:`counters` may be read from any thread.

    Args:
        path: the database file (created if missing).
        txn_dedupe: False is the ``--no-txn-dedupe`` ablation (see module doc).
        prepared_timeout_ms: abort transactions prepared longer ago than this (ms); 0 = never.
        clock_ms: wall clock in unix ms (tests inject a fake one); wall time, not
            monotonic, because prepared_at_ms must mean the same after a restart.
    """

    def __init__(self, path: Path, *, txn_dedupe: bool = True, prepared_timeout_ms: int = 0,
                 clock_ms: Callable[[], int] = _now_ms, log: logging.Logger | None = None,
                 epoch_fencing: bool = True) -> None:
        self.path = Path(path)
        self.txn_dedupe = txn_dedupe
        self.prepared_timeout_ms = prepared_timeout_ms
        self._clock_ms = clock_ms
        self._log = log or logging.getLogger("sink")
        self._con = connect(self.path)
        self._con.executescript(partitions.SCHEMA)
        self.epoch_fencing = epoch_fencing
        """False = the ``generation-fencing`` ablation (nodes/sink/partitions.py)."""
        self.fenced_refusals = 0
        self.counters = SinkCounters()
        self._reapplied = 0
        self._load_counters()

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        """One SQLite write transaction: committed (and fsynced) on exit, rolled back on error."""
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def _load_counters(self) -> None:
        orders, applied, dup = self._con.execute(
            "SELECT count(*), coalesce(sum(applied_count), 0), "
            "coalesce(sum(applied_count > 1), 0) FROM orders").fetchone()
        self.counters = SinkCounters(orders=orders, applied_total=applied, duplicated_orders=dup,
                                     dead_letters=dead_letters.count(self._con))
        self._refresh_transactions()

    def _refresh_transactions(self) -> None:
        by_state = dict(self._con.execute(
            "SELECT state, count(*) FROM transactions GROUP BY state").fetchall())
        timeouts = self._con.execute(
            "SELECT count(*) FROM transactions WHERE state = 'aborted' AND abort_reason = 'timeout'"
        ).fetchone()[0]
        prepared = tuple(r[0] for r in self._con.execute(
            "SELECT transaction_id FROM transactions WHERE state = 'prepared' "
            "ORDER BY prepared_at_ms, transaction_id"))
        self.counters = dataclasses.replace(
            self.counters, committed_transactions=by_state.get("committed", 0),
            aborted_transactions=by_state.get("aborted", 0), aborted_by_timeout=timeouts,
            reapplied_commits=self._reapplied, prepared=prepared)

    def _apply_rows(self, con: sqlite3.Connection, rows: Sequence[OrderRow]) -> tuple[int, int]:
        """Apply semantics inside an open transaction; returns (new orders, newly duplicated orders)
        (nodes/sink/bulk.py)."""
        return bulk.apply_rows(con, rows)

    def _count_applied(self, new: int, applied: int, newly_dup: int) -> None:
        c = self.counters
        self.counters = dataclasses.replace(
            c, orders=c.orders + new, applied_total=c.applied_total + applied,
            duplicated_orders=c.duplicated_orders + newly_dup)

    # -- the RPCs ------------------------------------------------------------------------

    def apply(self, rows: Sequence[OrderRow], *, member: str = "", epoch: int = 0) -> int:
        """Apply a batch (NON-idempotent); returns the number of orders applied (= len(rows)).
        ``member``: a consumer-group member, recorded per order (order_applications).

        Raises: InvalidInput, TooManyOrders (nothing applied).
        """
        check_orders(rows)
        check_member(member)
        with self._txn() as con:
            new, newly_dup = self._apply_rows(con, rows)
            partitions.record_applications(con, (r[0] for r in rows), member, epoch, self._clock_ms())
        self._count_applied(new, len(rows), newly_dup)
        return len(rows)

    def upsert(self, rows: Sequence[OrderRow], *, member: str = "", epoch: int = 0) -> tuple[int, int]:
        """Insert the orders not yet present (idempotent by order id); returns (applied, skipped).

        Raises: InvalidInput, TooManyOrders (nothing applied).
        """
        check_orders(rows)
        check_member(member)
        with self._txn() as con:
            done = bulk.upsert_rows(con, rows)
            partitions.record_applications(con, done, member, epoch, self._clock_ms())
        applied = len(done)
        self._count_applied(applied, applied, 0)
        return applied, len(rows) - applied

    def pre_commit(self, transaction_id: str, rows: Sequence[OrderRow], *, epoch: int = 0, member: str = "",
                   checkpoints: Sequence[partitions.Checkpoint] = ()) -> None:
        """Store ``rows`` durably as the prepared writes of ``transaction_id`` (Flink's preCommit).
        A consumer-group member also stages its partitions' ``checkpoints`` (installed at commit)
        under its ``epoch`` (nodes/sink/partitions.py).

        Raises:
            Fenced: a partition of ``checkpoints`` has a newer owner epoch (FAILED_PRECONDITION).
            InvalidInput, TooManyOrders: bad id or batch.
            AlreadyCommitted: the id is already committed (gRPC ALREADY_EXISTS; not
                with ``txn_dedupe=False``, which forgets commits and re-prepares).
        """
        check_transaction_id(transaction_id)
        check_orders(rows)
        check_member(member)
        with self._fenced_logged(member, epoch), self._txn() as con:
            row = con.execute("SELECT state FROM transactions WHERE transaction_id = ?",
                              (transaction_id,)).fetchone()
            if row and row[0] == "committed" and self.txn_dedupe:
                raise AlreadyCommitted(f"pre-commit {transaction_id!r}: transaction already committed")
            if checkpoints:
                partitions.check_epoch(con, f"pre-commit {transaction_id!r}", [c[0] for c in checkpoints],
                                       epoch, member, self._clock_ms(), self.epoch_fencing)
                partitions.stage(con, transaction_id, checkpoints, epoch, member)
            con.execute("DELETE FROM prepared WHERE transaction_id = ?", (transaction_id,))
            con.executemany("INSERT INTO prepared(transaction_id, seq, order_id, account, amount_cents) "
                            "VALUES (?, ?, ?, ?, ?)",
                            ((transaction_id, i, o, a, m) for i, (o, a, m) in enumerate(rows)))
            con.execute("INSERT INTO transactions(transaction_id, state, prepared_at_ms, order_count) "
                        "VALUES (?, 'prepared', ?, ?) ON CONFLICT(transaction_id) DO UPDATE SET "
                        "state = 'prepared', prepared_at_ms = excluded.prepared_at_ms, "
                        "order_count = excluded.order_count, finished_at_ms = NULL, abort_reason = NULL",
                        (transaction_id, self._clock_ms(), len(rows)))
        self._refresh_transactions()

    def commit(self, transaction_id: str, *, epoch: int = 0) -> CommitResult:
        """Apply the prepared writes of ``transaction_id`` (Apply semantics) and mark it committed;
        a consumer-group member's transaction also installs its staged partition checkpoints.

        Raises:
            Fenced: ``epoch`` > 0 and a partition of the transaction has a newer owner epoch, or a
                newer owner aborted it at its fence (FAILED_PRECONDITION "FENCED: ...").
            InvalidInput: empty id.
            TransactionNotFound: never pre-committed (gRPC NOT_FOUND).
            TransactionAborted: aborted by a call or by the prepared timeout (FAILED_PRECONDITION).
        """
        check_transaction_id(transaction_id)
        self.abort_expired()
        with self._fenced_logged("", epoch), self._txn() as con:
            row = con.execute("SELECT state, abort_reason, finished_at_ms FROM transactions "
                              "WHERE transaction_id = ?", (transaction_id,)).fetchone()
            if row is None:
                raise TransactionNotFound(f"commit {transaction_id!r}: unknown transaction "
                                          "(never pre-committed)")
            state, reason, finished_ms = row
            if state == "aborted" and reason == "fenced":
                raise partitions.Fenced(f"commit {transaction_id!r}: aborted at {finished_ms} ms by a "
                                        "newer owner of its partitions (their fence)")
            staged = partitions.staged(con, transaction_id)
            if staged and epoch and state == "prepared":
                partitions.check_epoch(con, f"commit {transaction_id!r}", [r[0] for r in staged], epoch,
                                       staged[0][5], self._clock_ms(), self.epoch_fencing)
            if state == "aborted":
                how = ("aborted by timeout (prepared longer than --prepared-timeout-ms="
                       f"{self.prepared_timeout_ms})" if reason == "timeout" else "aborted by an Abort call")
                raise TransactionAborted(f"commit {transaction_id!r}: transaction was {how} "
                                         f"at {finished_ms} ms; its writes are gone")
            if state == "committed" and self.txn_dedupe:
                return CommitResult(already_committed=True, applied=0)
            rows = con.execute("SELECT order_id, account, amount_cents FROM prepared "
                               "WHERE transaction_id = ? ORDER BY seq", (transaction_id,)).fetchall()
            new, newly_dup = self._apply_rows(con, rows)
            if staged:
                now = self._clock_ms()
                partitions.record_applications(con, (r[0] for r in rows), staged[0][5], staged[0][4], now)
                partitions.install_staged(con, transaction_id, now)
            con.execute("UPDATE transactions SET state = 'committed', finished_at_ms = ?, "
                        "commit_count = commit_count + 1 WHERE transaction_id = ?",
                        (self._clock_ms(), transaction_id))
            if self.txn_dedupe:
                con.execute("DELETE FROM prepared WHERE transaction_id = ?", (transaction_id,))
        if state == "committed":
            self._reapplied += 1
            self._log.warning("re-applied committed transaction %s (--no-txn-dedupe)", transaction_id)
        self._count_applied(new, len(rows), newly_dup)
        self._refresh_transactions()
        return CommitResult(already_committed=False, applied=len(rows))

    def abort(self, transaction_id: str, *, reason: str = "abort") -> bool:
        """Drop the prepared writes of ``transaction_id``; returns True if it was already aborted.

        Idempotent. An unknown id is recorded as aborted, so that a late commit of
        it fails with FAILED_PRECONDITION rather than NOT_FOUND.

        Raises:
            InvalidInput: empty id.
            TransactionCommitted: already committed; its writes are visible (FAILED_PRECONDITION).
        """
        check_transaction_id(transaction_id)
        with self._txn() as con:
            row = con.execute("SELECT state FROM transactions WHERE transaction_id = ?",
                              (transaction_id,)).fetchone()
            if row and row[0] == "aborted":
                return True
            if row and row[0] == "committed":
                raise TransactionCommitted(f"abort {transaction_id!r}: transaction already committed; "
                                           "its writes are applied and cannot be aborted")
            self._abort_in(con, transaction_id, reason)
        self._refresh_transactions()
        return False

    def _abort_in(self, con: sqlite3.Connection, transaction_id: str, reason: str) -> None:
        con.execute("DELETE FROM prepared WHERE transaction_id = ?", (transaction_id,))
        con.execute("INSERT INTO transactions(transaction_id, state, finished_at_ms, abort_reason) "
                    "VALUES (?, 'aborted', ?, ?) ON CONFLICT(transaction_id) DO UPDATE SET "
                    "state = 'aborted', finished_at_ms = excluded.finished_at_ms, "
                    "abort_reason = excluded.abort_reason", (transaction_id, self._clock_ms(), reason))

    def abort_expired(self) -> list[str]:
        """Abort (reason "timeout") every transaction prepared more than prepared_timeout_ms ago."""
        if self.prepared_timeout_ms <= 0:
            return []
        deadline = self._clock_ms() - self.prepared_timeout_ms
        with self._txn() as con:
            expired = [r[0] for r in con.execute(
                "SELECT transaction_id FROM transactions WHERE state = 'prepared' AND prepared_at_ms < ?",
                (deadline,))]
            for transaction_id in expired:
                self._abort_in(con, transaction_id, "timeout")
        if expired:
            self._log.warning("aborted %d prepared transaction(s) by timeout: %s", len(expired), expired)
            self._refresh_transactions()
        return expired

    def fence(self, parts: Sequence[int], epoch: int, member: str) -> tuple[list[tuple], list[str]]:
        """Claim ``parts`` for ``epoch`` and return their checkpoints (partitions.fence).

        Raises: Fenced (a newer owner), InvalidInput."""
        check_member(member)
        with self._fenced_logged(member, epoch), self._txn() as con:
            out = partitions.fence(con, parts, epoch, member, self._clock_ms(), self.epoch_fencing)
        if out[1]:
            self._log.warning("fence aborted prepared transactions of older owners: %s", out[1])
            self._refresh_transactions()
        return out

    def save_checkpoints(self, cks: Sequence[partitions.Checkpoint], epoch: int, member: str) -> None:
        """Replace the partitions' checkpoints. Raises: Fenced, InvalidInput."""
        check_member(member)
        with self._fenced_logged(member, epoch), self._txn() as con:
            partitions.save(con, cks, epoch, member, self._clock_ms(), self.epoch_fencing)

    @contextmanager
    def _fenced_logged(self, member: str, epoch: int) -> Iterator[None]:
        """Record a Fenced refusal in group_events (after the refused call rolled back)."""
        try:
            yield
        except partitions.Fenced as e:
            self.fenced_refusals += 1
            self._log.warning("refused a zombie's call: %s", e)
            with self._txn() as con:
                partitions.record_refusal(con, self._clock_ms(), str(e), member, epoch)
            raise

    def dead_letter(self, entries: Sequence[dead_letters.DeadLetter]) -> tuple[int, int]:
        """Store poison records in ``dead_letters`` (nodes/sink/dead_letters.py); returns
        (added, existing). Raises: TooManyOrders (nothing stored)."""
        with self._txn() as con:
            added, existing = dead_letters.store(con, entries, self._clock_ms())
        self.counters = dataclasses.replace(self.counters,
                                            dead_letters=self.counters.dead_letters + added)
        return added, existing

    def list_prepared(self) -> list[str]:
        """Ids in state prepared, oldest first (expired ones are aborted first)."""
        self.abort_expired()
        return list(self.counters.prepared)

    def snapshot_page(self, after_order_id: str = "", limit: int = 0
                      ) -> tuple[list[tuple[str, str, int, int]], list[tuple[str, int]], bool]:
        """One page of orders with order_id > after_order_id, and every balance.

        Returns ``(orders [(order_id, account, amount_cents, applied_count)] sorted by
        order_id, balances [(account, balance_cents)], done)``. limit 0 means
        DEFAULT_SNAPSHOT_LIMIT; above MAX_SNAPSHOT_LIMIT it is capped. Each page is
        read in one transaction; pages are consistent with each other only if no
        writes happen in between (the audit reads after the pipeline drained).

        Raises: InvalidInput for a negative limit.
        """
        if limit < 0:
            raise InvalidInput(f"limit must be >= 0, got {limit}")
        if too_long(after_order_id, MAX_ORDER_ID_BYTES):
            raise InvalidInput(f"after_order_id longer than {MAX_ORDER_ID_BYTES} bytes")
        limit = min(limit or DEFAULT_SNAPSHOT_LIMIT, MAX_SNAPSHOT_LIMIT)
        self._con.execute("BEGIN")
        try:
            orders = self._con.execute(
                "SELECT order_id, account, amount_cents, applied_count FROM orders "
                "WHERE order_id > ? ORDER BY order_id LIMIT ?", (after_order_id, limit + 1)).fetchall()
            balances = self._con.execute(
                "SELECT account, balance_cents FROM balances ORDER BY account").fetchall()
        finally:
            self._con.execute("COMMIT")
        return orders[:limit], balances, len(orders) <= limit

