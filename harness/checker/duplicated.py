"""``duplicated``: orders the sink applied more than once.

The hop: ``producer->broker`` when the broker log already holds the order
more than once (a retried batch appended again: no idempotent producer or
dedupe off), ``broker->sink`` when the sink applied one log record more than
once (a replay after a crash, a retried write whose ACK was lost); ``producer->sink``
when there is no log to read (MQTT).
``extra_applications`` is the total of (applied count - 1).
"""

from __future__ import annotations

from harness.checker.anomaly import EXAMPLES, HOP_BROKER_SINK, HOP_END_TO_END, HOP_PRODUCER_BROKER, Anomaly
from harness.checker.inputs import RunData
from harness.checker.table import OrderTable, first_ids, hop_counts


def check_duplicated(data: RunData, t: OrderTable | None = None) -> Anomaly:
    t = data.order_table() if t is None else t
    rows = t.sink_count > 1
    n = int(rows.sum())
    by_hop = ({HOP_END_TO_END: n} if n else {}) if not data.log_available else \
        hop_counts(rows, t.log_count > 1, HOP_PRODUCER_BROKER, HOP_BROKER_SINK)
    dup = Anomaly.of("duplicated", first_ids(t, rows, EXAMPLES), n, by_hop)
    if dup.count:
        dup.extra["extra_applications"] = int((t.sink_count[rows] - 1).sum())
    return dup


def check_log_duplicates(data: RunData, t: OrderTable | None = None) -> Anomaly:
    """``duplicated-in-log``: orders the broker log holds more than once (a retried
    batch appended again). Informational: an idempotent sink can still apply such
    an order once, but every downstream consumer sees it twice (the operator state
    counts it twice: ``state-mismatch``)."""
    t = data.order_table() if t is None else t
    rows = t.log_count > 1
    n = int(rows.sum())
    return Anomaly.of("duplicated-in-log", first_ids(t, rows, EXAMPLES), n, {HOP_PRODUCER_BROKER: n} if n else {})


def check_unexpected(data: RunData, t: OrderTable | None = None) -> Anomaly:
    """Orders the sink holds that the workload never had (phantoms)."""
    t = data.order_table() if t is None else t
    unexpected = Anomaly("unexpected")
    for oid, n in sorted(t.sink_other.items()):
        if n > 0:
            unexpected.add(oid)
    return unexpected
