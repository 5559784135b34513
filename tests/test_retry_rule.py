"""The one retry rule (nodes/common/retry.py): transient codes retried with capped
backoff, permanent codes never; and the sink's dead-letter table as a plain class."""

from __future__ import annotations

import logging

import grpc
import pytest

from nodes.common.limits import INT64_MAX
from nodes.common.retry import PERMANENT_CODES, TRANSIENT_CODES, PermanentRpcError, backoff_s, is_transient
from nodes.processor.retry import retry_rpc
from nodes.sink.db import SinkDB
from nodes.sink.errors import InvalidInput, TooManyOrders
from nodes.sink.schema import read_dead_letters


class Failing(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, None, None, details=f"{code.name} for the test")


def test_every_code_is_either_transient_or_permanent():
    assert TRANSIENT_CODES | PERMANENT_CODES == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    assert not TRANSIENT_CODES & PERMANENT_CODES
    assert is_transient(grpc.StatusCode.UNAVAILABLE) and is_transient(grpc.StatusCode.DEADLINE_EXCEEDED)
    for code in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "OUT_OF_RANGE", "DATA_LOSS"):
        assert not is_transient(getattr(grpc.StatusCode, code))
    assert [backoff_s(50, n) for n in (1, 2, 3, 5, 6, 40)] == [0.05, 0.1, 0.2, 0.8, 1.0, 1.0]


@pytest.mark.parametrize("code,calls", [(grpc.StatusCode.UNAVAILABLE, 3), (grpc.StatusCode.INVALID_ARGUMENT, 1),
                                        (grpc.StatusCode.RESOURCE_EXHAUSTED, 1)])
async def test_retry_rpc_retries_transient_errors_only(code, calls):
    n = 0

    async def call():
        nonlocal n
        n += 1
        if n < 3:
            raise Failing(code)
        return "ok"

    if code in TRANSIENT_CODES:
        assert await retry_rpc(call, what="Test", base_ms=1, log=logging.getLogger("t")) == "ok"
    else:
        with pytest.raises(PermanentRpcError) as ei:
            await retry_rpc(call, what="Test", base_ms=1, log=logging.getLogger("t"))
        assert ei.value.code == code and "Test" in str(ei.value)
    assert n == calls


def test_sink_db_refuses_overflow_and_stores_dead_letters_once(tmp_path):
    db = SinkDB(tmp_path / "sink.db")
    assert db.apply([("o1", "a", INT64_MAX - 1)]) == 1
    with pytest.raises(InvalidInput, match="overflow"):
        db.upsert([("o2", "b", 1), ("o3", "a", 2)])
    with pytest.raises(InvalidInput, match="longer than 256"):
        db.apply([("x" * 300, "a", 1)])
    assert db.snapshot_page()[1] == [("a", INT64_MAX - 1)]
    entry = ("", 0, 5, "empty order_id" + "!" * 2000, 0, "", 0)
    assert db.dead_letter([entry, entry]) == (1, 1)
    assert db.dead_letter([entry]) == (0, 1)
    with pytest.raises(TooManyOrders):
        db.dead_letter([entry] * 10_001)
    assert db.counters.dead_letters == 1
    db.close()
    rows = read_dead_letters(tmp_path / "sink.db")
    assert len(rows) == 1 and rows[0]["offset"] == 5 and len(rows[0]["reason"]) == 1024
