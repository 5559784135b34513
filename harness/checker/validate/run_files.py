"""Validators of a run's own files (result.json, schedule.json) and of what the report page reads."""

from __future__ import annotations

from pathlib import Path

from harness.checker.validate.base import InputError, _is, _names, json_object, jsonl_objects
from harness.checker.validate.mode_files import history_ops, nemesis_ops

MODE_ROW_FIELDS: dict[str, type | tuple[type, ...]] = {
    "sink": (str, type(None)), "verdict": str, "events": int, "acked": int, "lost": int,
    "lost_acknowledged": int, "duplicated": int, "balance_ok": bool, "reasons": list,
    "anomalies": dict, "notes": list, "faults": (list, dict), "faults_fired": int,
    "throughput_eps": (int, float, type(None)), "latency_p50_ms": (int, float, type(None)),
    "latency_p99_ms": (int, float, type(None))}
"""Types of the optional fields of a result.json mode row (the table and the report read them)."""
CONFIG_FIELDS: dict[str, tuple[tuple[type, ...], float | None]] = {
    "seed": ((int,), 0), "events": ((int,), 1), "accounts": ((int,), 1), "batch_size": ((int,), 1),
    "partitions": ((int,), 1), "rate": ((int, float), 0), "drain_timeout_s": ((int, float), 0.001),
    "ack_timeout_ms": ((int,), 1), "sink_timeout_ms": ((int,), 1), "proxies": ((bool,), None),
    "mode": ((str,), None), "sink_strategy": ((str, type(None)), None), "workload_file": ((str, type(None)), None),
    "disabled": ((list,), None), "extra_args": ((dict,), None)}
"""result.json's ``config``: (types, minimum) of each field ``replay`` starts a cluster with."""
RESULT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "seed": (int, type(None)), "complete": bool, "disabled": list, "requested_modes": list}



def result_file(path: Path) -> dict:
    """result.json of a campaign run. Raises: InputError."""
    result = json_object(path, {"modes": list})
    for i, m in enumerate(result["modes"]):
        if not isinstance(m, dict) or not isinstance(m.get("mode"), str) or not isinstance(m.get("dir"), str):
            raise InputError(f"{path}: modes[{i}] should be an object with 'mode' and 'dir' strings")
        if Path(m["dir"]).is_absolute() or ".." in Path(m["dir"]).parts:
            raise InputError(f"{path}: modes[{i}].dir should be a directory inside the run, got {m['dir']!r:.60}")
    for i, m in enumerate(result["modes"]):
        for key, types in MODE_ROW_FIELDS.items():
            if key in m and not _is(m[key], types):
                raise InputError(f"{path}: modes[{i}].{key} should be {_names(types)}, got {m[key]!r:.60}")
    for key, types in RESULT_FIELDS.items():
        if key in result and not _is(result[key], types):
            raise InputError(f"{path}: {key!r} should be {_names(types)}, got {result[key]!r:.60}")
    for key in ("requested_modes",):
        if not isinstance(result.get(key, []), list) or not all(isinstance(m, dict) and "mode" in m
                                                                 for m in result.get(key, [])):
            raise InputError(f"{path}: {key!r} should be a list of {{\"mode\", \"sink\"}}")
    if not isinstance(result.get("config", {}), dict):
        raise InputError(f"{path}: 'config' should be an object")
    for key, (types, low) in CONFIG_FIELDS.items():
        v = result.get("config", {}).get(key)
        if key in result.get("config", {}) and (not _is(v, types) or (low is not None and v < low)):
            bound = f" >= {low:g}" if low is not None else ""
            raise InputError(f"{path}: config.{key} should be {_names(types)}{bound}, got {v!r:.60}")
    return result


def schedule_file(path: Path) -> dict:
    """A schedule (harness.schedule's format). Raises: InputError."""
    from harness import schedule as schedule_mod
    json_object(path, {"steps": list})
    try:
        return schedule_mod.load(path)
    except schedule_mod.ScheduleError as e:
        raise InputError(str(e)) from None


def check_report(path: Path) -> dict:
    """A mode's check.json (the checker's report). Raises: InputError."""
    obj = json_object(path, {"anomalies": dict})
    for name, a in obj["anomalies"].items():
        if not isinstance(a, dict) or not _is(a.get("count", 0), int):
            raise InputError(f"{path}: anomalies[{name!r:.40}] should be an object with an integer 'count'")
    if not isinstance(obj.get("balance_deltas", {}), dict):
        raise InputError(f"{path}: 'balance_deltas' should be an object")
    return obj


def proxy_events(path: Path) -> list[dict]:
    """A proxy's faults.jsonl. Raises: InputError naming the line."""
    out = []
    for n, ev in jsonl_objects(path):
        if not _is(ev.get("time"), (int, float)) or not isinstance(ev.get("type", ""), str):
            raise InputError(f"{path}: line {n}: expected a proxy event with 'time' (unix seconds) and 'type'")
        out.append(ev)
    return out


def report_inputs(mode_dir: Path) -> None:
    """Check every file of one mode directory the report page reads (those present).
    Raises: InputError naming the file."""
    d = Path(mode_dir)
    if (d / "nemesis.jsonl").exists():
        nemesis_ops(d / "nemesis.jsonl")
    if (d / "producer" / "history.jsonl").exists():
        for _ in history_ops(d / "producer" / "history.jsonl"):
            pass
    if (d / "check.json").exists():
        check_report(d / "check.json")
    for faults in sorted(d.glob("proxy-*/faults.jsonl")):
        proxy_events(faults)
