"""``lost`` and ``lost-acknowledged``: workload orders the sink never applied.

The hop says where the order fell out: ``producer->broker`` when no broker
log record holds it (never sent, dropped on the way, or an ACKed append that
did not survive a crash), ``broker->sink`` when the log holds it but the sink
never applied it (offsets committed past it, a dropped write, a lost batch).
"""

from __future__ import annotations

from harness.checker.anomaly import EXAMPLES, HOP_BROKER_SINK, HOP_END_TO_END, HOP_PRODUCER_BROKER, Anomaly
from harness.checker.inputs import RunData
from harness.checker.table import OrderTable, first_ids, hop_counts


def check_lost(data: RunData, t: OrderTable | None = None) -> tuple[Anomaly, Anomaly]:
    """Return (lost, lost-acknowledged)."""
    t = data.order_table() if t is None else t
    lost_rows = t.sink_count <= 0
    in_log = t.log_count > 0
    lost = Anomaly.of("lost", first_ids(t, lost_rows, EXAMPLES), int(lost_rows.sum()),
                      hops(data, lost_rows, in_log))
    never_sent = int((lost_rows & ~in_log & ~t.invoked).sum())
    if never_sent:
        lost.extra["never_sent"] = never_sent
    ack_rows = lost_rows & t.acked
    lost_ack = Anomaly.of("lost-acknowledged", first_ids(t, ack_rows, EXAMPLES), int(ack_rows.sum()),
                          hops(data, ack_rows, in_log))
    return lost, lost_ack


def hops(data: RunData, rows, in_log) -> dict[str, int]:
    """{hop: count} of ``rows``: broker->sink for an order the log holds, producer->broker
    for one it does not; producer->sink when there is no log to tell (MQTT)."""
    if not data.log_available:
        n = int(rows.sum())
        return {HOP_END_TO_END: n} if n else {}
    return hop_counts(rows, in_log, HOP_BROKER_SINK, HOP_PRODUCER_BROKER)
