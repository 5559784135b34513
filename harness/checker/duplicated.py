"""``duplicated``: orders the sink applied more than once.

The hop: ``producer->broker`` when the broker log already holds the order
more than once (a retried batch appended again: no idempotent producer or
dedupe off), ``broker->sink`` when the sink applied one log record more than
once (a replay after a crash, a retried write whose ACK was lost); ``producer->sink``
when there is no log to read (MQTT).
``extra_applications`` is the total of (applied count - 1).
"""

from __future__ import annotations

from harness.checker.anomaly import HOP_BROKER_SINK, HOP_END_TO_END, HOP_PRODUCER_BROKER, Anomaly
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
        dup.add(oid, HOP_END_TO_END if not data.log_available
                else HOP_PRODUCER_BROKER if copies > 1 else HOP_BROKER_SINK)
        extra += n - 1
        in_log_twice += copies > 1
    if dup.count:
        dup.extra["extra_applications"] = extra
    return dup


def check_log_duplicates(data: RunData) -> Anomaly:
    """``duplicated-in-log``: orders the broker log holds more than once (a retried
    batch appended again). Informational: an idempotent sink can still apply such
    an order once, but every downstream consumer sees it twice (the operator state
    counts it twice: ``state-mismatch``)."""
    log_dup = Anomaly("duplicated-in-log")
    for oid in data.workload:
        if data.log_counts.get(oid, 0) > 1:
            log_dup.add(oid, HOP_PRODUCER_BROKER)
    return log_dup


def check_unexpected(data: RunData) -> Anomaly:
    """Orders the sink holds that the workload never had (phantoms)."""
    unexpected = Anomaly("unexpected")
    for oid, n in sorted(data.sink_counts.items()):
        if n > 0 and oid not in data.workload:
            unexpected.add(oid)
    return unexpected
