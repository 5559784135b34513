"""The checker's numpy columns (harness/checker/table.py) give the answers of the per-order
dict loops they replaced (issue 16): a reference implementation of each family, written
here the old way, against ``check`` on random runs; the generated workload's columns and
id parsing against the Python generator."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from harness.checker import RunData, check
from harness.checker.anomaly import EXAMPLES, HOP_BROKER_SINK, HOP_PRODUCER_BROKER
from harness.checker.table import OrderTable, _parse_generated
from harness.checker.workload_columns import generated_columns
from nodes.producer.workload import generate_rows


def reference(d: RunData) -> dict:
    """The families as the per-order loops computed them before the table (same rules)."""
    out: dict = {}

    def fam(name):
        return out.setdefault(name, {"count": 0, "examples": [], "by_hop": {}})

    def add(name, ident, hop=None):
        f = fam(name)
        f["count"] += 1
        if len(f["examples"]) < EXAMPLES:
            f["examples"].append(ident)
        if hop:
            f["by_hop"][hop] = f["by_hop"].get(hop, 0) + 1

    for name in ("lost", "lost-acknowledged", "duplicated", "duplicated-in-log", "unexpected", "reordered",
                 "lost-from-log"):
        fam(name)
    last: dict = {}
    for oid, (account, _) in d.workload.items():
        n, in_log = d.sink_counts.get(oid, 0), d.log_counts.get(oid, 0)
        if n <= 0:
            hop = HOP_BROKER_SINK if in_log > 0 else HOP_PRODUCER_BROKER
            add("lost", oid, hop)
            if oid in d.acked:
                add("lost-acknowledged", oid, hop)
        if n > 1:
            add("duplicated", oid, HOP_PRODUCER_BROKER if in_log > 1 else HOP_BROKER_SINK)
        if in_log > 1:
            add("duplicated-in-log", oid, HOP_PRODUCER_BROKER)
        if oid in d.acked and not in_log:
            add("lost-from-log", oid, HOP_PRODUCER_BROKER)
        pos = d.log_positions.get(oid)
        if pos is not None:
            prev = last.get(account)
            if prev is not None and prev[0] == pos[0] and pos[1] < prev[1]:
                add("reordered", oid, HOP_PRODUCER_BROKER)
            last[account] = pos if prev is None or pos[1] > prev[1] or prev[0] != pos[0] else prev
    for oid, n in sorted(d.sink_counts.items()):
        if n > 0 and oid not in d.workload:
            add("unexpected", oid)
    ideal: Counter = Counter()
    implied: Counter = Counter()
    for oid, (account, amount) in d.workload.items():
        ideal[account] += amount
        implied[account] += amount * d.sink_counts.get(oid, 0)
    out["ideal"] = {a: v for a, v in ideal.items() if v}
    out["implied"] = {a: v for a, v in implied.items() if v}
    return out


def random_run(seed: int, n: int) -> RunData:
    rng = random.Random(seed)
    accounts = [f"acct-{i}" for i in range(rng.randint(1, 5))]
    w = {f"o-{i:05d}": (rng.choice(accounts), rng.randint(-500, 5000)) for i in range(n)}
    d = RunData("at-least-once", w)
    ids = list(w) + [f"x-{i}" for i in range(rng.randint(0, 3))]   # a few ids not in the workload
    d.invoked = {o for o in ids if rng.random() < 0.9}
    d.acked = {o for o in d.invoked if rng.random() < 0.8}
    d.log_counts = Counter({o: rng.choice((0, 1, 1, 1, 2, 3)) for o in ids if rng.random() < 0.9})
    offsets = [0, 0, 0]
    for o in list(w):
        if d.log_counts.get(o):
            p = rng.randrange(3) if rng.random() < 0.1 else hash(w[o][0]) % 3
            d.log_positions[o] = (p, offsets[p] + rng.randint(-3, 5))
            offsets[p] += 1
    d.sink_counts = {o: rng.choice((0, 1, 1, 1, 2, 4)) for o in ids if rng.random() < 0.9}
    d.balances = {a: rng.randint(0, 10) for a in accounts}
    return d


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 60))
def test_table_families_equal_the_per_order_loops(seed, n):
    d = random_run(seed, n)
    ref = reference(d)
    r = check(d)
    for name in ("lost", "lost-acknowledged", "duplicated", "duplicated-in-log", "unexpected", "reordered",
                 "lost-from-log"):
        a = r.anomalies[name]
        assert (a.count, a.examples, a.by_hop) == (ref[name]["count"], ref[name]["examples"],
                                                   ref[name]["by_hop"]), name
    assert list(r.anomalies["lost"].by_hop) == list(ref["lost"]["by_hop"])   # hops in first-seen order
    assert r.acked == sum(1 for o in d.workload if o in d.acked)
    want_deltas = {a: d.balances.get(a, 0) - ref["ideal"].get(a, 0)
                   for a in sorted(set(ref["ideal"]) | set(d.balances))
                   if d.balances.get(a, 0) != ref["ideal"].get(a, 0)}
    assert r.balance_deltas == want_deltas
    assert r.count("balance-mismatch") == sum(
        1 for a in set(ref["implied"]) | set(d.balances) if ref["implied"].get(a, 0) != d.balances.get(a, 0))


def test_a_loaded_table_turns_into_dicts_when_a_caller_edits_them():
    d = random_run(7, 30)
    keyed = check(d).to_json()
    t = d.order_table()
    loaded = RunData("at-least-once", table=t)
    loaded.balances = d.balances
    assert check(loaded).to_json() == keyed
    assert set(loaded.workload) == set(d.workload) and loaded.table is None   # read: now dicts
    first = next(iter(loaded.workload))
    loaded.sink_counts[first] = 5                                              # and edits count
    assert check(loaded).anomalies["duplicated"].count >= 1


def test_restrict_moves_the_rest_out_of_the_workload():
    t = OrderTable.from_rows([("a", "x", 1), ("b", "x", 2), ("c", "y", 3)])
    t.set_sink(["a", "c"], [1, 2])
    t.mark_history(["a", "c"], ["a"])
    r = t.restrict(np.array([True, True, False]))
    assert r.ids == ["a", "b"] and r.sink_other == {"c": 2} and r.invoked_other == {"c"}
    assert r.sink_count.tolist() == [1, 0] and r.invoked.tolist() == [True, False]


@pytest.mark.parametrize("seed,count,accounts", [(1, 5000, 16), (5, 777, 3), (2 ** 40 + 3, 300, 1000), (-3, 50, 1),
                                                 (0, 0, 16)])
def test_generated_columns_equal_generate_rows(seed, count, accounts):
    ids, codes, names, amounts = generated_columns(seed, count, accounts)
    assert list(generate_rows(seed, count, accounts)) == [
        (o, names[c], a) for o, c, a in zip(ids, codes.tolist(), amounts.tolist())]


def test_generated_ids_parse_to_their_row_and_nothing_else_does():
    ids = ["order-00000000", "order-00000041", "order-00000099", "order-00000100", "order-0000004",
           "order-000000410", "Order-00000001", "order-0000004x", "order-٠٠٠٠٠٠٠١", ""]
    assert _parse_generated(ids, 100).tolist() == [0, 41, 99, -1, -1, -1, -1, -1, -1, -1]
    assert _parse_generated(["order-00000003"], 100).tolist() == [3]
    assert _parse_generated(["x"], 100).tolist() == [-1]


def test_keep_sent_cuts_the_table_as_it_cuts_the_dicts():
    d = random_run(11, 40)
    d.invoked = {o for i, o in enumerate(d.workload) if i < 25 or i == 33}
    loaded = RunData("at-least-once", table=d.order_table())
    loaded.balances = d.balances
    d.keep_sent(20)
    loaded.keep_sent(20)
    assert loaded.table is not None and len(loaded.table) == 26   # 20 sent + 21..24 and 33 invoked
    assert check(loaded).to_json() == check(d).to_json()


def test_balances_stay_exact_beyond_int64():
    big = 10 ** 12
    w = {f"o-{i}": ("a" if i % 2 else "b", big - i) for i in range(6)}
    d = RunData("at-least-once", w)
    d.sink_counts = {oid: 3_000_000 for oid in w}     # 3e18 per order: the sums leave int64
    d.balances = {"a": 0, "b": 0}
    r = check(d)
    want = {"a": -sum(big - i for i in (1, 3, 5)), "b": -sum(big - i for i in (0, 2, 4))}
    assert r.balance_deltas == want and r.count("balance-mismatch") == 2
    from harness.checker.balance import implied_balances
    assert implied_balances(d) == {"a": 3_000_000 * sum(big - i for i in (1, 3, 5)),
                                   "b": 3_000_000 * sum(big - i for i in (0, 2, 4))}
