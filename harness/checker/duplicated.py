"""``duplicated``: orders the sink applied more than once.

The hop: ``producer->broker`` when the broker log already holds the order
more than once (a retried batch appended again: no idempotent producer or
dedupe off), ``broker->sink`` when the sink applied one log record more than
once (a replay after a crash, a retried write whose ACK was lost).
``extra_applications`` is the total of (applied count - 1).
"""

from __future__ import annotations

from harness.checker.anomaly import HOP_BROKER_SINK, HOP_PRODUCER_BROKER, Anomaly
from harness.checker.inputs import RunData


def check_duplicated(data: RunData) -> Anomaly:
    dup = Anomaly("duplicated")
    extra = 0
    in_log_twice = 0
    for oid in data.workload:
        n = data.sink_counts.get(oid, 0)
        if n <= 1:
            continue
        copies = data.log_counts.get(oid, 0)
        dup.add(oid, HOP_PRODUCER_BROKER if copies > 1 else HOP_BROKER_SINK)
        extra += n - 1
        in_log_twice += copies > 1
    if dup.count:
        dup.extra["extra_applications"] = extra
    log_dups = sum(1 for oid, c in data.log_counts.items() if c > 1)
    if log_dups:
        dup.extra["duplicated_in_log"] = log_dups
    return dup


def check_unexpected(data: RunData) -> Anomaly:
    """Orders the sink holds that the workload never had (phantoms)."""
    unexpected = Anomaly("unexpected")
    for oid, n in sorted(data.sink_counts.items()):
        if n > 0 and oid not in data.workload:
            unexpected.add(oid)
    return unexpected
