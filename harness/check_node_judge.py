"""check-node's judgement of one look at the sink, in plain words (no processes: tests drive it).

:func:`tally` compares a sink Snapshot with the orders produced so far;
:func:`promise_violation` says, in one sentence, how a mode's promise was broken
and what the node most likely got wrong.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE


def tally(counts: dict[str, int], balances: dict[str, int], produced: Sequence) -> tuple[list[str], list[str], str]:
    """(lost ids, duplicated ids, other problem in words or "").

    Args:
        counts: order id -> applied count (Snapshot).
        balances: account -> cents (Snapshot).
        produced: the ``testbed.v1.Order`` s produced so far.
    """
    ids = {o.order_id: o for o in produced}
    lost = [i for i in ids if counts.get(i, 0) == 0]
    dup = [i for i in ids if counts.get(i, 0) > 1]
    unexpected = [i for i in counts if i not in ids and counts[i]]
    implied: dict[str, int] = defaultdict(int)
    for i, n in counts.items():
        if i in ids:
            implied[ids[i].account] += ids[i].amount_cents * n
    off = [a for a in sorted(set(implied) | set(balances)) if implied.get(a, 0) != balances.get(a, 0)]
    other = ""
    if unexpected:
        other = f"the sink holds {len(unexpected)} orders never produced (first: {unexpected[0]})"
    elif off:
        other = (f"Snapshot balances disagree with its own orders for {len(off)} accounts (first: {off[0]}: "
                 f"{balances.get(off[0], 0)} != {implied.get(off[0], 0)} cents)")
    return lost, dup, other


def promise_violation(mode: str, node: str, what: str, lost: list[str], dup: list[str], other: str) -> str | None:
    """The sentence saying how ``mode``'s promise was broken after ``what`` happened, or None."""
    if other:
        return f"{what}: {other}"
    if lost and mode != AT_MOST_ONCE:
        hint = (": were their offsets committed before the sink's ACK?" if node == "processor"
                else ": it lost writes it had acknowledged (not durable before the ACK?)")
        return f"{what}: {len(lost)} orders never applied (first: {lost[0]}){hint}; {mode} promises no loss"
    if dup and mode != AT_LEAST_ONCE:
        hint = {AT_MOST_ONCE: "at-most-once must not retry a write nor replay after a crash",
                EXACTLY_ONCE: "exactly-once needs an idempotent write (Upsert by order id) or a "
                              "transaction committed once"}[mode]
        return f"{what}: {len(dup)} orders applied twice (first: {dup[0]}): {hint}"
    return None
