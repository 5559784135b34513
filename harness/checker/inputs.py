"""Load what a run left behind into one :class:`RunData`, offline (no node running).

Run directory layout read here (see README, "Files of a run"):
``cluster.json`` (the config: mode, seed, events, workload file),
``producer/history.jsonl``, ``broker/`` (partition logs), ``sink/sink.db``,
``processor/checkpoint.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
from typing import Iterable

from harness.checker import validate
from harness.checker.validate import InputError
from nodes.pb import events_pb2


@dataclass
class RunData:
    """Everything the checker looks at, keyed by order id.

    Attributes:
        mode: the guarantee mode of the run.
        workload: order id -> (account, amount_cents), in workload order.
        invoked: order ids the producer attempted at least once.
        acked: order ids in a batch the broker acknowledged (history ``ok``).
        log_counts: order id -> number of records holding it in the broker log.
        log_positions: order id -> (partition, offset) of its first record.
        sink_counts: order id -> applied count at the sink (absent = 0).
        balances: account -> balance at the sink, in cents.
        operator_state: account -> total in cents from the processor's last
            checkpoint, or None when the mode keeps no checkpoint.
    """

    mode: str
    workload: dict[str, tuple[str, int]]
    invoked: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    log_counts: Counter = field(default_factory=Counter)
    log_positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    sink_counts: dict[str, int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    operator_state: dict[str, int] | None = None
    log_available: bool = True
    unchecked: list[str] = field(default_factory=list)
    """Checks the audit could not make, each in words (an external node that does not
    expose what they need, harness/checker/external.py); reported with the verdict."""
    dead_letters: list[dict] = field(default_factory=list)
    """Rows of the sink's dead_letters table (harness/checker/dead_lettered.py)."""
    log_truncated: list[str] = field(default_factory=list)
    """Offsets (committed, or consumed by the processor) beyond the end of the broker
    log: the log lost records under them. A finding, reported in the verdict's reasons."""
    group: dict | None = None
    """Several processors: who applied what, partition moves (harness/checker/members.py)."""
    truncated: dict[int, tuple[int, int]] = field(default_factory=dict)
    """NATS runs: partition -> (processor's durable position, log end) where the log ends
    before what the processor had consumed (harness/checker/truncated.py)."""
    broker: str = "builtin"
    """"builtin" | "nats" | "mosquitto": the system the log was (cluster.json config.broker).
    With mosquitto ``log_available`` is False: MQTT offsets are local to a client session
    and nothing can be read back from the broker."""
    replicas: dict | None = None
    """NATS runs: server -> partition -> {messages, first_seq, last_seq} (harness/nats_dump.py)."""


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


def read_history(path: Path) -> tuple[set[str], set[str]]:
    """(invoked, acked) order ids from a producer history (checked by validate.history_ops;
    only a torn last line is ignored).

    Raises:
        InputError: missing, damaged or of the wrong shape; an ``ok`` for orders never invoked.
    """
    invoked: set[str] = set()
    acked: set[str] = set()
    for op in validate.history_ops(path):
        t = op["type"]
        orders = op["value"].get("orders") or []
        if t == "invoke":
            invoked.update(map(intern, orders))
        elif t == "ok":
            acked.update(map(intern, orders))
    stray = acked - invoked
    if stray:
        raise InputError(f"{path}: {len(stray)} order(s) acknowledged but never invoked "
                         f"(first {min(stray)!r:.40}): not a consistent history")
    return invoked, acked


def read_broker_log(broker_dir: Path, ends: dict[int, int] | None = None
                    ) -> tuple[Counter, dict[str, tuple[int, int]]]:
    """Count every order id in every partition log of the broker (offline); ``ends``
    (if given) receives each partition's end offset (validated by validate.broker_partitions)."""
    from nodes.broker.log import read_values
    from nodes.broker.record import CorruptRecordError
    counts: Counter = Counter()
    first: dict[str, tuple[int, int]] = {}
    n = validate.broker_meta(broker_dir)
    validate.broker_partitions(broker_dir, n)
    order = events_pb2.Order()
    parse = order.ParseFromString
    plain: dict[str, int] = {}   # a dict's get is faster than Counter.__missing__ on 1M new keys
    get = plain.get
    for p in range(n):
        try:
            for offset, value in read_values(broker_dir, p):
                if ends is not None:
                    ends[p] = offset + 1
                try:
                    parse(value)
                except Exception:  # a poison record (undecodable value, CRC intact): not an order
                    continue
                oid = intern(order.order_id)   # one str object per order id across every structure
                c = get(oid, 0)
                plain[oid] = c + 1
                if not c:
                    first[oid] = (p, offset)
        except CorruptRecordError as e:
            raise InputError(f"broker log: {e}") from None
        except OSError as e:
            raise InputError(f"{broker_dir}: partition {p}: cannot read ({e.strerror or e})") from None
    counts.update(plain)
    return counts, first


def read_nats_dump(broker_dir: Path, ends: dict[int, int] | None = None
                   ) -> tuple[Counter, dict[str, tuple[int, int]], dict]:
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
    counts: Counter = Counter()
    first: dict[str, tuple[int, int]] = {}
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
            oid = intern(row[1])
            counts[oid] += 1
            first.setdefault(oid, (int(p), row[0]))
    if ends is not None:
        for p, end in (dump.get("high_watermarks") or {}).items():
            ends[int(p)] = max(ends.get(int(p), 0), int(end))
    return counts, first, dump.get("replicas") or {}


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
    data = RunData(mode=config["mode"], broker=str(config.get("broker", "builtin")),
                   workload={oid: (a, amount) for oid, a, amount in workload_rows(config, d)})
    history = d / "producer" / "history.jsonl"
    data.invoked, data.acked = read_history(history)
    ends: dict[int, int] = {}
    offsets_file = d / "broker" / "consumer-offsets.json"
    # Read the committed offsets BEFORE the log: on a live cluster the log only grows,
    # so offsets read first can never point past the log read after.
    offsets = validate.read_json(offsets_file) if offsets_file.exists() else None
    if config.get("broker") == "nats":
        data.log_counts, data.log_positions, data.replicas = read_nats_dump(d / "broker", ends)
    elif config.get("broker") == "mosquitto":
        # MQTT keeps no log a client can read back: judged from the history and the sink
        # alone (no lost-from-log, divergent, truncated, reordered; docs/brokers.md).
        data.log_available = False
    else:
        data.log_counts, data.log_positions = read_broker_log(d / "broker", ends)
    if offsets is not None:
        validate.consumer_offsets(offsets_file, ends, offsets, data.log_truncated)
    if not data.invoked and data.log_counts:
        raise InputError(f"{history}: no operation, but the broker log holds "
                         f"{sum(data.log_counts.values()):,} records: history lost or truncated")
    strangers = {o for o in data.invoked.difference(data.workload)
                 if not o.startswith("<sha256:")}  # a long id the producer wrote as its hash
    if strangers:
        raise InputError(f"{history}: {len(strangers):,} order id(s) not in this run's workload "
                         f"(first {min(strangers)!r:.40}): not this run's history")
    from harness.checker.external import operator_state, read_sink
    sink_counts, data.balances = read_sink(d / "sink")   # sink.db, or an external sink's snapshot
    data.sink_counts = {intern(oid): n for oid, n in sink_counts.items()}
    from nodes.sink.schema import read_dead_letters
    from harness.checker.members import group_facts
    data.group = group_facts(d / "sink" / "sink.db")
    if (d / "sink" / "sink.db").exists():   # an external sink's dead letters are not in its Snapshot
        data.dead_letters = read_dead_letters(d / "sink" / "sink.db")
    del sink_counts
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
