"""The nemesis protocol and its context."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.cluster import Cluster
from harness.history import HistoryWriter


@dataclass
class NemesisContext:
    cluster: Cluster
    history: HistoryWriter
    reported_exits: set = field(default_factory=set)
    """(node name, pid) of exits already recorded as ``node-exited`` (reported once)."""
    logical_done: dict = field(default_factory=dict)
    """node -> logical pause-then-act steps carried out (harness.nemesis.logical.wait_paused)."""
    held: list = field(default_factory=list)
    """Nodes a step left down or stopped until the next logical step (harness.nemesis.hold)."""


class Nemesis:
    """Carries out one family of schedule steps.

    ``invoke`` performs the step (including its duration: a node's downtime, a
    link fault's armed time) and returns a dict for the history's ``ok`` line.
    ``heal`` undoes whatever this nemesis may have left behind (final step).

    Steps run concurrently (harness.scheduler fires each as its own task), so an
    ``invoke`` may take as long as its fault lasts and must be cancellable:
    undo what it did in ``finally`` or leave it to ``heal``.
    """

    def __init__(self, ctx: NemesisContext) -> None:
        self.ctx = ctx

    async def invoke(self, step: dict) -> dict:
        raise NotImplementedError

    async def heal(self) -> None:
        """Undo what this nemesis left behind (default: nothing to undo)."""
