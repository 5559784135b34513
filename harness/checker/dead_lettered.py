"""``dead-lettered``: records the pipeline refused as invalid and set aside (poison messages).

The processor sends a record it cannot deliver (undecodable value, empty or too
long order id or account, a balance that would leave the int64 range) to the
sink's ``dead_letters`` table with its partition, offset and reason, and moves
on (nodes/processor/poison.py; Kafka Connect's dead-letter queue). The checker
reads that table and reports every row; the hop is ``broker->sink`` (the record
was in the log; the processor or the sink refused it). Example: a record with
an empty value produced straight to the broker at partition 2 offset 17 is
reported as ``p2@17`` (no order id), reason "empty order_id".

How it counts toward the verdict (harness/checker/verdict.py):

- a dead-lettered record that is *not* a workload order (a poison message from
  outside the workload) is reported and does not break any promise: the promise
  is judged on the workload (``poison`` in the figures);
- a dead-lettered *workload* order was not applied, so it is also ``lost``
  (``workload_orders`` in the figures): a valid order the pipeline set aside IS
  loss; at-least-once and exactly-once report their promise broken.

Figures: ``poison``, ``workload_orders``, ``reasons`` (count per reason, the
first 10 distinct reasons).
"""

from __future__ import annotations

from harness.checker.anomaly import HOP_BROKER_SINK, Anomaly
from harness.checker.inputs import RunData

MAX_REASONS = 10


def ident(row: dict) -> str:
    """The id a dead letter is reported by: its order id, else ``p<partition>@<offset>``."""
    oid = row.get("order_id") or ""
    if oid:
        return oid if len(oid) <= 80 else oid[:80] + "..."
    return f"p{row.get('partition', -1)}@{row.get('offset', -1)}"


def check_dead_lettered(data: RunData) -> Anomaly:
    dead = Anomaly("dead-lettered")
    poison = in_workload = 0
    reasons: dict[str, int] = {}
    for row in getattr(data, "dead_letters", None) or []:
        dead.add(ident(row), HOP_BROKER_SINK)
        if data.in_workload(row.get("order_id")):
            in_workload += 1
        else:
            poison += 1
        reason = str(row.get("reason", ""))[:120]
        if reason in reasons or len(reasons) < MAX_REASONS:
            reasons[reason] = reasons.get(reason, 0) + 1
    if dead.count:
        dead.extra.update(poison=poison, workload_orders=in_workload, reasons=reasons)
    return dead
