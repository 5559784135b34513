"""Operator state: the running total per account, in cents.

This is the keyed state a Flink job would hold (a ``ValueState<Long>`` per
account key). It is snapshotted into every checkpoint and restored from it.
"""

from __future__ import annotations

from nodes.pb.events_pb2 import Order


class OperatorState:
    """Per-account totals ``{account: cents}`` built from the orders processed."""

    def __init__(self, totals: dict[str, int] | None = None) -> None:
        self.totals: dict[str, int] = dict(totals or {})

    def apply(self, order: Order) -> None:
        """Add ``order.amount_cents`` to the order's account total."""
        self.totals[order.account] = self.totals.get(order.account, 0) + int(order.amount_cents)

    def snapshot(self) -> dict[str, int]:
        """A copy of the totals, sorted by account (JSON-able)."""
        return {k: self.totals[k] for k in sorted(self.totals)}

    def restore(self, totals: dict[str, int]) -> None:
        """Replace the totals with a checkpoint's snapshot."""
        self.totals = {str(k): int(v) for k, v in totals.items()}
