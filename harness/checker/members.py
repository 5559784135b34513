"""Consumer groups in the audit (issue 14): which member applied each order, when partitions moved.

Read from the sink's database (nodes/sink/partitions.py), only for runs with several
processors (the tables are empty otherwise and this returns None):

- ``order_applications``: one row per application of an order by a group member. An
  order applied more than once by two different owners (member id @ generation) is the
  zombie's signature: a member wrote for a partition after it moved, or its stale
  checkpoint made a later owner replay what was already applied.
- ``group_events``: each ``fence`` (a member claiming a partition for its generation,
  naming the previous owner), each checkpoint that changed owner, each refusal of a
  zombie's call (FENCED), each prepared transaction a fence aborted.

The facts are informational: the anomalies themselves (``duplicated``...) are counted by
their own families; this says who did it. Example::

    {"applied_by": {"processor-1": 412, "processor-2-2": 641},
     "duplicated_across_owners": 47,
     "examples": [{"order_id": "order-00000323", "members": ["processor-2-2@3", "processor-1@2"]}],
     "moves": [{"t": 1796..., "partition": 0, "to": "processor-2-2", "epoch": 3, "from": "processor-1 epoch 2"}],
     "refused": 1, "aborted_by_fence": 0}
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

MAX_EXAMPLES = 20


def group_facts(db: Path) -> dict | None:
    """The group facts of ``db`` (sink.db), or None for a run without group members
    (or a database without the tables: an external sink, an older run)."""
    if not Path(db).exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        apps = con.execute("SELECT order_id, member_id, epoch FROM order_applications "
                           "ORDER BY rowid").fetchall()
        events = con.execute("SELECT time_ms, event, partition, epoch, member_id, detail FROM group_events "
                             "ORDER BY seq").fetchall()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    if not apps and not events:
        return None
    by_order: dict[str, list[str]] = defaultdict(list)
    for order_id, member, epoch in apps:
        by_order[order_id].append(f"{member}@{epoch}")
    across = {o: ms for o, ms in by_order.items() if len(ms) > 1 and len(set(ms)) > 1}
    return {
        "applied_by": dict(sorted(Counter(m for _, m, _ in apps).items())),
        "duplicated_across_owners": len(across),
        "examples": [{"order_id": o, "members": across[o]} for o in sorted(across)[:MAX_EXAMPLES]],
        "moves": [{"t": t / 1000, "partition": p, "to": m, "epoch": e, "from": d}
                  for t, ev, p, e, m, d in events if ev == "fence"],
        "refused": sum(1 for e in events if e[1] == "refused"),
        "aborted_by_fence": sum(1 for e in events if e[1] == "aborted-by-fence"),
    }
