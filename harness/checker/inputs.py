"""Load what a run left behind into one :class:`RunData`, offline (no node running).

Run directory layout read here (see README, "Files of a run"):
``cluster.json`` (the config: mode, seed, events, workload file),
``producer/history.jsonl``, ``broker/`` (partition logs), ``sink/sink.db``,
``processor/checkpoint.json``.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Iterable

import numpy as np

from harness.checker import validate
from harness.checker.validate import InputError
from harness.checker.rundata import RunData  # noqa: F401  (its home before issue 16)
from harness.checker.table import OrderTable
from nodes.pb import events_pb2


def workload_rows(config: dict, base: Path) -> Iterable[tuple[str, str, int]]:
    """The orders the producer was told to send, from the run's config, as
    ``(order_id, account, amount_cents)`` (no protobuf objects: cheaper for big runs).

    Raises:
        InputError: the workload file named in the config cannot be read.
    """
    from nodes.producer.workload import WorkloadError, generate_rows, load_jsonl
    if config.get("workload_file"):
        path = Path(config["workload_file"])
        if not path.is_absolute():
            path = base / path
        try:
            return [(o.order_id, o.account, o.amount_cents) for o in load_jsonl(path)]
        except (OSError, WorkloadError) as e:
            raise InputError(f"workload file: {e}") from None
    return generate_rows(int(config["seed"]), int(config["events"]), int(config.get("accounts", 16)))


def workload_table(config: dict, base: Path) -> OrderTable:
    """The run's workload as an :class:`OrderTable` (a generated one as numpy columns,
    harness/checker/workload_columns.py). Raises: InputError (as :func:`workload_rows`)."""
    if config.get("workload_file"):
        return OrderTable.from_rows(workload_rows(config, base))
    from harness.checker.workload_columns import generated_columns
    return OrderTable(*generated_columns(int(config["seed"]), int(config["events"]), int(config.get("accounts", 16))),
                      generated=True)


def read_history(path: Path, table: OrderTable) -> None:
    """Mark the order ids a producer history invoked and got an ``ok`` for in ``table``
    (checked by validate.history_ops; only a torn last line is ignored).

    Raises:
        InputError: missing, damaged or of the wrong shape; an ``ok`` for orders never invoked.
    """
    invoked: list[str] = []
    acked: list[str] = []
    for op in validate.history_ops(path):
        t = op["type"]
        if t == "invoke":
            invoked += op["value"].get("orders") or ()
        elif t == "ok":
            acked += op["value"].get("orders") or ()
    table.mark_history(invoked, acked)
    del invoked, acked
    stray_rows = table.acked & ~table.invoked
    stray = {table.ids[i] for i in np.flatnonzero(stray_rows)} | (table.acked_other - table.invoked_other)
    if stray:
        raise InputError(f"{path}: {len(stray)} order(s) acknowledged but never invoked "
                         f"(first {min(stray)!r:.40}): not a consistent history")


def read_broker_log(broker_dir: Path, table: OrderTable, ends: dict[int, int] | None = None) -> None:
    """Count every order id in every partition log of the broker (offline) into ``table``
    (``log_count``, first ``log_partition`` / ``log_offset``; records of other ids in
    ``log_other``); ``ends`` (if given) receives each partition's end offset (validated by
    validate.broker_partitions). Raises: InputError (a corrupt or unreadable log)."""
    from nodes.broker.log import read_values
    from nodes.broker.record import CorruptRecordError
    n = validate.broker_meta(broker_dir)
    validate.broker_partitions(broker_dir, n)
    order = events_pb2.Order()
    parse = order.ParseFromString
    ids: list[str] = []
    parts, offs = array("q"), array("q")
    add_id, add_part, add_off = ids.append, parts.append, offs.append
    for p in range(n):
        offset = -1
        try:
            for offset, value in read_values(broker_dir, p):
                try:
                    parse(value)
                except Exception:  # a poison record (undecodable value, CRC intact): not an order
                    continue
                add_id(order.order_id)
                add_part(p)
                add_off(offset)
        except CorruptRecordError as e:
            raise InputError(f"broker log: {e}") from None
        except OSError as e:
            raise InputError(f"{broker_dir}: partition {p}: cannot read ({e.strerror or e})") from None
        if ends is not None and offset >= 0:
            ends[p] = offset + 1
    table.set_log(ids, parts, offs)


def read_nats_dump(broker_dir: Path, table: OrderTable, ends: dict[int, int] | None = None) -> dict:
    """As :func:`read_broker_log` for a NATS run: from ``broker/nats-streams.json``
    (harness/nats_dump.py); also returns the per-replica states (``replicas``).

    Raises:
        InputError: missing (the cluster could not be read after the heal) or malformed.
    """
    path = broker_dir / "nats-streams.json"
    if not path.exists():
        why = broker_dir / "nats-dump-error.txt"
        extra = f" ({why.read_text().strip()[:200]})" if why.exists() else ""
        raise InputError(f"missing {path}: the NATS streams could not be read after the heal{extra}")
    dump = validate.read_json(path)
    if not isinstance(dump, dict) or not isinstance(dump.get("partitions"), dict):
        raise InputError(f"{path}: expected an object with 'partitions'")
    ids: list[str] = []
    parts, offs = array("q"), array("q")
    for p, rows in dump["partitions"].items():
        if not str(p).isdigit() or not isinstance(rows, list):
            raise InputError(f"{path}: partitions[{p!r:.20}] should be a list of [offset, order id]")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], int)):
                raise InputError(f"{path}: partition {p}: bad row {row!r:.60}")
            if ends is not None:
                ends[int(p)] = max(ends.get(int(p), 0), row[0] + 1)
            if row[1] is None:
                continue
            ids.append(str(row[1]))
            parts.append(int(p))
            offs.append(row[0])
    table.set_log(ids, parts, offs)
    if ends is not None:
        for p, end in (dump.get("high_watermarks") or {}).items():
            ends[int(p)] = max(ends.get(int(p), 0), int(end))
    return dump.get("replicas") or {}


def truncated_partitions(path: Path, durable: dict, ends: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Partition -> (durable position, log end) where the processor durably consumed past
    the end of what the log holds now (checked for shape by validate.offsets_within_log
    against an unbounded end). Raises: InputError (wrong shape)."""
    validate.offsets_within_log(path, durable, {int(p): 2 ** 62 for p in durable if str(p).isdigit()},
                                "durable_positions")
    return {int(p): (int(off), ends.get(int(p), 0)) for p, off in durable.items()
            if int(off) > ends.get(int(p), 0)}


def read_checkpoint_state(path: Path) -> dict[str, int] | None:
    """Operator state (account -> cents) of the processor's last checkpoint, or None
    when there is no checkpoint file. Raises: InputError (damaged or wrong shape)."""
    if not Path(path).exists():
        return None
    return validate.operator_state(path)


def load_run(run_dir: Path, *, mode_dir: Path | None = None) -> RunData:
    """Load one cluster's data from ``mode_dir`` (default: ``run_dir``).

    Raises:
        InputError: a required file is missing or unreadable; the message names it.
    """
    d = Path(mode_dir or run_dir)
    manifest = d / "cluster.json"
    if not manifest.exists():
        raise InputError(f"missing {manifest}: not a run directory")
    config = validate.cluster_config(manifest)
    table = workload_table(config, d)
    data = RunData(mode=config["mode"], broker=str(config.get("broker", "builtin")))
    history = d / "producer" / "history.jsonl"
    read_history(history, table)
    ends: dict[int, int] = {}
    offsets_file = d / "broker" / "consumer-offsets.json"
    # Read the committed offsets BEFORE the log: on a live cluster the log only grows,
    # so offsets read first can never point past the log read after.
    offsets = validate.read_json(offsets_file) if offsets_file.exists() else None
    if config.get("broker") == "nats":
        data.replicas = read_nats_dump(d / "broker", table, ends)
    elif config.get("broker") == "mosquitto":
        # MQTT keeps no log a client can read back: judged from the history and the sink
        # alone (no lost-from-log, divergent, truncated, reordered; docs/brokers.md).
        data.log_available = False
    else:
        read_broker_log(d / "broker", table, ends)
    if offsets is not None:
        validate.consumer_offsets(offsets_file, ends, offsets, data.log_truncated)
    records = int(table.log_count.sum()) + table.log_other
    if not table.invoked.any() and not table.invoked_other and records:
        raise InputError(f"{history}: no operation, but the broker log holds "
                         f"{records:,} records: history lost or truncated")
    strangers = {o for o in table.invoked_other
                 if not o.startswith("<sha256:")}  # a long id the producer wrote as its hash
    if strangers:
        raise InputError(f"{history}: {len(strangers):,} order id(s) not in this run's workload "
                         f"(first {min(strangers)!r:.40}): not this run's history")
    from harness.checker.external import operator_state, read_sink
    if (d / "sink" / "sink.db").exists() or not (d / "sink" / "snapshot.json").exists():
        chunks = validate.sink_columns(d / "sink" / "sink.db")   # streamed: no dict of every order
        data.balances = next(chunks)   # type: ignore[assignment]
        for ids, counts in chunks:     # type: ignore[misc]
            table.set_sink(ids, counts)
    else:   # an external sink's snapshot (harness/checker/external.py)
        sink_counts, data.balances = read_sink(d / "sink")
        table.set_sink(list(sink_counts), list(sink_counts.values()))
    data.table = table
    from nodes.sink.schema import read_dead_letters
    from harness.checker.members import group_facts
    data.group = group_facts(d / "sink" / "sink.db")
    if (d / "sink" / "sink.db").exists():   # an external sink's dead letters are not in its Snapshot
        data.dead_letters = read_dead_letters(d / "sink" / "sink.db")
    if config["mode"] == "exactly-once":
        # The processor's live state captured by the harness after the drain, else
        # the last checkpoint's: both must equal the ideal totals once drained.
        external = "processor" in (config.get("external") or {})
        data.operator_state, why = operator_state(d / "processor", external)
        data.unchecked += [why] if why else []
    final = d / "processor" / "final-status.json"
    if final.exists():  # what the processor consumed must be in the log
        status = validate.read_json(final)
        if isinstance(status, dict) and "durable_positions" in status and data.log_available:
            if config.get("broker") == "nats":   # a real broker may lose records it served: a finding
                data.truncated = truncated_partitions(final, status["durable_positions"], ends)
            else:
                validate.offsets_within_log(final, status["durable_positions"], ends, "durable_positions",
                                            data.log_truncated)
    nemesis = d / "nemesis.jsonl"
    if nemesis.exists():
        validate.nemesis_ops(nemesis)
    return data
