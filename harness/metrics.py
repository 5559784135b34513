"""Measurements of a run: throughput, latency percentiles, faults fired."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from harness.history import read_history


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in [0, 100]); None if empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def first_invoke_times(history_path: Path) -> dict[str, float]:
    """order id -> unix seconds of the producer's first send of it."""
    first: dict[str, float] = {}
    with open(history_path, "rb") as f:
        for line in f:
            try:
                op = json.loads(line)
            except ValueError:
                continue
            if op.get("type") == "invoke":
                t = op["time"]
                for oid in (op.get("value") or {}).get("orders") or ():
                    first.setdefault(oid, t)
    return first


def sink_apply_times(db_path: Path) -> dict[str, float]:
    """order id -> unix seconds when the sink first applied it (empty if not recorded)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        cols = {r[1] for r in con.execute("PRAGMA table_info(orders)")}
        if "first_applied_ms" not in cols:
            return {}
        return {oid: ms / 1000 for oid, ms in
                con.execute("SELECT order_id, first_applied_ms FROM orders WHERE first_applied_ms IS NOT NULL")}
    finally:
        con.close()


def ack_samples(history_path: Path) -> list[tuple[float, float]]:
    """(unix seconds of the ok, produce latency in ms) per acknowledged call: invoke to ok."""
    pending: dict[tuple, float] = {}
    out = []
    for op in read_history(history_path):
        v = op.get("value") or {}
        key = (op.get("incarnation"), v.get("batch"), v.get("partition"), v.get("attempt"))
        if op.get("type") == "invoke":
            pending[key] = op["time"]
        elif op.get("type") == "ok" and key in pending:
            out.append((op["time"], (op["time"] - pending.pop(key)) * 1000))
    return out


def ack_latencies_ms(history_path: Path) -> list[float]:
    """Produce latency per acknowledged call: invoke to ok, in ms."""
    return [ms for _, ms in ack_samples(history_path)]


def latency_ms(mode_dir: Path) -> dict:
    """{"kind": "end-to-end" | "produce-ack", "p50": ms, "p99": ms, "samples": n}.

    End to end = the producer's first send of an order to the sink's first
    application of it (a transactional sink applies at commit). Falls back to
    the produce ACK latency when the sink keeps no apply times.
    """
    hist = mode_dir / "producer" / "history.jsonl"
    db = mode_dir / "sink" / "sink.db"
    applied = sink_apply_times(db) if db.exists() else {}
    if applied and hist.exists():
        sent = first_invoke_times(hist)
        values = sorted(max(0.0, (applied[o] - sent[o]) * 1000) for o in applied if o in sent)
        kind = "end-to-end"
    else:
        values = sorted(ack_latencies_ms(hist)) if hist.exists() else []
        kind = "produce-ack"
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return {"kind": kind, "p50": round(p50, 2) if p50 is not None else None,
            "p99": round(p99, 2) if p99 is not None else None, "samples": len(values)}


PROCESS_STEPS = ("kill", "pause", "stop")
"""Nemesis step kinds that act on a node's process (counted as ``process`` faults)."""
DATADIR_STEPS = ("corrupt", "rollback", "wipe")
"""Data-dir faults on a stopped node (harness/nemesis/datadir.py; counted as ``storage``)."""


def faults_fired(mode_dir: Path) -> dict:
    """Faults that actually hit, from the nemesis history (process steps; a step that
    found its node already dead did not hit), the proxies' fault logs (link faults)
    and the nodes' logs (failpoint firings, harness.nemesis.failpoint.fired_in_logs).

    Returns {"total": n, "process": n, "link": n, "failpoint": n, "storage": n,
    "by_kind": {kind: n}}.
    """
    from harness.nemesis.failpoint import fired_in_logs
    by_kind: dict[str, int] = {}
    process = 0
    for op in read_history(mode_dir / "nemesis.jsonl"):
        if op.get("type") == "ok" and op.get("f") in PROCESS_STEPS and not op["value"].get("already_dead"):
            process += 1
            k = f"{op['f']}-{op['value'].get('node')}"
            by_kind[k] = by_kind.get(k, 0) + 1
    link = 0
    for log in sorted(mode_dir.glob("proxy-*/faults.jsonl")):
        for ev in read_history(log):
            if ev.get("type") == "control" or ev.get("follow_up"):
                continue  # follow-ups say what became of a held call; not a firing
            kind = ev.get("fault")
            if kind:
                link += 1
                k = f"{kind}@{ev.get('link')}"
                by_kind[k] = by_kind.get(k, 0) + 1
    failpoint = 0
    for ev in fired_in_logs(mode_dir):
        failpoint += 1
        k = f"{ev.get('action')}@{ev.get('failpoint')}"
        by_kind[k] = by_kind.get(k, 0) + 1
    storage = 0
    for op in read_history(mode_dir / "nemesis.jsonl"):
        if op.get("type") == "ok" and op.get("f") == "power-loss":
            storage += 1
            k = "power-loss-" + "+".join(op["value"].get("nodes", {}))
            by_kind[k] = by_kind.get(k, 0) + 1
        elif op.get("type") == "ok" and op.get("f") in DATADIR_STEPS:
            storage += 1
            k = f"{op['f']}-{op['value'].get('node', '?')}"
            by_kind[k] = by_kind.get(k, 0) + 1
    for log in sorted(mode_dir.glob("*.lazyfs/faults.jsonl")):  # fsync errors, ENOSPC (lazy storage)
        node = log.parent.name.removesuffix(".lazyfs")
        for ev in read_history(log):
            if ev.get("fault") in ("fsync-error", "disk-full"):
                storage += 1
                k = f"{ev['fault']}@{node}"
                by_kind[k] = by_kind.get(k, 0) + 1
    return {"total": process + link + failpoint + storage, "process": process, "link": link,
            "failpoint": failpoint, "storage": storage, "by_kind": by_kind}
