"""Load what a run left behind into one :class:`RunData`, offline (no node running).

Run directory layout read here (see README, "Files of a run"):
``cluster.json`` (the config: mode, seed, events, workload file),
``producer/history.jsonl``, ``broker/`` (partition logs), ``sink/sink.db``,
``processor/checkpoint.json``.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from harness.checker import validate
from harness.checker.validate import InputError
from harness.checker.table import OrderTable
from nodes.pb import events_pb2


_KEYED = ("workload", "invoked", "acked", "log_counts", "log_positions", "sink_counts")


_KEYED = ("workload", "invoked", "acked", "log_counts", "log_positions", "sink_counts")


class RunData:
    """Everything the checker looks at.

    The per-order facts live in ``table`` (:class:`harness.checker.table.OrderTable`,
    numpy columns in workload order) when :func:`load_run` read them; the keyed
    attributes below are their dict-shaped form, for hand-built data (tests) and
    callers that edit them. Reading or assigning a keyed attribute of a loaded run
    turns the table into dicts (and drops it): what the checker computes on is always
    what those attributes hold.

    Keyed attributes (properties):
        workload: order id -> (account, amount_cents), in workload order.
        invoked: order ids the producer attempted at least once.
        acked: order ids in a batch the broker acknowledged (history ``ok``).
        log_counts: order id -> number of records holding it in the broker log.
        log_positions: order id -> (partition, offset) of its first record.
        sink_counts: order id -> applied count at the sink (absent = 0).

    Attributes:
        mode: the guarantee mode of the run.
        balances: account -> balance at the sink, in cents.
        operator_state: account -> total in cents from the processor's last
            checkpoint, or None when the mode keeps no checkpoint.
        log_available: False when the broker log could not be read.
        unchecked: checks the audit could not make, each in words (an external node
            that does not expose what they need, harness/checker/external.py).
        dead_letters: rows of the sink's dead_letters table (harness/checker/dead_lettered.py).
        log_truncated: offsets (committed, or consumed by the processor) beyond the end
            of the broker log: the log lost records under them (reported with the verdict).
        truncated: NATS runs: partition -> (processor's durable position, log end) where
            the log ends before what the processor had consumed (harness/checker/truncated.py).
        broker: "builtin" | "nats": the system the log was (cluster.json config.broker).
        replicas: NATS runs: server -> partition -> {messages, first_seq, last_seq}.
    """

    def __init__(self, mode: str, workload: dict[str, tuple[str, int]] | None = None, *,
                 broker: str = "builtin", table: OrderTable | None = None) -> None:
        self.mode = mode
        self.broker = broker
        self.table = table
        self._keyed: dict = {"workload": dict(workload or {}), "invoked": set(), "acked": set(),
                             "log_counts": Counter(), "log_positions": {}, "sink_counts": {}}
        self.balances: dict[str, int] = {}
        self.operator_state: dict[str, int] | None = None
        self.log_available = True
        self.unchecked: list[str] = []
        self.dead_letters: list[dict] = []
        self.log_truncated: list[str] = []
        self.truncated: dict[int, tuple[int, int]] = {}
        self.replicas: dict | None = None

    def order_table(self) -> OrderTable:
        """The table to compute on: the loaded one, else one built from the keyed attributes."""
        if self.table is not None:
            return self.table
        k = self._keyed
        return OrderTable.from_dicts(k["workload"], k["invoked"], k["acked"], k["log_counts"],
                                     k["log_positions"], k["sink_counts"])

    def in_workload(self, order_id: str) -> bool:
        if self.table is not None:
            return self.table.contains(order_id)
        return order_id in self._keyed["workload"]

    def keep_sent(self, sent: int) -> None:
        """Judge only the orders the producer reached: the first ``sent`` of the workload
        and any other it invoked (an interrupted run: the rest were never sent, not lost)."""
        if self.table is not None:
            t = self.table
            self.table = t.restrict((np.arange(len(t)) < sent) | t.invoked)
        else:
            k = self._keyed
            k["workload"] = {oid: v for i, (oid, v) in enumerate(k["workload"].items())
                             if i < sent or oid in k["invoked"]}

    def _to_keyed(self) -> dict:
        t, k = self.table, self._keyed
        if t is not None:
            k.update(workload=t.workload_dict(), invoked=t.id_set(t.invoked, t.invoked_other),
                     acked=t.id_set(t.acked, t.acked_other), log_counts=Counter(t.counts_dict(t.log_count)),
                     log_positions=t.positions_dict(), sink_counts=t.counts_dict(t.sink_count, t.sink_other))
            self.table = None
        return k


def _keyed_property(name: str) -> property:
    def get(self: RunData):
        return self._to_keyed()[name]

    def put(self: RunData, value) -> None:
        self._to_keyed()[name] = value
    return property(get, put, doc=f"The keyed form of the run's {name} (see RunData).")


for _name in _KEYED:
    setattr(RunData, _name, _keyed_property(_name))


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
        if isinstance(status, dict) and "durable_positions" in status:
            if config.get("broker") == "nats":   # a real broker may lose records it served: a finding
                data.truncated = truncated_partitions(final, status["durable_positions"], ends)
            else:
                validate.offsets_within_log(final, status["durable_positions"], ends, "durable_positions",
                                            data.log_truncated)
    nemesis = d / "nemesis.jsonl"
    if nemesis.exists():
        validate.nemesis_ops(nemesis)
    return data
