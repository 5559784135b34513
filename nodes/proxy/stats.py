"""Per-method call counters of a proxy (the Stats RPC and the Status JSON)."""

from __future__ import annotations

from typing import Any

from nodes.common.limits import MAX_PROXY_METHODS

OTHER = "(other)"
"""Counters of method names beyond MAX_PROXY_METHODS (names come from the wire)."""

COUNTERS = ("calls", "forwarded", "dropped", "duplicated", "delayed", "errored", "upstream_errors",
            "held")


class MethodStats:
    """Counters of one method since the proxy started (plain ints: one event loop, no locks)."""

    __slots__ = COUNTERS

    def __init__(self) -> None:
        for c in COUNTERS:
            setattr(self, c, 0)

    def to_json(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in COUNTERS}


class LinkStats:
    """Counters per full method name, created on the first call of a method.

    Bounded: at most MAX_PROXY_METHODS names (plus ``(other)``); calls of further
    names (a client inventing method names) are counted under ``(other)``.
    """

    def __init__(self) -> None:
        self.methods: dict[str, MethodStats] = {}

    def of(self, method: str) -> MethodStats:
        s = self.methods.get(method)
        if s is None:
            if len(self.methods) >= MAX_PROXY_METHODS:
                method = OTHER
                s = self.methods.get(OTHER)
                if s is not None:
                    return s
            s = self.methods[method] = MethodStats()
        return s

    def totals(self) -> dict[str, int]:
        return {c: sum(getattr(s, c) for s in self.methods.values()) for c in COUNTERS}

    def to_json(self) -> dict[str, Any]:
        return {m: s.to_json() for m, s in sorted(self.methods.items())}
