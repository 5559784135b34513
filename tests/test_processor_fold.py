"""nodes/processor/fold.py: the inlined batch loop gives what the general path gives, record by
record (issue 16), on valid records, poison records, ids around the 64-character fast-path
bound, multi-byte ids over 256 UTF-8 bytes, and an operator-state overflow."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from nodes.common.limits import INT64_MAX
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order
from nodes.processor import fold
from nodes.processor.poison import DeadLetters
from nodes.processor.state import OperatorState


def _p():
    return SimpleNamespace(consumer=SimpleNamespace(positions={}), state=OperatorState(),
                           dead_letters=DeadLetters(logging.getLogger("test")), records=0, bad_records=0)


def _rec(offset: int, value: bytes) -> broker_pb2.Record:
    return broker_pb2.Record(offset=offset, key=b"k", value=value)


def _order(oid: str, account: str = "acct-1", cents: int = 100) -> bytes:
    return Order(order_id=oid, account=account, amount_cents=cents).SerializeToString()


def _fetched():
    values = [_order("order-1"), b"\xff\xff garbage", _order(""), _order("x" * 64), _order("x" * 65),
              _order("\u00e9" * 100), _order("\u00e9" * 200), _order("o-big", "acct-2", INT64_MAX),
              _order("o-over", "acct-2", 1), _order("o-3", account=""), _order("order-1", cents=-5)]
    return [(i % 3, _rec(10 + i, v)) for i, v in enumerate(values)]


def _view(p, orders):
    return ([(o.order_id, o.account, o.amount_cents) for o in orders], p.consumer.positions,
            p.state.totals, p.records, p.bad_records,
            [(e.order_id, e.partition, e.offset, e.reason) for e in p.dead_letters.pending],
            {k: p.dead_letters.origin(k) for k in ("order-1", "x" * 64, "x" * 65, "o-big")})


def test_batch_loop_equals_the_general_path_record_by_record():
    fetched = _fetched()
    fast, slow = _p(), _p()
    got = fold.process_batch(fast, fetched)
    ref = [o for o in (fold.process_one(slow, part, rec) for part, rec in fetched) if o is not None]
    assert _view(fast, got) == _view(slow, ref)
    assert fast.bad_records == 5 and fast.records == 6  # the fixture exercises both paths


def _parsed(v: bytes):
    try:
        return Order.FromString(v)
    except Exception:  # noqa: BLE001
        return None


def test_bulk_decode_equals_one_parse_per_value():
    values = [_order("order-1"), b"", _order("\u00e9" * 100), _order("x" * 20000, "a" * 9000, -7),
              _order("o", "acct-1", INT64_MAX), _order("o") + b"\x20\x05",  # an unknown field 4
              _order("first") + _order("second"), _order("b" * 127), _order("c" * 128)]
    got = fold.decode_values(values)
    assert got is not None and len(got) == len(values)
    assert [o.SerializeToString() for o in got] == [Order.FromString(v).SerializeToString() for v in values]
    assert fold.decode_values(values + [b"\xff\xff garbage"]) is None
    assert fold.decode_values([_order("\u00e9")[:-1]]) is None  # a cut value does not parse either


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40),
                          st.builds(_order, st.text(max_size=70), st.text(max_size=70),
                                    st.integers(-2**63, 2**63 - 1))), min_size=1, max_size=8))
def test_bulk_decode_parses_exactly_when_each_value_does(values):
    each = [_parsed(v) for v in values]
    got = fold.decode_values(values)
    if any(o is None for o in each):
        assert got is None
    else:
        assert got is not None
        assert [o.SerializeToString() for o in got] == [o.SerializeToString() for o in each]


def test_batch_of_parseable_records_takes_the_bulk_path_and_equals_the_general_path():
    values = [_order("order-1"), _order(""), _order("x" * 64), _order("x" * 65), _order("\u00e9" * 100),
              _order("\u00e9" * 200), _order("o-big", "acct-2", INT64_MAX), _order("o-over", "acct-2", 1),
              _order("o-3", account=""), _order("order-1", cents=-5)]
    fetched = [(i % 3, _rec(10 + i, v)) for i, v in enumerate(values)]
    assert fold.decode_values([r.value for _, r in fetched]) is not None
    fast, slow = _p(), _p()
    got = fold.process_batch(fast, fetched)
    ref = [o for o in (fold.process_one(slow, part, rec) for part, rec in fetched) if o is not None]
    assert _view(fast, got) == _view(slow, ref)
    assert fast.bad_records == 4 and fast.records == 6  # both paths exercised
