"""Balances: ``balance-mismatch`` (sink internally inconsistent), ``balance_ok``
(sink equals the ideal), and ``state-mismatch`` (the processor's operator state)."""

from __future__ import annotations

import numpy as np

from harness.checker.anomaly import HOP_SINK, Anomaly
from harness.checker.inputs import RunData
from harness.checker.table import OrderTable


def _per_account(t: OrderTable, cents: np.ndarray) -> dict[str, int]:
    """account -> sum of ``cents`` over its orders, exact: int64 when no sum can leave its
    range, else Python ints (never float weights)."""
    if cents.dtype != object and int(np.abs(cents).max(initial=0)) * max(1, len(cents)) >= 2 ** 62:
        cents = cents.astype(object)
    out = np.zeros(len(t.accounts), cents.dtype if cents.dtype == object else np.int64)
    if cents.dtype == object:
        out[:] = 0
    np.add.at(out, t.account, cents)
    return dict(zip(t.accounts, out.tolist()))


def _cents(t: OrderTable, times: np.ndarray | None) -> np.ndarray:
    """amount x times per order, in int64 when no sum can leave its range, else Python ints."""
    if times is None:
        return t.amount
    bound = int(np.abs(t.amount).max(initial=0)) * int(np.abs(times).max(initial=0)) * max(1, len(t))
    if bound < 2 ** 62:
        return t.amount * times
    return np.array([a * n for a, n in zip(t.amount.tolist(), times.tolist())], object)


def ideal_balances(data: RunData, t: OrderTable | None = None) -> dict[str, int]:
    """account -> cents if every workload order were applied exactly once."""
    t = data.order_table() if t is None else t
    return _per_account(t, t.amount)


def implied_balances(data: RunData, t: OrderTable | None = None) -> dict[str, int]:
    """account -> cents implied by the sink's own per-order applied counts."""
    t = data.order_table() if t is None else t
    return _per_account(t, _cents(t, t.sink_count))


def check_balances(data: RunData, t: OrderTable | None = None) -> tuple[Anomaly, bool, dict]:
    """Return (balance-mismatch, balance_ok, per-account deltas from the ideal)."""
    t = data.order_table() if t is None else t
    mismatch = Anomaly("balance-mismatch")
    implied = implied_balances(data, t)
    for account in sorted(set(implied) | set(data.balances)):
        if implied.get(account, 0) != data.balances.get(account, 0):
            mismatch.add(account, HOP_SINK)
    ideal = ideal_balances(data, t)
    deltas = {a: data.balances.get(a, 0) - ideal.get(a, 0)
              for a in sorted(set(ideal) | set(data.balances))
              if data.balances.get(a, 0) != ideal.get(a, 0)}
    return mismatch, not deltas, deltas


def check_state(data: RunData, t: OrderTable | None = None) -> Anomaly:
    """Exactly-once: the checkpointed operator state must equal the ideal totals
    once the pipeline has drained (the last checkpoint covers every record)."""
    mismatch = Anomaly("state-mismatch")
    if data.operator_state is None:
        return mismatch
    ideal = ideal_balances(data, t)
    for account in sorted(set(ideal) | set(data.operator_state)):
        if ideal.get(account, 0) != data.operator_state.get(account, 0):
            mismatch.add(account)
    return mismatch
