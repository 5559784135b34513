"""``divergent``: replicas of one partition's stream that disagree after the heal (NATS).

Input: ``RunData.replicas`` (server -> partition -> {messages, first_seq, last_seq}), each
server's own account of each stream replica it hosts, read from its monitoring endpoint
after the drain and the heal (harness/nats_dump.py). A Raft-replicated log whose servers
are all up and caught up holds the same messages on every replica; a partition whose
replicas report different counts or sequence ranges is ``divergent`` (Jepsen's NATS
2.12.1 analysis: a minority's corrupted data file made replicas disagree).

Example: partition 0: nats-1 {messages 500, last_seq 500}, nats-3 {messages 430,
last_seq 500} -> one divergent partition, "p0: nats-1=500/1-500 nats-3=430/1-500".
A server that did not answer is not compared (it is "missing", counted in ``extra``).
Informational for the verdict: what the client reads (the leader's copy) is what the
other families judge.
"""

from __future__ import annotations

from harness.checker.anomaly import Anomaly
from harness.checker.inputs import RunData


def check_divergent(data: RunData) -> Anomaly:
    out = Anomaly("divergent")
    if not data.replicas:
        return out
    partitions = sorted({p for states in data.replicas.values() for p in states}, key=int)
    missing = 0
    for p in partitions:
        seen = {srv: states[p] for srv, states in sorted(data.replicas.items()) if p in states}
        missing += len(data.replicas) - len(seen)
        shapes = {(s.get("messages"), s.get("first_seq"), s.get("last_seq")) for s in seen.values()}
        if len(shapes) > 1:
            desc = " ".join(f"{srv}={s.get('messages')}/{s.get('first_seq')}-{s.get('last_seq')}"
                            for srv, s in seen.items())
            out.add(f"p{p}: {desc}")
    if missing:
        out.extra["replicas_missing"] = missing
    return out
