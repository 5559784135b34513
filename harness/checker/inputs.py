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

from nodes.pb import events_pb2


class InputError(Exception):
    """A run directory lacks a file the audit needs, or holds an unreadable one."""


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
    """(invoked, acked) order ids from a producer history; a torn last line is ignored."""
    invoked: set[str] = set()
    acked: set[str] = set()
    if not path.exists():
        raise InputError(f"missing producer history {path}")
    with open(path, "rb") as f:
        for line in f:
            try:
                op = json.loads(line)
            except ValueError:
                continue  # torn last line of a killed producer
            t = op.get("type")
            orders = (op.get("value") or {}).get("orders") or []
            if t == "invoke":
                invoked.update(map(intern, orders))
            elif t == "ok":
                acked.update(map(intern, orders))
    return invoked, acked


def read_broker_log(broker_dir: Path) -> tuple[Counter, dict[str, tuple[int, int]]]:
    """Count every order id in every partition log of the broker (offline)."""
    from nodes.broker.log import partition_count, read_values
    counts: Counter = Counter()
    first: dict[str, tuple[int, int]] = {}
    try:
        n = partition_count(broker_dir)
    except (OSError, ValueError) as e:
        raise InputError(f"broker log in {broker_dir}: {e}") from None
    order = events_pb2.Order()
    parse = order.ParseFromString
    plain: dict[str, int] = {}   # a dict's get is faster than Counter.__missing__ on 1M new keys
    get = plain.get
    for p in range(n):
        for offset, value in read_values(broker_dir, p):
            parse(value)
            oid = intern(order.order_id)   # one str object per order id across every structure
            c = get(oid, 0)
            plain[oid] = c + 1
            if not c:
                first[oid] = (p, offset)
    counts.update(plain)
    return counts, first


def read_checkpoint_state(path: Path) -> dict[str, int] | None:
    """Operator state (account -> cents) of the processor's last checkpoint, or None."""
    try:
        ck = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise InputError(f"unreadable checkpoint {path}: {e}") from None
    state = ck.get("state") or ck.get("operator_state") or {}
    return {str(k): int(v) for k, v in state.items()}


def load_run(run_dir: Path, *, mode_dir: Path | None = None) -> RunData:
    """Load one cluster's data from ``mode_dir`` (default: ``run_dir``).

    Raises:
        InputError: a required file is missing or unreadable; the message names it.
    """
    d = Path(mode_dir or run_dir)
    manifest = d / "cluster.json"
    if not manifest.exists():
        raise InputError(f"missing {manifest}: not a run directory")
    config = json.loads(manifest.read_text())["config"]
    data = RunData(mode=config["mode"],
                   workload={oid: (a, amount) for oid, a, amount in workload_rows(config, d)})
    data.invoked, data.acked = read_history(d / "producer" / "history.jsonl")
    if not (d / "broker").is_dir():
        raise InputError(f"missing broker data dir {d / 'broker'}")
    data.log_counts, data.log_positions = read_broker_log(d / "broker")
    from harness.checker.external import operator_state, read_sink
    sink_counts, data.balances = read_sink(d / "sink")   # sink.db, or an external sink's snapshot
    data.sink_counts = {intern(oid): n for oid, n in sink_counts.items()}
    del sink_counts
    if config["mode"] == "exactly-once":
        # The processor's live state captured by the harness after the drain, else
        # the last checkpoint's: both must equal the ideal totals once drained.
        external = "processor" in (config.get("external") or {})
        data.operator_state, why = operator_state(d / "processor", external)
        data.unchecked += [why] if why else []
    return data
