"""The ``dead-lettered`` anomaly family on handwritten data (Jepsen style, exact counts)."""

from __future__ import annotations

from test_checker import IDS, WORKLOAD, clean

from harness.checker import check
from harness.checker.verdict import BROKEN, HELD, NOT_EXERCISED


def letter(order_id: str, partition: int, offset: int, reason: str) -> dict:
    return {"order_id": order_id, "partition": partition, "offset": offset, "reason": reason,
            "account": "", "amount_cents": 0, "value_bytes": 0, "dead_lettered_ms": 1}


def test_poison_records_are_reported_by_id_and_hold_exactly_once_with_dead_letters():
    d = clean(dead_letters=[letter("", 0, 7, "empty order_id"),
                            letter("", 1, 3, "undecodable value (4 bytes): DecodeError")])
    r = check(d)
    a = r.anomalies["dead-lettered"]
    assert (a.count, a.examples, a.by_hop) == (2, ["p0@7", "p1@3"], {"broker->sink": 2})
    assert a.extra["poison"] == 2 and a.extra["workload_orders"] == 0
    assert a.extra["reasons"] == {"empty order_id": 1, "undecodable value (4 bytes): DecodeError": 1}
    assert r.verdict == HELD and r.reasons[-1].startswith("2 poison record(s) dead-lettered")
    assert r.count("lost") == 0


def test_a_dead_lettered_workload_order_is_loss():
    oid = IDS[3]
    acct, amount = WORKLOAD[oid]
    d = clean(mode="at-least-once", dead_letters=[letter(oid, 1, 1, "balance overflow")])
    d.sink_counts = {o: 1 for o in IDS if o != oid}
    d.balances = dict(d.balances)
    d.balances[acct] -= amount
    r = check(d)
    assert r.anomalies["dead-lettered"].examples == [oid]
    assert r.anomalies["dead-lettered"].extra == {"poison": 0, "workload_orders": 1,
                                                  "reasons": {"balance overflow": 1}}
    assert r.anomalies["lost"].examples == [oid] and r.verdict == BROKEN
    assert not any("poison" in x for x in r.reasons)


def test_dead_letters_alone_do_not_exercise_a_weaker_mode():
    r = check(clean(mode="at-most-once", dead_letters=[letter("", 0, 0, "empty order_id")]))
    assert r.verdict == NOT_EXERCISED and len(r.reasons) == 2
    assert r.anomalies["dead-lettered"].count == 1
