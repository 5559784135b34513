"""Validators of one cluster's (one mode's) files: manifest, history, broker log, sink, processor state."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator

from harness.checker.validate.base import OP_TYPES, InputError, _is, json_object, jsonl_objects, read_bytes, read_json
from nodes.common.modes import MODES


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


def _all_str(items: list) -> bool:
    try:
        "".join(items)   # a TypeError at the first non-str, in C (the per-id check of 1M ids)
        return True
    except TypeError:
        return False


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
        if not isinstance(orders, list) or not _all_str(orders):
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


def offsets_within_log(path: Path, offsets: dict, ends: dict[int, int], what: str,
                       findings: list[str] | None = None) -> None:
    """Each ``partition -> offset`` of ``path`` is at most the broker log's end of that
    partition (the processor cannot have consumed records the log does not hold).

    With ``findings``, an offset beyond the end is appended to it as one line instead:
    a broker that lost the tail of its log (a crash with ``--no-fsync``, a power loss,
    a truncation) leaves committed offsets past its end, which is a finding of the run
    (its records show up as lost), not an unreadable input.
    Raises: InputError (a malformed file; without ``findings`` also an offset beyond
    the end: the log was truncated, or the file is not this run's)."""
    if not isinstance(offsets, dict):
        raise InputError(f"{path}: {what} should be an object of partition -> offset")
    for part, off in offsets.items():
        try:
            p = int(part)
        except (TypeError, ValueError):
            raise InputError(f"{path}: {what}: {part!r:.20} is not a partition number") from None
        if not _is(off, int) or off < 0:
            raise InputError(f"{path}: {what}[{part}] should be an offset >= 0, got {off!r:.40}")
        if off > ends.get(p, 0) and findings is not None:
            findings.append(f"{path.name}: {what}[{p}] is {off}, beyond the end of the broker log "
                            f"({ends.get(p, 0)}): the log lost records under it")
        elif off > ends.get(p, 0):
            raise InputError(f"{path}: {what}[{p}] is {off}, beyond the end of the broker log "
                             f"({ends.get(p, 0)}): the log was truncated, or this file is not this run's")


def consumer_offsets(path: Path, ends: dict[int, int], obj: Any = None,
                     findings: list[str] | None = None) -> None:
    """``broker/consumer-offsets.json`` (``obj``: its content, read before the log):
    {group: {topic: {partition: offset}}} within the log. Raises: InputError."""
    obj = read_json(path) if obj is None else obj
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object of group -> offsets")
    for group, topics in obj.items():
        if not isinstance(topics, dict):
            raise InputError(f"{path}: group {group!r:.40} should map a topic to its offsets")
        for topic, offsets in topics.items():
            offsets_within_log(path, offsets, ends, f"committed offset of {group}/{topic}", findings)


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


def sink_columns(db: Path, chunk: int = 65536) -> Iterator[tuple[list[str], list[int]] | dict[str, int]]:
    """:func:`sink_snapshot` for a big database, as columns: yields the balances
    ({account: cents}) first, then (order ids, applied counts) chunk by chunk, from one
    read transaction. The same checks with the same errors, made in SQL (``typeof``) instead
    of per row in Python. Raises: InputError (as :func:`sink_snapshot`)."""
    read_bytes(db, limit=1 << 62)  # missing / directory / empty / unreadable
    db = Path(db)
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.DatabaseError as e:
        raise InputError(f"{db}: not a readable sink database ({e})") from None
    try:
        con.execute("BEGIN")
        for table, key, val in (("orders", "order_id", "applied_count"), ("balances", "account", "balance_cents")):
            bad = con.execute(f"SELECT {key}, {val} FROM {table} WHERE typeof({key}) != 'text' "
                              f"OR typeof({val}) != 'integer' LIMIT 1").fetchone()
            if bad:
                raise InputError(f"{db}: table {table}: row {bad[0]!r:.40} holds {bad[1]!r:.40}, expected an "
                                 "integer (an overflowed or damaged write)")
        neg = con.execute("SELECT order_id, applied_count FROM orders WHERE applied_count < 0 LIMIT 1").fetchone()
        if neg:
            raise InputError(f"{db}: table orders: {neg[0]!r:.40} has a negative applied count {neg[1]}")
        yield dict(con.execute("SELECT account, balance_cents FROM balances"))
        cur = con.execute("SELECT order_id, applied_count FROM orders")
        while rows := cur.fetchmany(chunk):
            yield [r[0] for r in rows], [r[1] for r in rows]   # list comps: 2x zip(*rows) here
        con.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise InputError(f"{db}: not a readable sink database ({e})") from None
    except OSError as e:
        raise InputError(f"{db}: cannot read ({e.strerror or e})") from None
    finally:
        con.close()


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
