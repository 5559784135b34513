"""The data one audit looks at: :class:`RunData` (per-order facts in an
:class:`~harness.checker.table.OrderTable`, with their keyed, dict-shaped form on demand)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from harness.checker.table import OrderTable

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
        broker: "builtin" | "nats" | "mosquitto": the system the log was (cluster.json
            config.broker). With mosquitto ``log_available`` is False: MQTT offsets are local
            to a client session and nothing can be read back from the broker.
        group: several processors: who applied what, partition moves (harness/checker/members.py).
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
        self.group: dict | None = None

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
