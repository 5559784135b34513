"""harness/bench/broker_call.py: a real broker process and the null server get the same calls,
and the broker's CPU per call and per record are two views of one measured CPU time (the
figures a change to the broker's per-call path is judged by, docs/bench.md)."""

from __future__ import annotations

import asyncio

import pytest

from harness.bench.broker_call import run_broker_call


def test_broker_call_measures_both_processes_over_the_same_calls():
    got = asyncio.run(run_broker_call(events=400, batch_size=4))
    assert got["events"] == 400 and got["batch_size"] == 4
    assert 100 <= got["calls"] <= 400  # 100 batches, each split into 1 to 4 partition calls
    assert got["broker_cpu_us_per_call"] > 0 and got["null_server_cpu_us_per_call"] >= 0
    assert got["broker_cpu_us_per_record"] * got["events"] == \
        pytest.approx(got["broker_cpu_us_per_call"] * got["calls"], rel=0.01)
    assert got["broker_s"] > 0 and got["null_server_s"] > 0
