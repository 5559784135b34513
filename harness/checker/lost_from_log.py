"""``lost-from-log``: acknowledged orders the log no longer holds after the heal.

Jepsen's question for a queue: did the system keep every write it acknowledged? The
``lost`` family answers end to end (never applied at the sink); an order the sink applied
*before* the broker lost it is not lost there, yet the broker broke its promise. This family
counts every order of an acknowledged batch (history ``ok``) that no partition of the log
holds after the heal, whatever the sink did with it. Example: a coordinated power loss of
every NATS server with JetStream's default two-minute fsync: orders 0..999 were
acknowledged and processed, the streams came back empty -> 1000 lost-from-log.

Not counted for NATS at-most-once: its ``ok`` is a core publish flushed to the socket, not
a JetStream ACK (nodes/logclient/nats.py). Informational for the verdict (the delivery
promise is judged at the sink); printed under the table.
"""

from __future__ import annotations

from harness.checker.anomaly import EXAMPLES, HOP_PRODUCER_BROKER, Anomaly
from harness.checker.inputs import RunData
from harness.checker.table import OrderTable, first_ids


def check_lost_from_log(data: RunData, t: OrderTable | None = None) -> Anomaly:
    if not data.log_available or (data.broker == "nats" and data.mode == "at-most-once"):
        return Anomaly("lost-from-log")
    t = data.order_table() if t is None else t
    rows = t.acked & (t.log_count == 0)
    n = int(rows.sum())
    return Anomaly.of("lost-from-log", first_ids(t, rows, EXAMPLES), n, {HOP_PRODUCER_BROKER: n} if n else {})
