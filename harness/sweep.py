"""The crash-point sweep: ``crash`` at every failpoint in turn, recover, audit.

For one exactly-once sink strategy, a *calibration* run arms every failpoint
the strategy reaches with the ``count`` action and learns how often each is
hit in a fault-free run. Then, for each failpoint and for its 1st, a middle
and a late hit (three quarters in), a fresh cluster runs the workload with that one crash
armed before the workload (a logical trigger: "the Nth hit"); the failpoint
nemesis restarts the crashed node, the pipeline drains and the checker
audits. Every cell must be ``held`` (the idea of a crash-point sweep as in
FoundationDB's and TiKV's failpoint tests). A cell whose crash never fired
(no "failpoint fired" line for it in the nodes' logs) is ``did-not-fire``,
never ``held``; a failpoint listed for the strategy that the calibration run
never reached is named in ``unreachable`` and fails the sweep; a calibration
whose hit counts could not be listed is an error.

Checkpoints are made record-driven (``--checkpoint-records``, with a long
``--checkpoint-ms``) so that the hit counts of the checkpoint and 2PC points
are the same in every run of a seed.

Layout: ``<run dir>/calibration/<mode-dir>/...`` and
``<run dir>/<failpoint>@<nth>/<mode-dir>/...``, plus ``sweep.json``
({mode, sink, events, hits: {failpoint: n}, unreachable: [failpoint],
cells: [{failpoint, which, nth, verdict, fired, dir, ...}], all_held, ok}).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from harness.campaign import CampaignConfig, ModeSpec, run_mode
from harness.cluster import ClusterConfig, DrainTimeout
from harness.history import read_history
from harness.nemesis.failpoint import fired_in_logs
from nodes.common.modes import EXACTLY_ONCE, SINK_IDEMPOTENT, SINK_TRANSACTIONAL

BROKER_POINTS = ("broker.before-append", "broker.after-dedupe-record-before-append",
                 "broker.after-append-before-fsync", "broker.after-fsync-before-ack",
                 "broker.before-offset-commit")
PRODUCER_POINTS = ("producer.after-send-before-ack", "producer.after-ack-before-persist")
SWEEP_POINTS = {
    SINK_IDEMPOTENT: PRODUCER_POINTS + ("processor.before-checkpoint", "sink.before-upsert",
                                        "sink.after-upsert-before-reply") + BROKER_POINTS,
    SINK_TRANSACTIONAL: PRODUCER_POINTS + (
        "processor.before-checkpoint", "processor.after-precommit-before-checkpoint",
        "processor.after-checkpoint-before-commit", "processor.after-sink-commit",
        "sink.before-precommit", "sink.after-pre-commit", "sink.before-commit",
        "sink.after-commit-before-reply") + BROKER_POINTS,
}
"""The failpoints an exactly-once run reaches, per sink strategy, with a hit count that
repeats from run to run of a seed. Left out although reached (REACHABLE_POINTS):
``broker.before-fetch-reply`` (how many Fetch replies carry records depends on timing, so a
middle or last hit may never come) and ``broker.after-offset-commit-before-reply`` (the
same step as ``broker.before-offset-commit`` seen from the processor: an informational
commit). ``sink.before-abort`` is reached only when a recovery aborts a stale prepared
transaction, never in a fault-free calibration run."""

REACHABLE_POINTS = {
    "at-most-once": ("producer.after-persist-before-send", "producer.after-send-before-ack",
                     "broker.before-append", "broker.after-append-before-fsync",
                     "broker.before-offset-commit", "broker.after-offset-commit-before-reply",
                     "broker.before-fetch-reply", "processor.after-fetch-before-sink",
                     "processor.after-offset-commit-before-sink", "sink.before-apply",
                     "sink.after-apply-before-reply"),
    "at-least-once": ("producer.after-send-before-ack", "producer.after-ack-before-persist",
                      "broker.before-append", "broker.after-append-before-fsync",
                      "broker.after-fsync-before-ack", "broker.before-offset-commit",
                      "broker.after-offset-commit-before-reply", "broker.before-fetch-reply",
                      "processor.after-fetch-before-sink", "processor.after-sink-ack-before-offset-commit",
                      "sink.before-apply", "sink.after-apply-before-reply"),
    "exactly-once/idempotent": SWEEP_POINTS[SINK_IDEMPOTENT] + (
        "broker.after-offset-commit-before-reply", "broker.before-fetch-reply"),
    "exactly-once/transactional": SWEEP_POINTS[SINK_TRANSACTIONAL] + (
        "broker.after-offset-commit-before-reply", "broker.before-fetch-reply"),
}
"""Mode label -> the failpoints a fault-free run of that mode reaches (the sweep crashes
exactly-once's; tests/test_failpoint_steps.py checks this table against real runs)."""
WHICH = ("first", "middle", "late")
DID_NOT_FIRE = "did-not-fire"
"""The verdict of a cell whose crash never fired: it proves nothing, so it is never ``held``."""


def node_of(failpoint: str) -> str:
    return failpoint.split(".", 1)[0]


def crash_step(failpoint: str, nth: int, down_ms: int = 300) -> dict:
    return {"at": 0, "arm": True, "f": "failpoint", "node": node_of(failpoint), "name": failpoint,
            "action": "crash", "nth": nth, "count": 1, "down_ms": down_ms}


def hit_numbers(total: int) -> dict[str, int]:
    """{"first": 1, "middle": total // 2, "late": total - total // 4} (fewer when total is small).

    Not the very last hit: how records group into fetches and sink batches still
    depends on timing, so a run can reach a point a few times less often than the
    calibration run did, and a cell aimed at the last hit would not fire
    (``did-not-fire``). Three quarters in is reached in every run seen so far.
    """
    if total <= 0:
        return {}
    out = {"first": 1, "middle": max(1, (total + 1) // 2), "late": max(1, total - total // 4)}
    seen, uniq = set(), {}
    for k, v in out.items():
        if v not in seen:
            seen.add(v)
            uniq[k] = v
    return uniq


def base_config(sink: str, events: int, seed: int, checkpoint_records: int,
                external: dict[str, str] | None = None) -> ClusterConfig:
    extra = {} if "processor" in (external or {}) else {"processor": [
        "--checkpoint-records", str(checkpoint_records), "--checkpoint-ms", "5000"]}
    return ClusterConfig(mode=EXACTLY_ONCE, sink_strategy=sink, seed=seed, events=events, rate=1000.0,
                         batch_size=100, extra_args=extra, external=dict(external or {}))


ProgressFn = Callable[[str, str], None]


async def _run_one(base: ClusterConfig, steps: list[dict], run_dir: Path, drain_timeout_s: float,
                   progress: ProgressFn) -> tuple[dict, Path]:
    spec = ModeSpec(EXACTLY_ONCE, base.sink_strategy)
    cfg = CampaignConfig(modes=[spec], base=base, schedule={"seed": base.seed, "events": base.events,
                                                           "steps": steps},
                         drain_timeout_s=drain_timeout_s)
    run_dir.mkdir(parents=True, exist_ok=True)
    mode_dir = run_dir / spec.dirname
    try:
        entry = await run_mode(spec, cfg, run_dir, progress)
    except DrainTimeout as e:
        entry = {"verdict": "stalled", "reasons": [str(e)], "lost": None, "duplicated": None}
    return entry, mode_dir


async def calibrate(points: tuple[str, ...], base: ClusterConfig, run_dir: Path,
                    progress: ProgressFn = lambda *_: None) -> dict[str, int]:
    """A fault-free run with every point armed as ``count``; return {failpoint: hits}."""
    steps = [{"at": 0, "arm": True, "f": "failpoint", "node": node_of(p), "name": p, "action": "count"}
             for p in points]
    entry, mode_dir = await _run_one(base, steps, run_dir / "calibration", 60.0, progress)
    hits: dict[str, int] = {p: 0 for p in points}
    for op in read_history(mode_dir / "nemesis.jsonl"):
        if op.get("f") == "failpoint-hits" and op.get("type") != "ok":
            raise RuntimeError(f"calibration: could not list the failpoint hits ({op.get('error')}); "
                               f"see {mode_dir}")
        if op.get("f") == "failpoint-hits":
            for per_node in op["value"].values():
                hits.update({k: int(v) for k, v in per_node.items() if k in hits})
    if entry["verdict"] != "held":
        raise RuntimeError(f"calibration run not held ({entry['verdict']}: {entry.get('reasons')}); "
                           f"see {mode_dir}")
    return hits


async def run_cell(base: ClusterConfig, point: str, nth: int, cell_dir: Path, drain_timeout_s: float = 60.0,
                   progress: ProgressFn = lambda *_: None) -> dict:
    """One cell of the sweep: a fresh cluster with a crash at ``point``'s ``nth`` hit, audited.
    Running it again with the same ``base`` replays it (tests/test_exact_replay.py).

    Returns {failpoint, nth, verdict (``did-not-fire`` if the crash never fired),
    audit_verdict, fired, lost, duplicated, anomalies: {name: count}, reasons, dir}.
    """
    entry, mode_dir = await _run_one(base, [crash_step(point, nth)], cell_dir, drain_timeout_s, progress)
    fired = sum(1 for f in fired_in_logs(mode_dir) if f["failpoint"] == point)
    return {"failpoint": point, "nth": nth, "verdict": entry["verdict"] if fired else DID_NOT_FIRE,
            "audit_verdict": entry["verdict"], "fired": fired, "lost": entry.get("lost"),
            "duplicated": entry.get("duplicated"),
            "anomalies": {n: a.get("count", 0) for n, a in (entry.get("anomalies") or {}).items() if a.get("count")},
            "reasons": entry.get("reasons"), "dir": str(mode_dir)}


async def run_sweep(run_dir: Path, *, sink: str = SINK_IDEMPOTENT, events: int = 1500, seed: int = 1,
                    checkpoint_records: int = 250, points: tuple[str, ...] | None = None,
                    which: tuple[str, ...] = WHICH, drain_timeout_s: float = 60.0,
                    progress: ProgressFn = lambda *_: None, external: dict[str, str] | None = None) -> dict:
    """Calibrate, then crash at each (failpoint, hit) and audit; write and return sweep.json.

    Raises:
        harness.process.NodeStartError: a node did not start.
        RuntimeError: the calibration run itself was not held.
    """
    points = tuple(points or SWEEP_POINTS[sink])
    base = base_config(sink, events, seed, checkpoint_records, external)
    hits = await calibrate(points, base, run_dir, progress)
    unreachable = [p for p in points if hits.get(p, 0) == 0]
    result = {"mode": EXACTLY_ONCE, "sink": sink, "events": events, "seed": seed, "hits": hits,
              "external_nodes": dict(external or {}),
              "unreachable": unreachable, "cells": [], "complete": False}
    path = run_dir / "sweep.json"
    for point in points:
        for w, nth in hit_numbers(hits[point]).items():
            if w not in which:
                continue
            progress(f"{point}@{nth}", f"crash at the {w} hit")
            cell = await run_cell(base, point, nth, run_dir / f"{point}@{nth}", drain_timeout_s, progress)
            result["cells"].append({"failpoint": point, "which": w} | {k: v for k, v in cell.items()
                                                                      if k != "failpoint"})
            path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    result["complete"] = True
    result["all_held"] = all(c["verdict"] == "held" for c in result["cells"])
    result["ok"] = result["all_held"] and not unreachable
    path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    return result
