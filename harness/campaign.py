"""A fault campaign: for each mode, a fresh cluster, the workload under the
fault schedule, a bounded drain with the faults still armed, the final heal,
a bounded drain, then the checker.

Layout of ``runs/<id>/`` (documented in the README, "Files of a run"):
``schedule.json``, ``result.json``, and one directory per mode
(``at-most-once/``, ``at-least-once/``, ``exactly-once-idempotent/``,
``exactly-once-transactional/``) holding the nodes' data dirs,
``cluster.json``, ``nemesis.jsonl`` and ``check.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from harness import interrupt
from harness.checker import check, load_run
from harness.cluster import Cluster, ClusterConfig, lag
from harness.external_report import describe, external_notes, record_final_state, unreachable_steps
from harness.history import HistoryWriter
from harness.metrics import faults_fired, latency_ms
from harness.scheduler import ScheduleRunner
from harness.storage_watch import storage_guard
from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SINK_IDEMPOTENT, SINK_TRANSACTIONAL

ALL_MODES = (AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE)


@dataclass(frozen=True)
class ModeSpec:
    mode: str
    sink: str | None = None

    @property
    def label(self) -> str:
        return f"{self.mode}/{self.sink}" if self.sink else self.mode

    @property
    def dirname(self) -> str:
        return f"{self.mode}-{self.sink}" if self.sink else self.mode


def expand_modes(mode: str, sink: str) -> list[ModeSpec]:
    """``--mode all --sink both`` -> the four (mode, sink) pairs, in the seed's order."""
    modes = ALL_MODES if mode == "all" else (mode,)
    sinks = (SINK_IDEMPOTENT, SINK_TRANSACTIONAL) if sink == "both" else (sink,)
    out = []
    for m in modes:
        if m == EXACTLY_ONCE:
            out.extend(ModeSpec(m, s) for s in sinks)
        else:
            out.append(ModeSpec(m))
    return out


@dataclass
class CampaignConfig:
    """What a campaign runs. ``base`` is the cluster config shared by every mode."""

    modes: list[ModeSpec]
    base: ClusterConfig
    schedule: dict
    drain_timeout_s: float = 60.0
    stuck_s: float = 10.0
    """Before the final heal: give up waiting for the drain with faults armed once
    nothing moved for this long (longer than a checkpoint interval)."""
    extra: dict = field(default_factory=dict)


ProgressFn = Callable[[str, str], None]
"""progress(mode label, message)"""


def unexpected_exits(mode_dir: Path) -> list[str]:
    """Nodes the final heal found dead although no fault step had killed them, each with
    the last line the node wrote to its stderr.log (a refusal to start says why there)."""
    from harness.history import read_history
    notes = []
    for op in read_history(mode_dir / "nemesis.jsonl"):
        if op.get("f") == "node-exited" and op.get("type") == "info":
            node = op["value"]["node"]
            last = last_log_line(mode_dir / str(node) / "stderr.log")
            notes.append(f"{node} (pid {op['value'].get('pid')}) exited on its own (code "
                         f"{op['value']['exit_code']}); no fault step caused it"
                         + (f"; its last words: {last!r}" if last else "") + f"; see {node}/stderr.log")
    return notes


def last_log_line(path: Path, limit: int = 200) -> str | None:
    """The last non-empty line of a node's log (at most ``limit`` characters), or None."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1][:limit] if lines else None


def held_by_a_fault(mode_dir: Path) -> list[str]:
    """The drain that could not finish while the faults were armed (the heal let it go on)."""
    from harness.history import read_history
    return [op["error"].replace("; healing", "; drained only after the final heal")
            for op in read_history(mode_dir / "nemesis.jsonl")
            if op.get("f") == "drain" and op.get("type") == "info" and op.get("error")]


async def run_mode(spec: ModeSpec, cfg: CampaignConfig, run_dir: Path,
                   progress: ProgressFn = lambda *_: None) -> dict:
    """Run one mode end to end and return its result.json entry.

    Raises:
        harness.process.NodeStartError: a node did not start.
        harness.cluster.DrainTimeout: the pipeline did not drain in time (the
            cluster is stopped and the partial data kept).
    """
    mode_dir = run_dir / spec.dirname
    config = replace(cfg.base, mode=spec.mode, sink_strategy=spec.sink)
    cluster = Cluster(config, mode_dir)
    mode_dir.mkdir(parents=True, exist_ok=True)
    history = HistoryWriter(mode_dir / "nemesis.jsonl", "nemesis")
    runner = ScheduleRunner(cluster, cfg.schedule, history)
    try:
        progress(spec.label, "starting cluster")
        # Link faults are armed as soon as the proxies run, before the processor's first call.
        await cluster.start(start_producer=False, links_up=runner.arm)
        await runner.arm()
        t0 = time.time()
        await cluster.start_producer()
        await runner.arm(final=True)
        progress(spec.label, f"workload running, {len(runner.steps)} fault steps scheduled")
        await runner.run()
        # Faults stay armed until the pipeline has drained (a fault aimed at a late
        # processor or sink step must get its chance); the heal comes after.
        progress(spec.label, "draining (faults still armed)")
        drained, last = await cluster.wait_drained_or_stuck(cfg.drain_timeout_s, cfg.stuck_s)
        if not drained:
            why = f"pipeline not drained with the faults armed (no progress for {cfg.stuck_s:.0f} s " \
                  f"or {cfg.drain_timeout_s:.0f} s passed): {lag(last)}; healing"
            history.record("info", "drain", {"armed": True}, error=why)
            progress(spec.label, why)
        progress(spec.label, "healing every fault")
        await runner.heal()
        if not drained:
            progress(spec.label, "draining")
            await cluster.wait_drained(cfg.drain_timeout_s)
        elapsed = time.time() - t0
        await record_final_state(cluster, mode_dir)   # Status (or committed offsets), external sink's Snapshot
    finally:
        await runner.cancel_steps()
        await cluster.stop()
        history.close()
    progress(spec.label, "auditing")
    report = check(load_run(mode_dir))
    (mode_dir / "check.json").write_text(json.dumps(report.to_json(), indent=1, allow_nan=False) + "\n")
    lat = latency_ms(mode_dir)
    fired = faults_fired(mode_dir)
    entry = {"mode": spec.mode, "sink": spec.sink, "dir": spec.dirname,
             "events": report.events, "acked": report.acked,
             "lost": report.count("lost"), "lost_acknowledged": report.count("lost-acknowledged"),
             "duplicated": report.count("duplicated"), "balance_ok": report.balance_ok,
             "verdict": report.verdict, "reasons": report.reasons,
             "throughput_eps": round(report.events / elapsed, 1) if elapsed > 0 else None,
             "latency_p50_ms": lat["p50"], "latency_p99_ms": lat["p99"], "latency_kind": lat["kind"],
             "faults_fired": fired["total"], "faults": fired["by_kind"],
             "elapsed_s": round(elapsed, 2),
             "anomalies": {n: a.to_json() for n, a in report.anomalies.items() if a.count},
             "notes": unexpected_exits(mode_dir) + held_by_a_fault(mode_dir) + external_notes(config)
             + unreachable_steps(mode_dir) + [r for r in report.reasons if " not checked:" in r]}
    if config.external:
        entry["external"] = describe(config.external)
    progress(spec.label, f"verdict {report.verdict}")
    return entry


def write_result(run_dir: Path, cfg: CampaignConfig, entries: list[dict], *, complete: bool) -> dict:
    """Write ``result.json`` (also after each mode, so an interrupted run stays readable)."""
    result = {"seed": cfg.base.seed, "complete": complete,
              "config": asdict(cfg.base) | {"drain_timeout_s": cfg.drain_timeout_s},
              "requested_modes": [asdict(m) for m in cfg.modes],
              "disabled": list(cfg.base.disabled), "modes": entries}
    if cfg.base.external:
        result["external_nodes"] = describe(cfg.base.external)
    result.update(cfg.extra)
    (run_dir / "result.json").write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    return result


async def run_campaign(cfg: CampaignConfig, run_dir: Path, progress: ProgressFn = lambda *_: None) -> dict:
    """Run every mode in turn; return the result (also written to result.json).

    Raises:
        harness.storage_watch.StorageFailure: a node stopped on a full disk or an I/O
            error (result.json stays ``"complete": false`` with the modes done so far).
    """
    entries: list[dict] = []
    write_result(run_dir, cfg, entries, complete=False)
    for spec in cfg.modes:
        interrupt.check()
        async with storage_guard():  # a node's ENOSPC / EIO ends the campaign (StorageFailure)
            entries.append(await run_mode(spec, cfg, run_dir, progress))
        write_result(run_dir, cfg, entries, complete=False)
    return write_result(run_dir, cfg, entries, complete=True)
