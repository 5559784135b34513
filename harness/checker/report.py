"""Compose the anomaly families into one report and a verdict (Jepsen's checker.compose)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.checker.anomaly import Anomaly
from harness.checker.balance import check_balances, check_state
from harness.checker.dead_lettered import check_dead_lettered
from harness.checker.divergent import check_divergent
from harness.checker.truncated import check_truncated
from harness.checker.lost_from_log import check_lost_from_log
from harness.checker.duplicated import check_duplicated, check_log_duplicates, check_unexpected
from harness.checker.inputs import RunData
from harness.checker.lost import check_lost
from harness.checker.ordering import check_order
from harness.checker.verdict import decide


@dataclass
class CheckReport:
    """The checker's result for one run of one mode.

    Attributes:
        mode: the guarantee mode checked.
        events: workload size; acked: orders the broker acknowledged.
        anomalies: name -> Anomaly (every family, also those with count 0).
        balance_ok: every sink balance equals the ideal workload total.
        balance_deltas: account -> (sink - ideal) cents, for accounts that differ.
        verdict: "held" | "broken" | "not-exercised"; reasons: why, in words.
    """

    mode: str
    events: int
    acked: int
    anomalies: dict[str, Anomaly]
    balance_ok: bool
    balance_deltas: dict[str, int] = field(default_factory=dict)
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)
    group: dict | None = None
    """Several processors: which member applied each order, partition moves (members.py)."""

    def count(self, name: str) -> int:
        return self.anomalies[name].count

    def to_json(self) -> dict:
        return {"mode": self.mode, "events": self.events, "acked": self.acked,
                "lost": self.count("lost"), "lost_acknowledged": self.count("lost-acknowledged"),
                "duplicated": self.count("duplicated"), "balance_ok": self.balance_ok,
                "verdict": self.verdict, "reasons": self.reasons,
                "balance_deltas": self.balance_deltas,
                "anomalies": {n: a.to_json() for n, a in self.anomalies.items()},
                **({"group": self.group} if self.group else {})}


def check(data: RunData) -> CheckReport:
    """Run every anomaly family on ``data`` and decide the verdict for ``data.mode``."""
    t = data.order_table()
    lost, lost_ack = check_lost(data, t)
    mismatch, balance_ok, deltas = check_balances(data, t)
    families = [lost, lost_ack, check_duplicated(data, t), check_log_duplicates(data, t), check_unexpected(data, t),
                mismatch, check_state(data, t), check_order(data, t), check_dead_lettered(data),
                check_divergent(data), check_truncated(data), check_lost_from_log(data, t)]
    anomalies = {a.name: a for a in families}
    counts = {n: a.count for n, a in anomalies.items()}
    counts["dead-lettered-poison"] = anomalies["dead-lettered"].extra.get("poison", 0)
    verdict, reasons = decide(data.mode, counts, balance_ok)
    reasons += [f"note: {line}" for line in data.log_truncated[:4]]
    reasons += data.unchecked   # said with the verdict, never a silent "held"
    return CheckReport(mode=data.mode, events=len(t), acked=int(t.acked.sum()), anomalies=anomalies,
                       balance_ok=balance_ok, balance_deltas=deltas, verdict=verdict, reasons=reasons,
                       group=data.group)
