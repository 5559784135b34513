"""Did the mode keep its promise? (shared/DESIGN.md, "History and audit")

- at-most-once promises no duplicates (loss allowed);
- at-least-once promises no loss (duplicates allowed);
- exactly-once promises neither, with exact balances and operator state.

A sink that disagrees with itself (``balance-mismatch``) or holds orders never
produced (``unexpected``) breaks every mode. A weaker mode that showed no
anomaly at all is ``not-exercised``: its faults did not hit, which proves
nothing (the kind of result a checker must not report as a win).

Dead letters (``dead-lettered``, issue 11): a poison record that is not a
workload order was set aside and reported; the promise is judged on the
workload, so it changes no verdict and adds a reason ("1 poison record(s)
dead-lettered, reported") to every verdict: a run that held with dead letters
says so. A dead-lettered workload order is also ``lost`` and counts as loss.
"""

from __future__ import annotations

HELD = "held"
BROKEN = "broken"
NOT_EXERCISED = "not-exercised"

PROMISES = {
    "at-most-once": "no order applied twice",
    "at-least-once": "no order lost",
    "exactly-once": "every order applied once, balances exact",
}


def decide(mode: str, counts: dict[str, int], balance_ok: bool) -> tuple[str, list[str]]:
    """Return (verdict, reasons) from anomaly counts ({"lost": n, ...}); the count
    ``dead-lettered-poison`` (dead letters that are not workload orders) adds a reason.

    Raises:
        ValueError: an unknown mode.
    """
    verdict, reasons = _decide(mode, counts, balance_ok)
    poison = counts.get("dead-lettered-poison", 0)
    if poison:
        reasons.append(f"{poison} poison record(s) dead-lettered, reported (not workload orders)")
    return verdict, reasons


def _decide(mode: str, counts: dict[str, int], balance_ok: bool) -> tuple[str, list[str]]:
    if mode not in PROMISES:
        raise ValueError(f"unknown mode {mode!r}")
    c = lambda name: counts.get(name, 0)  # noqa: E731
    reasons = []
    for name in ("balance-mismatch", "unexpected"):
        if c(name):
            reasons.append(f"{c(name)} {name}")
    if mode == "at-most-once":
        if c("duplicated"):
            reasons.append(f"{c('duplicated')} duplicated")
        if reasons:
            return BROKEN, reasons
        return (HELD, [f"{c('lost')} lost (allowed), none duplicated"]) if c("lost") else (NOT_EXERCISED, ["no anomaly at all"])
    if mode == "at-least-once":
        if c("lost"):
            reasons.append(f"{c('lost')} lost" + (f" ({c('lost-acknowledged')} acknowledged)" if c("lost-acknowledged") else ""))
        if reasons:
            return BROKEN, reasons
        return (HELD, [f"{c('duplicated')} duplicated (allowed), none lost"]) if c("duplicated") else (NOT_EXERCISED, ["no anomaly at all"])
    for name in ("lost", "duplicated", "state-mismatch"):
        if c(name):
            reasons.append(f"{c(name)} {name}")
    if not balance_ok and not reasons:
        reasons.append("balances differ from the workload's totals")
    return (BROKEN, reasons) if reasons else (HELD, ["none lost, none duplicated, balances exact"])
