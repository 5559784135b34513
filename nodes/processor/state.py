"""Operator state: the running total per account, in cents.

This is the keyed state a Flink job would hold (a ``ValueState<Long>`` per
account key). It is snapshotted into every checkpoint and restored from it.
"""

from __future__ import annotations

from nodes.common.limits import int64_add
from nodes.pb.events_pb2 import Order


class StateOverflow(ValueError):
    """Adding an order would take an account's total out of the int64 range."""


class OperatorState:
    """Per-account totals ``{account: cents}`` built from the orders processed."""

    def __init__(self, totals: dict[str, int] | None = None) -> None:
        self.totals: dict[str, int] = dict(totals or {})

    def apply(self, order: Order) -> None:
        """Add ``order.amount_cents`` to the order's account total.

        Raises:
            StateOverflow: the total would leave the int64 range (state unchanged):
                the processor dead-letters the order (nodes/processor/poison.py).
        """
        total = int64_add(self.totals.get(order.account, 0), int(order.amount_cents))
        if total is None:
            raise StateOverflow(f"operator state overflow: account {order.account!r} total "
                                f"{self.totals.get(order.account, 0)} + {order.amount_cents} cents "
                                "leaves the int64 range")
        self.totals[order.account] = total

    def revert(self, order: Order) -> None:
        """Take back an :meth:`apply` (an order the sink refused and the processor dead-lettered)."""
        if order.account in self.totals:
            self.totals[order.account] -= int(order.amount_cents)

    def snapshot(self) -> dict[str, int]:
        """A copy of the totals, sorted by account (JSON-able)."""
        return {k: self.totals[k] for k in sorted(self.totals)}

    def restore(self, totals: dict[str, int]) -> None:
        """Replace the totals with a checkpoint's snapshot."""
        self.totals = {str(k): int(v) for k, v in totals.items()}
