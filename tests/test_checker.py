"""Checker tests on handwritten data: one per anomaly family, exact counts (Jepsen style)."""

from collections import Counter

import pytest

from harness.checker import RunData, check
from harness.checker.anomaly import HOP_BROKER_SINK, HOP_PRODUCER_BROKER
from harness.checker.verdict import BROKEN, HELD, NOT_EXERCISED, decide

WORKLOAD = {f"order-{i:08d}": (f"acct-{i % 2:02d}", 100 * (i + 1)) for i in range(6)}
IDS = list(WORKLOAD)


def clean(mode="exactly-once", **over) -> RunData:
    """Every order sent, acked, logged once at increasing offsets, applied once."""
    d = RunData(mode=mode, workload=dict(WORKLOAD))
    d.invoked = set(IDS)
    d.acked = set(IDS)
    d.log_counts = Counter({oid: 1 for oid in IDS})
    d.log_positions = {oid: (i % 2, i // 2) for i, oid in enumerate(IDS)}
    d.sink_counts = {oid: 1 for oid in IDS}
    d.balances = {"acct-00": 100 + 300 + 500, "acct-01": 200 + 400 + 600}
    for k, v in over.items():
        setattr(d, k, v)
    return d


def test_clean_run_holds_exactly_once():
    r = check(clean())
    assert r.verdict == HELD
    assert all(a.count == 0 for a in r.anomalies.values())
    assert r.balance_ok and r.acked == 6


def test_lost_at_each_hop_and_never_sent():
    d = clean()
    # order 1: never reached the log, never invoked; order 2: in the log, not applied.
    d.invoked.discard(IDS[1])
    d.acked -= {IDS[1], IDS[2]}
    d.log_counts[IDS[1]] = 0
    del d.sink_counts[IDS[1]]
    d.sink_counts[IDS[2]] = 0
    d.balances = {"acct-00": 100 + 500, "acct-01": 400 + 600}
    r = check(d)
    lost = r.anomalies["lost"]
    assert lost.count == 2 and lost.examples == [IDS[1], IDS[2]]
    assert lost.by_hop == {HOP_PRODUCER_BROKER: 1, HOP_BROKER_SINK: 1}
    assert lost.extra["never_sent"] == 1
    assert r.count("lost-acknowledged") == 0
    assert not r.balance_ok and r.count("balance-mismatch") == 0
    assert r.verdict == BROKEN


def test_lost_acknowledged_counts_only_acked_losses():
    d = clean()
    del d.sink_counts[IDS[3]]
    del d.sink_counts[IDS[4]]
    d.acked.discard(IDS[4])
    d.balances = {"acct-00": 100 + 300, "acct-01": 200 + 600}
    r = check(d)
    assert r.count("lost") == 2
    assert r.count("lost-acknowledged") == 1
    assert r.anomalies["lost-acknowledged"].examples == [IDS[3]]


def test_duplicated_with_count_and_hop():
    d = clean()
    d.sink_counts[IDS[0]] = 3          # log once, applied 3 times: replay at the sink hop
    d.sink_counts[IDS[5]] = 2          # appended twice by a retry
    d.log_counts[IDS[5]] = 2
    d.balances = {"acct-00": 3 * 100 + 300 + 500, "acct-01": 200 + 400 + 2 * 600}
    r = check(d)
    dup = r.anomalies["duplicated"]
    assert dup.count == 2 and dup.extra["extra_applications"] == 3
    assert dup.by_hop == {HOP_BROKER_SINK: 1, HOP_PRODUCER_BROKER: 1}
    assert r.count("duplicated-in-log") == 1 and r.anomalies["duplicated-in-log"].examples == [IDS[5]]
    assert r.count("balance-mismatch") == 0 and not r.balance_ok
    assert r.balance_deltas == {"acct-00": 200, "acct-01": 600}
    assert r.verdict == BROKEN


def test_unexpected_order_at_sink():
    d = clean()
    d.sink_counts["order-99999999"] = 1
    r = check(d)
    assert r.count("unexpected") == 1 and r.anomalies["unexpected"].examples == ["order-99999999"]
    assert r.verdict == BROKEN


def test_balance_mismatch_is_a_torn_sink_write():
    d = clean()
    d.balances = dict(d.balances, **{"acct-01": d.balances["acct-01"] + 7})
    r = check(d)
    assert r.count("balance-mismatch") == 1
    assert r.anomalies["balance-mismatch"].examples == ["acct-01"]
    assert r.balance_deltas == {"acct-01": 7}


def test_state_mismatch_only_when_state_known():
    assert check(clean(operator_state=None)).count("state-mismatch") == 0
    r = check(clean(operator_state={"acct-00": 900, "acct-01": 0}))
    assert r.count("state-mismatch") == 1 and r.verdict == BROKEN


def test_reordered_within_a_key():
    d = clean()
    # acct-00 holds orders 0, 2, 4 on partition 0: put order 4 before order 2.
    d.log_positions[IDS[2]] = (0, 5)
    d.log_positions[IDS[4]] = (0, 3)
    r = check(d)
    assert r.count("reordered") == 1 and r.anomalies["reordered"].examples == [IDS[4]]


@pytest.mark.parametrize("mode,counts,expected", [
    ("at-most-once", {"lost": 3}, HELD),
    ("at-most-once", {"lost": 3, "duplicated": 1}, BROKEN),
    ("at-most-once", {}, NOT_EXERCISED),
    ("at-least-once", {"duplicated": 4}, HELD),
    ("at-least-once", {"duplicated": 4, "lost": 1}, BROKEN),
    ("at-least-once", {}, NOT_EXERCISED),
    ("exactly-once", {}, HELD),
    ("exactly-once", {"duplicated": 1}, BROKEN),
    ("exactly-once", {"state-mismatch": 1}, BROKEN),
    ("at-least-once", {"duplicated": 1, "balance-mismatch": 1}, BROKEN),
])
def test_verdict_rules(mode, counts, expected):
    assert decide(mode, counts, balance_ok=not counts)[0] == expected


def test_exactly_once_balance_off_alone_is_broken():
    assert decide("exactly-once", {}, balance_ok=False)[0] == BROKEN
