"""``reordered``: per account (the partition key), orders whose first log
offsets run against workload order. The producer sends one batch at a time
and one request per partition, so any inversion is a real reordering (e.g. a
retried batch landing after a later one)."""

from __future__ import annotations

from harness.checker.anomaly import HOP_PRODUCER_BROKER, Anomaly
from harness.checker.inputs import RunData


def check_order(data: RunData) -> Anomaly:
    reordered = Anomaly("reordered")
    last: dict[str, tuple[int, int]] = {}  # account -> (partition, offset) of the previous order
    for oid, (account, _) in data.workload.items():
        pos = data.log_positions.get(oid)
        if pos is None:
            continue
        prev = last.get(account)
        if prev is not None and prev[0] == pos[0] and pos[1] < prev[1]:
            reordered.add(oid, HOP_PRODUCER_BROKER)
        last[account] = pos if prev is None or pos[1] > prev[1] or prev[0] != pos[0] else prev
    return reordered
