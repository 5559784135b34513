"""The report's timeline and page on handwritten run files (no process): faults
land on the right lane at the right time, rates and latencies come from the
producer history and the sink's apply times, and a partial run still renders."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness.report import ReportError, build_report, write_report
from harness.report.timeline import load_timeline

T0 = 1_800_000_000.0


def _jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _mode_dir(root: Path) -> Path:
    """One mode's files: 100 orders sent in the first second, applied 0.2 s later
    except the 20 sent during a processor kill, applied 1.5 s later."""
    d = root / "at-least-once"
    sends, applied = [], []
    for i in range(100):
        t = T0 + 0.01 * i
        sends.append({"index": i, "time": t, "process": "producer", "incarnation": 1, "type": "invoke",
                      "f": "produce", "value": {"batch": i, "partition": 0, "attempt": 1,
                                                "orders": [f"order-{i:08d}"]}})
        applied.append((f"order-{i:08d}", int((t + (1.5 if 40 <= i < 60 else 0.2)) * 1000)))
    _jsonl(d / "producer" / "history.jsonl", sends)
    (d / "sink").mkdir(parents=True)
    con = sqlite3.connect(d / "sink" / "sink.db")
    con.execute("CREATE TABLE orders(order_id TEXT PRIMARY KEY, account TEXT, amount_cents INTEGER,"
                " applied_count INTEGER, first_applied_ms INTEGER)")
    con.executemany("INSERT INTO orders VALUES (?, 'acct-00', 1, 1, ?)", applied)
    con.commit()
    con.close()
    _jsonl(d / "nemesis.jsonl", [
        {"index": 0, "time": T0 - 0.5, "process": "nemesis", "type": "invoke", "f": "link",
         "value": {"at": 0, "arm": True, "link": "producer-broker", "step": 0,
                   "fault": {"kind": "drop-response", "method": "Produce", "count": 2, "after_calls": 3}}},
        {"index": 1, "time": T0 - 0.49, "process": "nemesis", "type": "ok", "f": "link",
         "value": {"at": 0, "arm": True, "link": "producer-broker", "step": 0, "fault_id": "f1"}},
        {"index": 2, "time": T0 + 0.4, "process": "nemesis", "type": "invoke", "f": "kill",
         "value": {"at": 40, "node": "processor", "down_ms": 500, "step": 1}},
        {"index": 3, "time": T0 + 1.2, "process": "nemesis", "type": "ok", "f": "kill",
         "value": {"at": 40, "node": "processor", "down_ms": 500, "step": 1, "killed_pid": 9}},
        {"index": 4, "time": T0 + 1.3, "process": "nemesis", "type": "invoke", "f": "pause",
         "value": {"at": 90, "node": "broker", "for_ms": 300, "step": 2}},
        {"index": 5, "time": T0 + 1.6, "process": "nemesis", "type": "info", "f": "pause",
         "value": {"at": 90, "node": "broker", "for_ms": 300, "step": 2}, "error": "ProcessLookupError"},
        {"index": 6, "time": T0 + 0.1, "process": "nemesis", "type": "invoke", "f": "failpoint",
         "value": {"at": 10, "node": "sink", "name": "sink.after-pre-commit", "action": "crash", "nth": 2,
                   "step": 3}},
        {"index": 7, "time": T0 + 0.11, "process": "nemesis", "type": "ok", "f": "failpoint",
         "value": {"at": 10, "node": "sink", "name": "sink.after-pre-commit", "step": 3, "armed": "crash"}},
        {"index": 8, "time": T0 + 0.92, "process": "nemesis", "type": "ok", "f": "failpoint-crash",
         "value": {"node": "sink", "pid": 10, "exit_code": -9}},
        {"index": 9, "time": T0 + 1.25, "process": "nemesis", "type": "ok", "f": "failpoint-restart",
         "value": {"node": "sink", "new_pid": 11}},
        {"index": 10, "time": T0 + 2.0, "process": "nemesis", "type": "invoke", "f": "heal", "value": {}},
        {"index": 11, "time": T0 + 2.1, "process": "nemesis", "type": "ok", "f": "heal", "value": {}},
    ])
    _jsonl(d / "proxy-producer-broker" / "faults.jsonl", [
        {"time": T0 - 0.495, "type": "control", "link": "producer-broker", "event": "add", "fault_id": "f1",
         "spec": {"kind": "drop-response", "after_calls": 3}},
        {"time": T0 + 0.05, "type": "fault", "link": "producer-broker", "fault": "drop-response",
         "fault_id": "f1", "call": 4, "action": "dropped-response"},
        {"time": T0 + 2.05, "type": "control", "link": "producer-broker", "event": "heal", "removed": ["f1"]},
    ])
    _jsonl(d / "sink" / "sink.log", [
        {"ts": T0 + 0.11, "level": "INFO", "node": "sink", "msg": "failpoint armed",
         "failpoint": "sink.after-pre-commit", "spec": "crash"},
        {"ts": T0 + 0.9, "level": "WARNING", "node": "sink", "msg": "failpoint fired",
         "failpoint": "sink.after-pre-commit", "action": "crash", "hit": 2, "fired": 1},
        {"ts": T0 + 0.9, "level": "CRITICAL", "node": "sink", "msg": "failpoint crash",
         "failpoint": "sink.after-pre-commit", "pid": 10}])
    return d


def test_faults_land_on_their_lanes_at_their_times(tmp_path):
    tl = load_timeline(_mode_dir(tmp_path))
    assert tl.t0 == pytest.approx(T0 - 0.5)
    by_kind = {i.kind: i for i in tl.intervals}
    kill = by_kind["kill"]
    assert kill.lane == "processor" and kill.start == pytest.approx(0.9) and kill.end == pytest.approx(1.7)
    assert "kill -9 processor (down 500 ms)" == kill.label
    pause = by_kind["pause"]
    assert pause.lane == "broker" and pause.outcome == "info" and "outcome unknown" in pause.label
    link = by_kind["link"]  # armed until the heal, from the proxy's control events
    assert link.lane == "producer-broker" and link.start == pytest.approx(0.005, abs=1e-6)
    assert link.end == pytest.approx(2.55) and "after 3 calls" in link.label
    armed = by_kind["failpoint"]  # armed from the step until its hit
    assert armed.lane == "sink" and armed.start == pytest.approx(0.6) and armed.end == pytest.approx(1.4)
    assert armed.label == "failpoint sink.after-pre-commit armed: crash on hit 2"
    crash = by_kind["crash"]  # down from the crash the harness saw to the restart
    assert crash.lane == "sink" and crash.start == pytest.approx(1.42) and crash.end == pytest.approx(1.75)
    marks = {m.kind: m for m in tl.marks}
    assert marks["fired"].lane == "producer-broker" and marks["fired"].t == pytest.approx(0.55)
    hits = [m for m in tl.marks if m.kind == "failpoint"]  # the "armed" and "crash" lines are not hits
    assert len(hits) == 1 and hits[0].lane == "sink" and hits[0].t == pytest.approx(1.4)
    assert marks["heal"].t == pytest.approx(2.5)
    assert tl.lanes[:4] == ["producer", "broker", "processor", "sink"]


def test_rates_and_latency_follow_the_orders(tmp_path):
    s = load_timeline(_mode_dir(tmp_path)).series
    assert s.latency_kind == "end-to-end"
    # 100 orders over 1 s: the produced rate peaks near 100 events/s in the first second.
    assert 60 <= max(s.produced_eps) <= 110
    # The area under each rate is the number of orders (less what the window's half
    # past the end of the axis cuts off: the last applications are 0.1 s before it).
    dt = s.t[1] - s.t[0]
    assert sum(s.produced_eps) * dt == pytest.approx(100, rel=0.05)
    assert sum(s.applied_eps) * dt == pytest.approx(100, rel=0.1)
    p99 = [v for v in s.p99_ms if v is not None]
    p50 = [v for v in s.p50_ms if v is not None]
    assert max(p99) == pytest.approx(1500, abs=1) and min(p50) == pytest.approx(200, abs=1)


def test_partial_run_renders_and_non_run_is_refused(tmp_path):
    d = _mode_dir(tmp_path)
    (tmp_path / "result.json").write_text(json.dumps({
        "seed": 7, "complete": False, "config": {"events": 100, "disabled": ["broker-dedupe"]},
        "disabled": ["broker-dedupe"], "modes": [],
        "requested_modes": [{"mode": "at-least-once", "sink": None}]}))
    (d / "cluster.json").write_text("{}")
    page = build_report(tmp_path)
    assert 'data-mode="at-least-once"><svg' in page
    assert "failpoint armed" in page and "crash at failpoint" in page  # legend only when used
    assert "interrupted" in page and "incomplete" in page and "not audited" in page
    assert "broker-dedupe" in page and "duplicated" in page  # the ablation and what it lets through
    assert f"./run.sh replay {tmp_path.resolve()}" in page
    path = write_report(tmp_path)
    assert path == tmp_path / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(ReportError):
        build_report(d)
