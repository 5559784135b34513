"""``truncated``: the log ends before offsets the processor had durably consumed (NATS runs).

Input: ``RunData.truncated`` (partition -> (durable position, log end)), from the
processor's final status and the stream dump (harness/checker/inputs.py). The builtin
broker's audit refuses such a run as inconsistent files; a real broker that lost records
it had already served (a power loss with unsynced writes, a corrupt replica elected) does
exactly this, so for NATS it is a finding. Example: partition 1: processor at 267, stream
ends at 259 -> "p1: durable 267 > end 259". The records the stream re-numbered into the
lost range are skipped by a consumer resuming at its committed offset: the ``lost``
family counts them at the broker->sink hop.
"""

from __future__ import annotations

from harness.checker.anomaly import Anomaly
from harness.checker.inputs import RunData


def check_truncated(data: RunData) -> Anomaly:
    out = Anomaly("truncated")
    for p, (durable, end) in sorted(data.truncated.items()):
        out.add(f"p{p}: durable {durable} > end {end}")
    return out
