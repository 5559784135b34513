"""The shape every anomaly family returns."""

from __future__ import annotations

from dataclasses import dataclass, field

EXAMPLES = 10
"""How many order ids (or accounts) each anomaly lists, first ones in workload order."""

HOP_PRODUCER_BROKER = "producer->broker"
HOP_BROKER_SINK = "broker->sink"
HOP_SINK = "sink"
HOP_END_TO_END = "producer->sink"
"""Where an order fell out when no log can be read (MQTT): somewhere between the two."""


@dataclass
class Anomaly:
    """One anomaly family's findings.

    Attributes:
        name: "lost", "lost-acknowledged", "duplicated", ...
        count: how many orders (or accounts) show it.
        examples: the first ids, at most EXAMPLES.
        by_hop: count per hop where it happened ("producer->broker", "broker->sink").
        extra: family-specific figures (e.g. extra applications of duplicates).
    """

    name: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    by_hop: dict[str, int] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def add(self, ident: str, hop: str | None = None) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(ident)
        if hop:
            self.by_hop[hop] = self.by_hop.get(hop, 0) + 1

    @classmethod
    def of(cls, name: str, examples: list[str], count: int, by_hop: dict[str, int] | None = None) -> "Anomaly":
        """A family computed in bulk (harness.checker.table): the first ``examples`` (at most
        EXAMPLES, in workload order), the ``count`` and the count per hop."""
        return cls(name, count, list(examples[:EXAMPLES]), dict(by_hop or {}))

    def to_json(self) -> dict:
        out = {"count": self.count, "examples": self.examples}
        if self.by_hop:
            out["by_hop"] = self.by_hop
        if self.extra:
            out.update(self.extra)
        return out
