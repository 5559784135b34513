"""The audit's input validation layer: every file a run left behind is read through here.

One small validator per file kind; each returns the parsed content or raises
:class:`InputError` with ONE line naming the file and what is wrong with it
(missing, a directory, unreadable, empty, not UTF-8, not JSON, truncated, or
of the wrong shape). The CLI prints that line and exits 2, so the audit never
reports a verdict ("held") from an input it could not read (issue 11).

Validators (file -> what is checked):

- :func:`cluster_config`  ``cluster.json``: an object with a ``config`` object
  (``mode`` one of the modes, ``seed`` int, ``events`` int >= 0);
- :func:`history_ops`  ``producer/history.jsonl``: JSON objects, one a line,
  ``type`` invoke/ok/fail/info, ``value.orders`` a list of strings, ``index``
  strictly increasing; only the LAST line may be torn (a kill -9 mid-write),
  and only when it has no newline;
- :func:`operator_state`  ``processor/final-status.json`` / ``checkpoint.json``:
  ``state`` an object of account -> integer cents;
- :func:`broker_meta`  ``broker/broker-meta.json``: ``partitions`` an int >= 1;
- :func:`sink_snapshot`  ``sink/sink.db``: an SQLite database with ``orders``
  and ``balances``, integer counts and balances (a float balance is an
  overflowed write);
- :func:`result_file`  ``result.json``: ``modes`` a list of {mode, dir};
- :func:`schedule_file`  ``schedule.json`` (harness.schedule.load's checks);
- :func:`nemesis_ops`  ``<mode>/nemesis.jsonl``: JSON objects with ``type``
  and ``f``.

JSON is parsed strictly: ``NaN`` and ``Infinity`` are refused (not JSON).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

from nodes.common.modes import MODES

OP_TYPES = ("invoke", "ok", "fail", "info")
MAX_JSON_BYTES = 256 * 1024 * 1024
"""Largest JSON document (not JSONL) the audit reads into memory (bytes)."""


MODE_ROW_FIELDS: dict[str, type | tuple[type, ...]] = {
    "sink": (str, type(None)), "verdict": str, "events": int, "acked": int, "lost": int,
    "lost_acknowledged": int, "duplicated": int, "balance_ok": bool, "reasons": list,
    "anomalies": dict, "notes": list, "faults": (list, dict), "faults_fired": int,
    "throughput_eps": (int, float, type(None)), "latency_p50_ms": (int, float, type(None)),
    "latency_p99_ms": (int, float, type(None))}
"""Types of the optional fields of a result.json mode row (the table and the report read them)."""
RESULT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "seed": (int, type(None)), "complete": bool, "disabled": list, "requested_modes": list}


class InputError(Exception):
    """A run directory lacks a file the audit needs, or holds an unreadable one.
    The message is one line: the file, then what is wrong."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Strict JSON (NaN / Infinity refused). Raises: ValueError."""
    return json.loads(data, parse_constant=_no_constant)


def read_bytes(path: Path, *, allow_empty: bool = False, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file. Raises: InputError (missing, a directory, unreadable,
    empty unless ``allow_empty``, larger than ``limit`` bytes)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected a file")
        size = path.stat().st_size
        if size > limit:
            raise InputError(f"{path}: {size:,} bytes, more than the audit reads ({limit:,})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data.strip() and not allow_empty:
        raise InputError(f"{path}: empty")
    return data


def read_json(path: Path) -> Any:
    """A JSON document (strict). Raises: InputError (see read_bytes; not UTF-8, not JSON)."""
    data = read_bytes(path)
    try:
        return loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 (byte {e.start})") from None
    except ValueError as e:
        raise InputError(f"{path}: not valid JSON, truncated or damaged ({e})") from None


def json_object(path: Path, required: dict[str, type | tuple[type, ...]]) -> dict:
    """A JSON object with ``required`` keys of the given types (bool never counts as int).
    Raises: InputError naming the key."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    for key, types in required.items():
        if key not in obj:
            raise InputError(f"{path}: no {key!r} field")
        if not _is(obj[key], types):
            raise InputError(f"{path}: {key!r} should be {_names(types)}, got {obj[key]!r:.60}")
    return obj


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({int: "an integer", str: "a string", dict: "an object", list: "a list",
                        bool: "true/false", float: "a number", type(None): "null"}.get(t, t.__name__)
                       for t in types)


def jsonl_objects(path: Path, *, allow_torn_tail: bool = True) -> Iterator[tuple[int, dict]]:
    """(line number, object) per line of a JSONL file. A blank line is skipped; the last line
    may be torn (no newline, not JSON) when ``allow_torn_tail``; any other bad line is an error.
    Raises: InputError naming the line."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        n = 0
        try:
            for raw in f:
                n += 1
                if not raw.strip():
                    continue
                try:
                    obj = loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    if allow_torn_tail and not raw.endswith(b"\n"):
                        return  # torn by a kill -9 in the middle of a write
                    what = "not UTF-8" if isinstance(e, UnicodeDecodeError) else "not a JSON line"
                    raise InputError(f"{path}: line {n} is {what} (damaged or not this file's format)") \
                        from None
                if not isinstance(obj, dict):
                    raise InputError(f"{path}: line {n} is not a JSON object")
                yield n, obj
        except OSError as e:
            raise InputError(f"{path}: cannot read at line {n + 1} ({e.strerror or e})") from None


def cluster_config(path: Path) -> dict:
    """The ``config`` of a cluster manifest. Raises: InputError."""
    manifest = json_object(path, {"config": dict})
    config = manifest["config"]
    if config.get("mode") not in MODES:
        raise InputError(f"{path}: config.mode should be one of {', '.join(MODES)}, got {config.get('mode')!r:.60}")
    for key in ("seed", "events"):
        if not _is(config.get(key), int) or config[key] < 0:
            raise InputError(f"{path}: config.{key} should be an integer >= 0, got {config.get(key)!r:.60}")
    if not _is(config.get("accounts", 16), int) or config.get("accounts", 16) < 1:
        raise InputError(f"{path}: config.accounts should be an integer >= 1")
    if not _is(config.get("workload_file"), (str, type(None))):
        raise InputError(f"{path}: config.workload_file should be a path or null")
    return config


def history_ops(path: Path) -> Iterator[dict]:
    """The producer's operations, checked line by line. Raises: InputError naming the line."""
    last = None
    for n, op in jsonl_objects(path):
        t, value, index = op.get("type"), op.get("value"), op.get("index")
        if t not in OP_TYPES:
            raise InputError(f"{path}: line {n}: 'type' should be one of {', '.join(OP_TYPES)}, got {t!r:.40}")
        if not isinstance(value, dict):
            raise InputError(f"{path}: line {n}: 'value' should be an object")
        orders = value.get("orders", [])
        if not isinstance(orders, list) or not all(isinstance(o, str) for o in orders):
            raise InputError(f"{path}: line {n}: value.orders should be a list of order ids")
        if not _is(op.get("time", 0), (int, float)):
            raise InputError(f"{path}: line {n}: 'time' should be unix seconds, got {op.get('time')!r:.40}")
        if not _is(index, int) or (last is not None and index <= last):
            raise InputError(f"{path}: line {n}: 'index' should be an integer above {last}, got {index!r:.40}")
        last = index
        yield op


def operator_state(path: Path) -> dict[str, int]:
    """account -> cents of a processor status or checkpoint file. Raises: InputError."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    key = "state" if "state" in obj else "operator_state" if "operator_state" in obj else None
    if key is None:
        raise InputError(f"{path}: no 'state' field (the processor's operator state)")
    state = obj[key] if obj[key] is not None else {}
    if not isinstance(state, dict):
        raise InputError(f"{path}: {key!r} should be an object of account -> cents")
    for account, cents in state.items():
        if not _is(cents, int):
            raise InputError(f"{path}: {key}[{account!r:.40}] should be integer cents, got {cents!r:.40}")
    return {str(k): v for k, v in state.items()}


def broker_meta(broker_dir: Path) -> int:
    """Partition count from ``broker-meta.json``. Raises: InputError."""
    if not Path(broker_dir).is_dir():
        raise InputError(f"{broker_dir}: missing broker data dir")
    meta = json_object(Path(broker_dir) / "broker-meta.json", {"partitions": int})
    if meta["partitions"] < 1:
        raise InputError(f"{broker_dir / 'broker-meta.json'}: 'partitions' should be >= 1")
    return meta["partitions"]


def broker_partitions(broker_dir: Path, partitions: int) -> None:
    """Every partition has its directory and a first segment at offset 0 (the broker
    creates both at its first start and never deletes a segment). Raises: InputError."""
    for p in range(partitions):
        d = Path(broker_dir) / f"orders-{p}"
        segs = sorted(d.glob("*.log")) if d.is_dir() else []
        if not segs:
            raise InputError(f"{d}: missing (partition {p} of {partitions} has no segment): the broker log is incomplete")
        if not segs[0].stem.isdigit() or int(segs[0].stem) != 0:
            raise InputError(f"{segs[0]}: the first segment of partition {p} should start at offset 0: "
                             "a segment was removed")


def offsets_within_log(path: Path, offsets: dict, ends: dict[int, int], what: str) -> None:
    """Each ``partition -> offset`` of ``path`` is at most the broker log's end of that
    partition (the processor cannot have consumed records the log does not hold).
    Raises: InputError (the log was truncated, or the file is not this run's)."""
    if not isinstance(offsets, dict):
        raise InputError(f"{path}: {what} should be an object of partition -> offset")
    for part, off in offsets.items():
        try:
            p = int(part)
        except (TypeError, ValueError):
            raise InputError(f"{path}: {what}: {part!r:.20} is not a partition number") from None
        if not _is(off, int) or off < 0:
            raise InputError(f"{path}: {what}[{part}] should be an offset >= 0, got {off!r:.40}")
        if off > ends.get(p, 0):
            raise InputError(f"{path}: {what}[{p}] is {off}, beyond the end of the broker log "
                             f"({ends.get(p, 0)}): the log was truncated, or this file is not this run's")


def consumer_offsets(path: Path, ends: dict[int, int], obj: Any = None) -> None:
    """``broker/consumer-offsets.json`` (``obj``: its content, read before the log):
    {group: {topic: {partition: offset}}} within the log. Raises: InputError."""
    obj = read_json(path) if obj is None else obj
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object of group -> offsets")
    for group, topics in obj.items():
        if not isinstance(topics, dict):
            raise InputError(f"{path}: group {group!r:.40} should map a topic to its offsets")
        for topic, offsets in topics.items():
            offsets_within_log(path, offsets, ends, f"committed offset of {group}/{topic}")


def sink_snapshot(db: Path) -> tuple[dict[str, int], dict[str, int]]:
    """({order id: applied count}, {account: balance cents}) from the sink database.
    Raises: InputError (missing, empty, not SQLite, no tables, non-integer values)."""
    read_bytes(db, limit=1 << 62)  # missing / directory / empty / unreadable
    from nodes.sink.db import read_snapshot
    try:
        orders, balances = read_snapshot(db)
    except sqlite3.DatabaseError as e:
        raise InputError(f"{db}: not a readable sink database ({e})") from None
    except OSError as e:
        raise InputError(f"{db}: cannot read ({e.strerror or e})") from None
    for table, rows in (("orders", orders), ("balances", balances)):
        for k, v in rows.items():
            if not isinstance(k, str) or not _is(v, int):
                raise InputError(f"{db}: table {table}: row {k!r:.40} holds {v!r:.40}, expected an integer "
                                 "(an overflowed or damaged write)")
    for oid, n in orders.items():
        if n < 0:
            raise InputError(f"{db}: table orders: {oid!r:.40} has a negative applied count {n}")
    return orders, balances


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
    return result


def schedule_file(path: Path) -> dict:
    """A schedule (harness.schedule's format). Raises: InputError."""
    from harness import schedule as schedule_mod
    json_object(path, {"steps": list})
    try:
        return schedule_mod.load(path)
    except schedule_mod.ScheduleError as e:
        raise InputError(str(e)) from None


def nemesis_ops(path: Path) -> list[dict]:
    """The nemesis history of one mode. Raises: InputError naming the line."""
    ops = []
    for n, op in jsonl_objects(path):
        if op.get("type") not in OP_TYPES or not isinstance(op.get("f"), str) \
                or not _is(op.get("time"), (int, float)) or not isinstance(op.get("value", {}), dict):
            raise InputError(f"{path}: line {n}: expected a nemesis operation with 'type', 'f', "
                             "'time' (unix seconds) and a 'value' object")
        ops.append(op)
    return ops


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
