"""Run every part of the benchmark in one go and write ``bench.json``.

Order: baseline, proxy (CPU per forwarded call), pipeline (every mode x links x batch size, ``repeats`` rounds
interleaved so that a noisy minute hits every configuration alike; the median
of the rounds is the figure), node memory as events grow, recovery (broker
log, processor, sink), audit, campaign rate, detect (time to catch each
ablation with its targeted scenario). ``bench.json`` is rewritten
after every part, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from harness.bench.audit import build_audit_run, run_audit
from harness.bench.baseline import run_baseline
from harness.bench.campaign_rate import run_campaign_rate
from harness.bench.detect import run_detect
from harness.bench.pipeline import run_pipeline
from harness.bench.proxy_cost import run_proxy_cost
from harness.bench.recovery import broker_recovery, node_recovery
from harness.proxy_process import fast_path_enabled

PARTS = ("baseline", "proxy", "pipeline", "memory", "recovery", "audit", "campaign", "detect", "brokers")
"""Every part; "brokers" (harness/bench/brokers.py) runs when named or with --broker."""
ALL_MODES = ("at-most-once", "at-least-once", "exactly-once/idempotent", "exactly-once/transactional")


@dataclass
class BenchConfig:
    """What to measure. Sizes are events (orders) or records; times are seconds."""

    events: int = 20_000
    min_batches: int = 50
    """A pipeline run sends at least this many producer batches (events = max(events,
    min_batches x batch size)): 20,000 orders at batch 1000 are 20 batches, a 0.3-0.5 s run
    whose figure is mostly the pipeline's fill and drain. 0: exactly ``events``."""
    batch_sizes: list[int] = field(default_factory=lambda: [100, 1000])
    modes: list[str] = field(default_factory=lambda: list(ALL_MODES))
    links: list[str] = field(default_factory=lambda: ["direct", "proxies"])
    proxy_modes: list[str] | None = None   # modes also run through the proxies (None: every mode)
    repeats: int = 3
    memory_events: list[int] = field(default_factory=lambda: [10_000, 100_000])
    log_records: int = 1_000_000
    recovery_events: int = 10_000
    audit_events: int = 1_000_000
    campaign_events: int = 3000
    campaign_kills: int = 8
    campaign_rate: float = 1000.0
    restart_repeats: int = 3
    proxy_events: int = 40_000
    detect: list[str] | None = None    # ablations timed by the detect part (None: every one)
    seed: int = 1
    preset: str = "full"   # "quick" for --quick (its elapsed time is a target)
    parts: list[str] = field(default_factory=lambda: [p for p in PARTS if p != "brokers"])
    keep_data: bool = False
    brokers: list[str] = field(default_factory=lambda: ["builtin", "nats"])
    """The brokers of the "brokers" part, side by side."""
    broker_modes: list[str] = field(default_factory=lambda: ["at-least-once", "exactly-once/idempotent"])

    @classmethod
    def quick(cls, **overrides) -> "BenchConfig":
        """The ``--quick`` preset: every part, small sizes, under a minute on 2 cores."""
        base = dict(events=3000, min_batches=0, batch_sizes=[100, 500], links=["direct", "proxies"], repeats=1,
                    proxy_modes=["at-least-once"], memory_events=[], log_records=100_000,
                    recovery_events=2000, audit_events=100_000, campaign_events=1500, campaign_kills=3,
                    restart_repeats=1, proxy_events=10_000, detect=["producer-retry"], preset="quick",
                    broker_modes=["at-least-once"])
        base.update(overrides)
        return cls(**base)


def pipeline_events(cfg: BenchConfig, batch_size: int) -> int:
    """Orders of one pipeline run at ``batch_size``: ``events``, raised to ``min_batches``
    whole batches."""
    return max(cfg.events, cfg.min_batches * batch_size)


def split_mode(label: str) -> tuple[str, str | None]:
    mode, _, sink = label.partition("/")
    return mode, sink or None


def _median_run(runs: list[dict]) -> dict:
    """The run with the median end-to-end events/s, plus every round's figure."""
    ok = sorted((r for r in runs if r.get("events_per_s")), key=lambda r: r["events_per_s"])
    pick = dict(ok[len(ok) // 2] if ok else runs[0])
    pick["rounds_events_per_s"] = [r.get("events_per_s") for r in runs]
    return pick


async def run_bench(cfg: BenchConfig, run_dir: Path, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Run the parts named in ``cfg.parts`` under ``run_dir``; return (and write) bench.json's content."""
    result: dict = {"config": asdict(cfg), "run_dir": str(run_dir), "started": time.time(),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_avg_1m_at_start": os.getloadavg()[0]},
                    # the proxies' data port (nodes/proxy/fastpath.py): TESTBED_PROXY_FAST=1
                    "proxy_fast_path": fast_path_enabled()}
    out = run_dir / "bench.json"

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    part_s = result["part_s"] = {}
    clock = [time.perf_counter()]

    def lap(part: str) -> None:
        now = time.perf_counter()
        part_s[part] = round(now - clock[0], 1)
        clock[0] = now

    if "baseline" in cfg.parts:
        result["baseline"] = []
        for b in cfg.batch_sizes:
            progress(f"baseline: batch size {b}")
            result["baseline"].append(await run_baseline(seed=cfg.seed, events=cfg.events, batch_size=b))
        lap("baseline")
        save()
    if "proxy" in cfg.parts:
        result["proxy"] = []
        for b in cfg.batch_sizes:
            progress(f"proxy: CPU per forwarded call, batch size {b}")
            result["proxy"].append(await run_proxy_cost(seed=cfg.seed, events=cfg.proxy_events, batch_size=b))
        lap("proxy")
        save()
    if "pipeline" in cfg.parts:
        combos = [(m, links, b) for m in cfg.modes for links in cfg.links for b in cfg.batch_sizes
                  if links == "direct" or cfg.proxy_modes is None or m in cfg.proxy_modes]
        rounds: dict[tuple, list[dict]] = {c: [] for c in combos}
        for r in range(cfg.repeats):
            for m, links, b in combos:
                progress(f"pipeline round {r + 1}/{cfg.repeats}: {m}, {links}, batch {b}")
                d = run_dir / "pipeline" / f"{m.replace('/', '-')}-{links}-b{b}-r{r + 1}"
                mode, sink = split_mode(m)
                rounds[(m, links, b)].append(await run_pipeline(
                    d, mode=mode, sink=sink, proxies=links == "proxies", batch_size=b,
                    events=pipeline_events(cfg, b), seed=cfg.seed))
                if not cfg.keep_data:
                    shutil.rmtree(d, ignore_errors=True)
        result["pipeline"] = [_median_run(rounds[c]) for c in combos]
        lap("pipeline")
        save()
    if "memory" in cfg.parts and cfg.memory_events:
        result["memory"] = []
        for n in cfg.memory_events:
            progress(f"memory: at-least-once, {n} events")
            d = run_dir / "memory" / f"e{n}"
            r = await run_pipeline(d, mode="at-least-once", sink=None, proxies=False,
                                   batch_size=cfg.batch_sizes[0], events=n, seed=cfg.seed, drain_timeout_s=900)
            result["memory"].append({"events": n, "events_per_s": r["events_per_s"],
                                     "peak_rss_bytes": {k: v["peak_rss_bytes"] for k, v in r["nodes"].items()}})
            if not cfg.keep_data:
                shutil.rmtree(d, ignore_errors=True)
        lap("memory")
        save()
    audit_dir = run_dir / "audit-run"
    if "recovery" in cfg.parts or "audit" in cfg.parts:
        # One broker log serves both parts: the audit reads what the broker wrote.
        records = max(cfg.log_records if "recovery" in cfg.parts else 0,
                      cfg.audit_events if "audit" in cfg.parts else 0)
        progress(f"recovery: filling a broker log with {records:,} records")
        broker = await broker_recovery(audit_dir / "broker", seed=cfg.seed, records=records,
                                       repeats=cfg.restart_repeats)
        if "recovery" in cfg.parts:
            progress("recovery: processor and sink restarts")
            from harness.bench.baseline import NullServer
            async with NullServer() as ns:
                floor = ns.start_s
            nodes = await node_recovery(run_dir / "recovery-cluster", seed=cfg.seed,
                                        events=cfg.recovery_events, repeats=cfg.restart_repeats)
            result["recovery"] = {"python_start_floor_s": round(floor, 3), "broker": broker, **nodes}
            lap("recovery")
            if not cfg.keep_data:
                shutil.rmtree(run_dir / "recovery-cluster", ignore_errors=True)
            save()
        if "audit" in cfg.parts:
            progress(f"audit: building a {records:,}-event run")
            t0 = time.perf_counter()
            build_audit_run(audit_dir, seed=cfg.seed, events=records)
            build_s = time.perf_counter() - t0
            progress("audit: checking it")
            result["audit"] = dict(await run_audit(audit_dir), build_s=round(build_s, 2))
            lap("audit")
            save()
        if not cfg.keep_data:
            shutil.rmtree(audit_dir, ignore_errors=True)
    if "campaign" in cfg.parts:
        progress(f"campaign rate: {cfg.campaign_kills} kills over {cfg.campaign_events} events")
        d = run_dir / "campaign"
        result["campaign"] = await run_campaign_rate(d, seed=cfg.seed, events=cfg.campaign_events,
                                                     kills=cfg.campaign_kills, rate=cfg.campaign_rate)
        lap("campaign")
        if not cfg.keep_data:
            shutil.rmtree(d, ignore_errors=True)
    if "detect" in cfg.parts:
        d = run_dir / "detect"
        result["detect"] = await run_detect(d, cfg.detect, keep_data=cfg.keep_data, progress=progress)
        lap("detect")
        if not cfg.keep_data:
            shutil.rmtree(d, ignore_errors=True)
    if "brokers" in cfg.parts:
        from harness.bench.brokers import run_brokers
        result["brokers"] = await run_brokers(
            run_dir / "brokers", brokers=cfg.brokers, modes=cfg.broker_modes, links=cfg.links,
            events=cfg.events, batch_size=cfg.batch_sizes[0], seed=cfg.seed, keep_data=cfg.keep_data,
            progress=progress)
        lap("brokers")
        save()
    result["finished"] = time.time()
    result["elapsed_s"] = round(result["finished"] - result["started"], 1)
    result["ratios"] = ratios(result)
    save()
    return result


def _find(rows: list[dict], **match) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _ratio(a, b) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(result: dict) -> dict:
    """Per pipeline row: events/s over the baseline (same batch size), over at-least-once
    (same links and batch size), and proxies over direct (same mode and batch size)."""
    out = []
    base = result.get("baseline") or []
    rows = result.get("pipeline") or []
    for r in rows:
        label = f"{r['mode']}/{r['sink']}" if r["sink"] else r["mode"]
        b = _find(base, batch_size=r["batch_size"])
        alo = _find(rows, mode="at-least-once", links=r["links"], batch_size=r["batch_size"])
        direct = _find(rows, mode=r["mode"], sink=r["sink"], links="direct", batch_size=r["batch_size"])
        out.append({"mode": label, "links": r["links"], "batch_size": r["batch_size"],
                    "to_baseline": _ratio(r["events_per_s"], b and b["events_per_s"]),
                    "to_at_least_once": _ratio(r["events_per_s"], alo and alo["events_per_s"]),
                    "proxies_to_direct": (_ratio(r["events_per_s"], direct and direct["events_per_s"])
                                          if r["links"] == "proxies" else None)})
    return {"pipeline": out}


