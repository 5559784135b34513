"""Run a scenario through harness.campaign and compare each mode with its expectation.

The result is a campaign ``result.json`` (same layout, ``testbed audit`` and
``testbed replay`` work on it) with, per mode entry, ``expected`` (the
expectation), ``as_expected`` (bool), ``mismatches`` (what differed) and
``failpoints_fired`` ({name: firings}, from the nodes' JSON logs) and
``steps_fired`` (per schedule step: how often it fired, and the evidence). A
step with ``"must_fire": true`` that did not fire makes the mode NOT as
expected, whatever its verdict: a fault that never fired proves nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.campaign import CampaignConfig, ModeSpec, ProgressFn, run_mode, unexpected_exits, write_result
from harness.cluster import ClusterConfig, DrainTimeout
from harness.nemesis.failpoint import fired_in_logs
from harness.nemesis.fired import steps_fired
from harness.scenarios import Scenario, ScenarioError


def mode_spec(label: str) -> ModeSpec:
    """"exactly-once/idempotent" -> ModeSpec("exactly-once", "idempotent")."""
    mode, _, sink = label.partition("/")
    return ModeSpec(mode, sink or None)


def campaign_config(sc: Scenario, labels: list[str], ablation: str | None,
                    storage: str | None = None, external: dict[str, str] | None = None) -> CampaignConfig:
    c = sc.config
    base = ClusterConfig(seed=int(c.get("seed", 1)), events=int(c.get("events", 1000)),
                         storage=storage or c.get("storage", "direct"),
                         rate=float(c.get("rate", 1000.0)), batch_size=int(c.get("batch_size", 100)),
                         disabled=[ablation] if ablation else list(c.get("disabled", [])),
                         fetch_group=int(c.get("fetch_group", 0)),
                         sequential_sends=bool(c.get("sequential_sends", True)),
                         broker=c.get("broker", "builtin"), nats_sync=c.get("nats_sync", "default"),
                         nats_url=c.get("nats_url"),
                         mqtt_autosave=str(c.get("mqtt_autosave", "default")),
                         mqtt_subscribe_qos=c.get("mqtt_subscribe_qos"),
                         extra_args={k: list(v) for k, v in c.get("extra_args", {}).items()},
                         external=dict(external or {}),
                         processors=int(c.get("processors", 1)),
                         session_timeout_ms=int(c.get("session_timeout_ms", 2000)))
    return CampaignConfig(modes=[mode_spec(label) for label in labels], base=base, schedule=sc.schedule(),
                          drain_timeout_s=float(c.get("drain_timeout_s", 60.0)),
                          stuck_s=float(c.get("stuck_s", 10.0)),
                          extra={"scenario": sc.name, "ablation": ablation})


def select_labels(sc: Scenario, ablation: str | None, modes: list[str] | None) -> list[str]:
    """The mode labels to run: those with an expectation, narrowed by ``modes``
    ("exactly-once" selects both sinks).

    Raises:
        ScenarioError: no expectation matches ``modes``.
    """
    labels = list(sc.expectations(ablation))
    if modes:
        labels = [l for l in labels if l in modes or l.split("/")[0] in modes]
        if not labels:
            raise ScenarioError(f"scenario {sc.name} has no expectation for {', '.join(modes)} "
                                f"(it has: {', '.join(sc.expectations(ablation))})")
    return labels


def audit_stalled(mode_dir: Path) -> dict:
    """The audit's counts of a run that did not drain, when its files can be read (a real
    broker that lost its stream stalls the pipeline: what it lost is still worth counting);
    the verdict stays ``stalled``. {} when the files cannot be read."""
    from harness.checker import InputError, check, load_run
    try:
        report = check(load_run(mode_dir))
    except InputError:
        return {}
    return {"acked": report.acked, "lost": report.count("lost"),
            "lost_acknowledged": report.count("lost-acknowledged"),
            "duplicated": report.count("duplicated"), "balance_ok": report.balance_ok,
            "anomalies": {n: a.to_json() for n, a in report.anomalies.items() if a.count}}


def _count(entry: dict, anomaly: str) -> int:
    a = entry.get("anomalies", {}).get(anomaly)
    return int(a.get("count", 0)) if isinstance(a, dict) else 0


def must_fire_misses(sc: Scenario, mode_dir: Path) -> list[str]:
    """One line per ``"must_fire": true`` step that did not fire (harness.nemesis.fired)."""
    out = []
    for row in steps_fired(mode_dir, sc.steps):
        step = sc.steps[row["step"]]
        if step.get("must_fire") and not row["fired"]:
            what = step.get("name") or step.get("link") or step.get("node") or ""
            out.append(f"step {row['step']} ({step['f']} {what}) must fire but did not: {row['evidence']}")
    return out


def evaluate(entry: dict, exp: dict, mode_dir: Path) -> list[str]:
    """What differs between a mode's result entry and its expectation ([] = as expected)."""
    out = []
    allowed = exp.get("verdict")
    allowed = allowed if isinstance(allowed, list) else [allowed]
    if entry["verdict"] not in allowed:
        out.append(f"verdict {entry['verdict']} (expected {' or '.join(allowed)})")
    for name, n in exp.get("min", {}).items():
        if _count(entry, name) < n:
            out.append(f"{name} {_count(entry, name)} (expected >= {n})")
    for name, n in exp.get("max", {}).items():
        if _count(entry, name) > n:
            out.append(f"{name} {_count(entry, name)} (expected <= {n})")
    fired = entry.get("failpoints_fired", {})
    for name, n in exp.get("fired", {}).items():
        if fired.get(name, 0) < n:
            out.append(f"failpoint {name} fired {fired.get(name, 0)} times (expected >= {n})")
    for node, text in exp.get("log", {}).items():
        log = mode_dir / node / f"{node}.log"
        if not log.exists():   # a real broker's server (nats-1...) logs to its stderr
            log = mode_dir / node / "stderr.log"
        if not log.exists() or text not in log.read_text(errors="replace"):
            out.append(f"{node}'s log lacks {text!r}")
    return out


async def run_scenario(sc: Scenario, run_dir: Path, *, modes: list[str] | None = None,
                       ablation: str | None = None, progress: ProgressFn = lambda *_: None,
                       storage: str | None = None, external: dict[str, str] | None = None) -> dict:
    """Run ``sc`` (with ``ablation`` switched off, if given) in each selected mode.

    Returns the result (also written to ``run_dir/result.json``) with
    ``as_expected`` for the whole run and per mode.

    Raises:
        ScenarioError: no expectation for ``ablation`` / ``modes``.
        harness.process.NodeStartError: a node did not start.
    """
    expectations = sc.expectations(ablation)
    labels = select_labels(sc, ablation, modes)
    cfg = campaign_config(sc, labels, ablation, storage, external)
    entries: list[dict] = []
    run_dir.mkdir(parents=True, exist_ok=True)
    write_result(run_dir, cfg, entries, complete=False)
    for spec, label in zip(cfg.modes, labels):
        mode_dir = run_dir / spec.dirname
        try:
            entry = await run_mode(spec, cfg, run_dir, progress)
        except DrainTimeout as e:
            entry = {"mode": spec.mode, "sink": spec.sink, "dir": spec.dirname, "verdict": "stalled",
                     "reasons": [str(e)], "anomalies": {}, "lost": None, "duplicated": None,
                     "lost_acknowledged": None, "balance_ok": None, "events": cfg.base.events,
                     "acked": None, "notes": unexpected_exits(mode_dir)}
            entry.update(audit_stalled(mode_dir))
            progress(label, "verdict stalled (did not drain)")
        entry["failpoints_fired"] = dict(Counter(f["failpoint"] for f in fired_in_logs(mode_dir)))
        entry["expected"] = expectations[label]
        entry["steps_fired"] = steps_fired(mode_dir, sc.steps)
        entry["mismatches"] = must_fire_misses(sc, mode_dir) + evaluate(entry, expectations[label], mode_dir)
        entry["as_expected"] = not entry["mismatches"]
        entries.append(entry)
        write_result(run_dir, cfg, entries, complete=False)
    cfg.extra["as_expected"] = all(e["as_expected"] for e in entries)
    return write_result(run_dir, cfg, entries, complete=True)
