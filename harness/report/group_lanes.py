"""A lane per processor on the report's timeline (issue 14): which partitions each consumer-group
member owned, generation by generation, and when it was fenced.

Read from each member's JSON log (``processor/processor.log``, ``processor-K/processor.log``):

- ``"joined group"`` (nodes/processor/membership.py): an ``owns`` interval on the member's
  lane from this join to its next join (or the end of its log), labelled with the member
  id, the generation and the partitions. A zombie's interval runs on while it is stopped:
  the overlap with the new owner's interval is the window fencing protects.
- ``"fenced: ..."``: a ``fenced`` mark (a commit, pre-commit or checkpoint save refused
  as stale: the member found out it was a zombie).

Times are unix seconds (harness/report/timeline.py shifts them). Single-processor runs have
no such lines: nothing is added.
"""

from __future__ import annotations

from pathlib import Path

from harness.history import read_history
from harness.report.faults import Interval, Mark


def member_dirs(mode_dir: Path) -> list[Path]:
    """``processor/`` and every ``processor-K/`` of the run, in member order."""
    dirs = [d for d in Path(mode_dir).glob("processor*") if d.is_dir()
            and (d.name == "processor" or d.name[len("processor-"):].isdigit())]
    return sorted(dirs, key=lambda d: 1 if d.name == "processor" else int(d.name.rsplit("-", 1)[1]))


def read_group(mode_dir: Path) -> tuple[list[Interval], list[Mark]]:
    """(owns intervals, fenced marks) of every member (module doc)."""
    intervals: list[Interval] = []
    marks: list[Mark] = []
    for d in member_dirs(mode_dir):
        recs = [r for r in read_history(d / "processor.log") if "ts" in r] if (d / "processor.log").exists() else []
        joins = [r for r in recs if r.get("msg") == "joined group"]
        if not joins:
            continue
        end = max(r["ts"] for r in recs)
        for k, r in enumerate(joins):
            stop = joins[k + 1]["ts"] if k + 1 < len(joins) else end
            intervals.append(Interval(d.name, "owns", r["ts"], max(stop, r["ts"] + 0.02),
                                      f"{r.get('member_id')} generation {r.get('generation')}: "
                                      f"partitions {r.get('partitions')}"))
        marks += [Mark(d.name, "fenced", r["ts"], f"fenced ({r.get('what', '')}): {r.get('error', '')[:160]}")
                  for r in recs if str(r.get("msg", "")).startswith("fenced")]
    return intervals, marks
