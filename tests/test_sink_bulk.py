"""nodes/sink/bulk.py against the row-by-row statements it replaced (issue 16).

The reference applies each order with one ``INSERT ... ON CONFLICT ... RETURNING``
statement, as SinkDB did before; both run on random batches (repeated ids inside a batch,
ids already present once or several times) and must leave identical tables and report the
same counts.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from hypothesis import given, settings, strategies as st

from nodes.sink import bulk
from nodes.sink.money import add_balances
from nodes.sink.schema import SCHEMA

_REF_APPLY = bulk.APPLY_ORDER + " RETURNING applied_count"
_REF_UPSERT = bulk.UPSERT_ORDER + " RETURNING order_id"


def _db() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.executescript(SCHEMA)
    return con


def _ref_apply(con, rows):
    new = dup = 0
    per = defaultdict(int)
    for o, a, m in rows:
        (c,) = con.execute(_REF_APPLY, (o, a, m)).fetchall()[0]
        new += c == 1
        dup += c == 2
        per[a] += m
    add_balances(con, per)
    return new, dup


def _ref_upsert(con, rows):
    done, per = [], defaultdict(int)
    for o, a, m in rows:
        if con.execute(_REF_UPSERT, (o, a, m)).fetchall():
            done.append(o)
            per[a] += m
    add_balances(con, per)
    return done


def _tables(con):
    return (con.execute("SELECT order_id, account, amount_cents, applied_count FROM orders "
                        "ORDER BY order_id").fetchall(),
            con.execute("SELECT account, balance_cents FROM balances ORDER BY account").fetchall())


_row = st.tuples(st.integers(0, 40).map(lambda i: f"order-{i}"), st.sampled_from(["a", "b", "c"]),
                 st.integers(-1000, 1000))
_batches = st.lists(st.lists(_row, max_size=30), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(_batches)
def test_apply_matches_row_by_row(batches):
    ref, new = _db(), _db()
    for rows in batches:
        assert bulk.apply_rows(new, rows) == _ref_apply(ref, rows)
    assert _tables(new) == _tables(ref)


@settings(max_examples=150, deadline=None)
@given(_batches)
def test_upsert_matches_row_by_row(batches):
    ref, new = _db(), _db()
    for rows in batches:
        assert bulk.upsert_rows(new, rows) == _ref_upsert(ref, rows)
    assert _tables(new) == _tables(ref)


def test_lookup_spans_several_in_chunks():
    con = _db()
    rows = [(f"o{i}", "a", 1) for i in range(bulk.IN_CHUNK * 2 + 7)]
    assert bulk.apply_rows(con, rows[:bulk.IN_CHUNK + 3]) == (bulk.IN_CHUNK + 3, 0)
    assert bulk.apply_rows(con, rows) == (len(rows) - bulk.IN_CHUNK - 3, bulk.IN_CHUNK + 3)
