"""``lost`` and ``lost-acknowledged``: workload orders the sink never applied.

The hop says where the order fell out: ``producer->broker`` when no broker
log record holds it (never sent, dropped on the way, or an ACKed append that
did not survive a crash), ``broker->sink`` when the log holds it but the sink
never applied it (offsets committed past it, a dropped write, a lost batch).
"""

from __future__ import annotations

from harness.checker.anomaly import HOP_BROKER_SINK, HOP_END_TO_END, HOP_PRODUCER_BROKER, Anomaly
from harness.checker.inputs import RunData


def check_lost(data: RunData) -> tuple[Anomaly, Anomaly]:
    """Return (lost, lost-acknowledged)."""
    lost = Anomaly("lost")
    lost_ack = Anomaly("lost-acknowledged")
    never_sent = 0
    for oid in data.workload:
        if data.sink_counts.get(oid, 0) > 0:
            continue
        in_log = data.log_counts.get(oid, 0) > 0
        hop = HOP_BROKER_SINK if in_log else HOP_PRODUCER_BROKER
        if not data.log_available:   # MQTT: no log to tell the hop
            hop = HOP_END_TO_END
        lost.add(oid, hop)
        if not in_log and oid not in data.invoked:
            never_sent += 1
        if oid in data.acked:
            lost_ack.add(oid, hop)
    if never_sent:
        lost.extra["never_sent"] = never_sent
    return lost, lost_ack
