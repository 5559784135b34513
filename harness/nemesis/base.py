"""The nemesis protocol and its context."""

from __future__ import annotations

from dataclasses import dataclass

from harness.cluster import Cluster
from harness.history import HistoryWriter


@dataclass
class NemesisContext:
    cluster: Cluster
    history: HistoryWriter


class Nemesis:
    """Carries out one family of schedule steps.

    ``invoke`` performs the step (including its duration: a node's downtime, a
    link fault's armed time) and returns a dict for the history's ``ok`` line.
    ``heal`` undoes whatever this nemesis may have left behind (final step).
    """

    def __init__(self, ctx: NemesisContext) -> None:
        self.ctx = ctx

    async def invoke(self, step: dict) -> dict:
        raise NotImplementedError

    async def heal(self) -> None:
        raise NotImplementedError
