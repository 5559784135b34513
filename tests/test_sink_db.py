"""SinkDB, the sink's logic, driven without processes (nodes/sink/db.py)."""

from __future__ import annotations

import random
import sqlite3

import pytest

from nodes.sink.db import MAX_ORDERS_PER_CALL, SinkDB, read_snapshot
from nodes.sink.errors import (AlreadyCommitted, InvalidInput, TooManyOrders, TransactionAborted,
                               TransactionCommitted, TransactionNotFound)


class FakeClock:
    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def orders(n: int, start: int = 0, accounts: int = 5) -> list[tuple[str, str, int]]:
    return [(f"order-{i:08d}", f"acct-{i % accounts}", 100 + i) for i in range(start, start + n)]


def balances_of(rows, times: int = 1) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, acct, amt in rows:
        out[acct] = out.get(acct, 0) + amt * times
    return out


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def db(tmp_path, clock):
    d = SinkDB(tmp_path / "sink.db", clock_ms=clock)
    yield d
    d.close()


def test_pragmas_wal_and_synchronous_full(db):
    con = db._con
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_apply_twice_counts_twice_and_doubles_balance(db, tmp_path):
    rows = orders(100)
    assert db.apply(rows) == 100
    assert db.apply(rows) == 100
    counts, balances = read_snapshot(tmp_path / "sink.db")
    assert set(counts.values()) == {2} and len(counts) == 100
    assert balances == balances_of(rows, times=2)
    c = db.counters
    assert (c.orders, c.applied_total, c.duplicated_orders) == (100, 200, 100)


def test_apply_repeated_order_within_one_batch_counts_each(db):
    db.apply([("o1", "a", 5), ("o1", "a", 5), ("o2", "b", 1)])
    c = db.counters
    assert (c.orders, c.applied_total, c.duplicated_orders) == (2, 3, 1)


def test_upsert_twice_applies_once(db, tmp_path):
    rows = orders(100)
    assert db.upsert(rows) == (100, 0)
    assert db.upsert(rows[50:] + orders(10, start=100)) == (10, 50)
    counts, balances = read_snapshot(tmp_path / "sink.db")
    assert len(counts) == 110 and set(counts.values()) == {1}
    assert balances == balances_of(orders(110))
    assert db.counters.duplicated_orders == 0


def test_precommit_commit_twice_applies_once(db, tmp_path):
    rows = orders(20)
    db.pre_commit("ckpt-1", rows)
    assert db.list_prepared() == ["ckpt-1"]
    assert read_snapshot(tmp_path / "sink.db") == ({}, {})  # prepared writes are not visible
    r1 = db.commit("ckpt-1")
    assert (r1.already_committed, r1.applied) == (False, 20)
    r2 = db.commit("ckpt-1")
    assert (r2.already_committed, r2.applied) == (True, 0)
    counts, balances = read_snapshot(tmp_path / "sink.db")
    assert set(counts.values()) == {1} and balances == balances_of(rows)
    assert db.list_prepared() == [] and db.counters.committed_transactions == 1


def test_commit_dedupe_survives_reopen(tmp_path, clock):
    d = SinkDB(tmp_path / "sink.db", clock_ms=clock)
    d.pre_commit("t1", orders(5))
    d.commit("t1")
    d.close()
    d = SinkDB(tmp_path / "sink.db", clock_ms=clock)
    assert d.commit("t1").already_committed
    assert d.counters.applied_total == 5 and d.counters.committed_transactions == 1
    d.close()


def test_precommit_replaces_while_prepared_and_refused_after_commit(db):
    db.pre_commit("t", orders(10))
    db.pre_commit("t", orders(3, start=50))
    assert db.commit("t").applied == 3
    with pytest.raises(AlreadyCommitted):
        db.pre_commit("t", orders(3))
    assert db.counters.applied_total == 3


def test_abort_drops_and_is_idempotent(db, tmp_path):
    db.pre_commit("t", orders(10))
    assert db.abort("t") is False
    assert db.abort("t") is True
    assert db.list_prepared() == []
    assert db._con.execute("SELECT count(*) FROM prepared").fetchone()[0] == 0
    with pytest.raises(TransactionAborted, match="aborted by an Abort call"):
        db.commit("t")
    assert read_snapshot(tmp_path / "sink.db") == ({}, {})


def test_commit_unknown_and_abort_committed(db):
    with pytest.raises(TransactionNotFound, match="never pre-committed"):
        db.commit("nope")
    db.pre_commit("t", orders(1))
    db.commit("t")
    with pytest.raises(TransactionCommitted):
        db.abort("t")
    assert db.abort("never-seen") is False  # idempotent abort of an unknown id
    with pytest.raises(TransactionAborted):
        db.commit("never-seen")


def test_prepared_timeout_aborts(tmp_path, clock):
    d = SinkDB(tmp_path / "sink.db", clock_ms=clock, prepared_timeout_ms=1000)
    d.pre_commit("old", orders(5))
    clock.ms += 600
    d.pre_commit("young", orders(5, start=5))
    clock.ms += 500  # "old" is 1100 ms old, "young" 500 ms
    assert d.list_prepared() == ["young"]
    with pytest.raises(TransactionAborted, match="aborted by timeout"):
        d.commit("old")
    assert d.commit("young").applied == 5
    assert d.counters.aborted_by_timeout == 1 and d.counters.applied_total == 5
    d.close()


def test_no_txn_dedupe_reapplies(tmp_path, clock):
    d = SinkDB(tmp_path / "sink.db", clock_ms=clock, txn_dedupe=False)
    rows = orders(10)
    d.pre_commit("ckpt-7", rows)
    assert d.commit("ckpt-7").applied == 10
    r = d.commit("ckpt-7")
    assert (r.already_committed, r.applied) == (False, 10)
    counts, balances = read_snapshot(tmp_path / "sink.db")
    assert set(counts.values()) == {2} and balances == balances_of(rows, times=2)
    assert d.counters.duplicated_orders == 10 and d.counters.reapplied_commits == 1
    d.close()


def test_bad_input_changes_nothing(db):
    db.apply(orders(3))
    before = db.counters
    with pytest.raises(InvalidInput, match="empty order_id"):
        db.apply(orders(2, start=10) + [("", "a", 1)])
    with pytest.raises(InvalidInput, match="no account"):
        db.upsert([("x", "", 1)])
    with pytest.raises(InvalidInput):
        db.pre_commit("", orders(1))
    for op in (db.commit, db.abort):
        with pytest.raises(InvalidInput):
            op("")
    with pytest.raises(TooManyOrders):
        db.apply([("o", "a", 1)] * (MAX_ORDERS_PER_CALL + 1))
    with pytest.raises(InvalidInput):
        db.snapshot_page("", -1)
    assert db.counters == before


def test_failed_batch_rolls_back(db, monkeypatch):
    db.apply(orders(5))
    before = read_snapshot(db.path)
    real_apply = db._apply_rows

    def apply_then_fail(con, rows):
        real_apply(con, rows)
        raise sqlite3.OperationalError("disk I/O error (injected)")

    monkeypatch.setattr(db, "_apply_rows", apply_then_fail)
    with pytest.raises(sqlite3.OperationalError):
        db.apply(orders(5))
    assert read_snapshot(db.path) == before


def test_snapshot_pages_equal_offline_reader(db):
    rng = random.Random(7)
    rows = orders(2500, accounts=13)
    db.apply(rows)
    db.apply(rng.sample(rows, 300))
    after, got, pages = "", {}, 0
    while True:
        page, balances, done = db.snapshot_page(after, 1000)
        pages += 1
        got.update({o: c for o, _, _, c in page})
        if done:
            break
        after = page[-1][0]
    counts, offline_balances = read_snapshot(db.path)
    assert pages == 3 and got == counts and dict(balances) == offline_balances
    assert sum(counts.values()) == 2800


def test_read_snapshot_missing_db_does_not_create(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_snapshot(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()
