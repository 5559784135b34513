"""Balances: ``balance-mismatch`` (sink internally inconsistent), ``balance_ok``
(sink equals the ideal), and ``state-mismatch`` (the processor's operator state)."""

from __future__ import annotations

from collections import defaultdict

from harness.checker.anomaly import HOP_SINK, Anomaly
from harness.checker.inputs import RunData


def ideal_balances(data: RunData) -> dict[str, int]:
    """account -> cents if every workload order were applied exactly once."""
    out: dict[str, int] = defaultdict(int)
    for account, amount in data.workload.values():
        out[account] += amount
    return dict(out)


def implied_balances(data: RunData) -> dict[str, int]:
    """account -> cents implied by the sink's own per-order applied counts."""
    out: dict[str, int] = defaultdict(int)
    for oid, n in data.sink_counts.items():
        if oid in data.workload and n:
            account, amount = data.workload[oid]
            out[account] += amount * n
    return dict(out)


def check_balances(data: RunData) -> tuple[Anomaly, bool, dict]:
    """Return (balance-mismatch, balance_ok, per-account deltas from the ideal)."""
    mismatch = Anomaly("balance-mismatch")
    implied = implied_balances(data)
    for account in sorted(set(implied) | set(data.balances)):
        if implied.get(account, 0) != data.balances.get(account, 0):
            mismatch.add(account, HOP_SINK)
    ideal = ideal_balances(data)
    deltas = {a: data.balances.get(a, 0) - ideal.get(a, 0)
              for a in sorted(set(ideal) | set(data.balances))
              if data.balances.get(a, 0) != ideal.get(a, 0)}
    return mismatch, not deltas, deltas


def check_state(data: RunData) -> Anomaly:
    """Exactly-once: the checkpointed operator state must equal the ideal totals
    once the pipeline has drained (the last checkpoint covers every record)."""
    mismatch = Anomaly("state-mismatch")
    if data.operator_state is None:
        return mismatch
    ideal = ideal_balances(data)
    for account in sorted(set(ideal) | set(data.operator_state)):
        if ideal.get(account, 0) != data.operator_state.get(account, 0):
            mismatch.add(account)
    return mismatch
