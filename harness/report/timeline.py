"""One mode's run on one time axis: the faults (:mod:`harness.report.faults`),
throughput and latency.

Rates and latencies come from the files the mode directory keeps (no node is
started): ``producer/history.jsonl``, the first send of each order (produced
rate); ``sink/sink.db`` ``orders.first_applied_ms``, the first application of
each order (applied rate, end-to-end latency). Without apply times the latency
is the produce ACK latency (invoke to ok), as in :func:`harness.metrics.latency_ms`.

Times are seconds since ``t0``, the first record of the run (the nemesis arming
faults, or the producer's first send).
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.history import read_history
from harness.metrics import ack_samples, first_invoke_times, percentile, sink_apply_times
from harness.report.faults import NODES, Interval, Mark, read_faults
from harness.report.group_lanes import read_group

LINKS = ("producer-broker", "processor-broker", "processor-sink")


@dataclass
class Series:
    """Figures over a sliding window of ``width_s`` centred on each ``t`` (s since
    t0): rates in events/s; latency percentiles in ms of the orders applied in
    the window (None where nothing was applied)."""

    t: list[float] = field(default_factory=list)
    width_s: float = 1.0
    produced_eps: list[float] = field(default_factory=list)
    applied_eps: list[float] = field(default_factory=list)
    p50_ms: list[float | None] = field(default_factory=list)
    p99_ms: list[float | None] = field(default_factory=list)
    latency_kind: str = "end-to-end"


@dataclass
class Timeline:
    """One mode's story. ``t0`` is unix seconds; ``end`` is s since t0."""

    t0: float
    end: float
    intervals: list[Interval]
    marks: list[Mark]
    series: Series
    lanes: list[str]


POINTS = 160
"""Samples of the sliding windows over the run."""


def window_width(span_s: float) -> float:
    """The sliding window (s): a twentieth of the run, at least 0.5 s."""
    return max(0.5, span_s / 20)


def _rate(sorted_times: list[float], t: float, w: float) -> float:
    return (bisect_right(sorted_times, t + w / 2) - bisect_left(sorted_times, t - w / 2)) / w


def _series(mode_dir: Path, t0: float, end: float) -> Series:
    """Rates and latency percentiles over a window sliding across the run.

    A batched producer sends in bursts; a sliding window (:func:`window_width`)
    shows the rate a reader can compare across faults instead of spikes."""
    hist = mode_dir / "producer" / "history.jsonl"
    db = mode_dir / "sink" / "sink.db"
    sent = first_invoke_times(hist) if hist.exists() else {}
    applied = sink_apply_times(db) if db.exists() else {}
    w = window_width(end)
    produced = sorted(t - t0 for t in sent.values())
    done: list[tuple[float, float | None]] = sorted(
        (t - t0, max(0.0, (t - sent[o]) * 1000) if o in sent else None) for o, t in applied.items())
    kind = "end-to-end"
    if not applied and hist.exists():
        kind = "produce-ack"
        done.extend((t - t0, ms) for t, ms in ack_samples(hist))
        done.sort()
    done_t = [d[0] for d in done]
    applied_t = done_t if kind == "end-to-end" else []
    s = Series(width_s=w, latency_kind=kind)
    for k in range(POINTS + 1):
        t = end * k / POINTS
        s.t.append(t)
        s.produced_eps.append(_rate(produced, t, w))
        s.applied_eps.append(_rate(applied_t, t, w))
        lo, hi = bisect_left(done_t, t - w / 2), bisect_right(done_t, t + w / 2)
        vals = sorted(d[1] for d in done[lo:hi] if d[1] is not None)
        s.p50_ms.append(percentile(vals, 50))
        s.p99_ms.append(percentile(vals, 99))
    return s


def _all_times(mode_dir: Path) -> list[float]:
    """Producer send and sink apply times (unix s), to bound the time axis."""
    hist = mode_dir / "producer" / "history.jsonl"
    db = mode_dir / "sink" / "sink.db"
    times = list(first_invoke_times(hist).values()) if hist.exists() else []
    if db.exists():
        times.extend(sink_apply_times(db).values())
    return times


def load_timeline(mode_dir: Path) -> Timeline:
    """Read one mode directory into a :class:`Timeline` (missing files give empty parts)."""
    mode_dir = Path(mode_dir)
    intervals, marks = read_faults(mode_dir)
    owns, fenced = read_group(mode_dir)   # a lane per consumer-group member (group_lanes.py)
    intervals, marks = sorted(intervals + owns, key=lambda i: i.start), sorted(marks + fenced, key=lambda m: m.t)
    first = read_history(mode_dir / "nemesis.jsonl")[:1]  # the nemesis starts before the workload
    times = [op["time"] for op in first] + [i.start for i in intervals] + [m.t for m in marks] \
        + _all_times(mode_dir)
    t0 = min(times) if times else 0.0
    end = max([t - t0 for t in times] + [i.end - t0 for i in intervals] + [1.0])
    intervals = [replace(i, start=i.start - t0, end=i.end - t0) for i in intervals]
    marks = [replace(m, t=m.t - t0) for m in marks]
    used = {i.lane for i in intervals} | {m.lane for m in marks}
    lanes = list(NODES + LINKS) + sorted(x for x in used if x not in NODES + LINKS and x != "*")
    return Timeline(t0=t0, end=end, intervals=intervals, marks=marks, series=_series(mode_dir, t0, end),
                    lanes=lanes)


def fault_rows(tl: Timeline) -> list[dict]:
    """The faults as table rows, in time order: {t_s, lane, kind, label, duration_ms, outcome}
    (``kind`` as in :class:`Interval` and :class:`Mark`)."""
    rows = [{"t_s": round(i.start, 2), "lane": i.lane, "kind": i.kind, "label": i.label,
             "duration_ms": round((i.end - i.start) * 1000), "outcome": i.outcome}
            for i in tl.intervals if i.kind != "owns"]
    rows += [{"t_s": round(m.t, 2), "lane": m.lane, "kind": "fired" if m.kind == "fired" else "hit",
              "label": m.label, "duration_ms": None, "outcome": "ok"}
             for m in tl.marks if m.kind in ("fired", "failpoint")]
    return sorted(rows, key=lambda r: r["t_s"])


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None
