"""``reordered``: per account (the partition key), orders whose first log
offsets run against workload order. The producer sends one batch at a time
and one request per partition, so any inversion is a real reordering (e.g. a
retried batch landing after a later one).

Rule, per account in workload order over the orders the log holds: an order is
reordered when its partition is the previous order's and its offset is below the
highest offset seen since the partition last changed (a change starts afresh).
"""

from __future__ import annotations

import numpy as np

from harness.checker.anomaly import EXAMPLES, HOP_PRODUCER_BROKER, Anomaly
from harness.checker.inputs import RunData
from harness.checker.table import OrderTable, first_ids


def check_order(data: RunData, t: OrderTable | None = None) -> Anomaly:
    t = data.order_table() if t is None else t
    rows = np.flatnonzero(t.log_partition >= 0)          # workload order
    rows = rows[np.argsort(t.account[rows], kind="stable")]   # by account, workload order within
    acc, part, off = t.account[rows], t.log_partition[rows], t.log_offset[rows]
    if len(rows) < 2:
        return Anomaly("reordered")
    # a segment = a run of one account on one partition; its running maximum starts afresh
    new_seg = np.ones(len(rows), bool)
    new_seg[1:] = (acc[1:] != acc[:-1]) | (part[1:] != part[:-1])
    seg = np.cumsum(new_seg)
    if off.min() < 0 or off.max() >= 1 << 42:   # not a log this builds (offsets < 4.4e12); rank them
        off = np.unique(off, return_inverse=True)[1].astype(np.int64)
    key = seg.astype(np.int64) * (1 << 42) + off          # offsets < 2**42: segments never mix
    run_max = np.maximum.accumulate(key)
    bad = np.zeros(len(rows), bool)
    bad[1:] = ~new_seg[1:] & (key[1:] < run_max[:-1])
    mask = np.zeros(len(t), bool)
    mask[rows[bad]] = True
    n = int(bad.sum())
    return Anomaly.of("reordered", first_ids(t, mask, EXAMPLES), n, {HOP_PRODUCER_BROKER: n} if n else {})
