"""Fire a fault schedule's steps at their logical positions, then heal everything."""

from __future__ import annotations

import asyncio
import time

import grpc

from harness import interrupt
from harness.cluster import Cluster
from harness.history import HistoryWriter
from harness.nemesis import NEMESES, Nemesis, NemesisContext


class ScheduleRunner:
    """Runs the steps of a schedule against a cluster, in order of ``at``.

    A step fires once the producer's source position reaches ``at`` (or the
    producer is done). Each step is recorded in the nemesis history as
    ``invoke`` then ``ok`` (with what happened) or ``info`` (it raised: the
    outcome of the fault is unknown).
    """

    def __init__(self, cluster: Cluster, schedule: dict, history: HistoryWriter,
                 poll_s: float = 0.02) -> None:
        self.cluster = cluster
        self.steps = sorted(schedule.get("steps", []), key=lambda s: s["at"])
        self.history = history
        self.poll_s = poll_s
        ctx = NemesisContext(cluster, history)
        self.nemeses: dict[str, Nemesis] = {f: cls(ctx) for f, cls in NEMESES.items()}
        self.fired: list[dict] = []

    async def _producer_position(self) -> tuple[int, bool]:
        try:
            s = await self.cluster.status("producer", timeout_s=1.0)
            return int(s.get("position", 0)), bool(s.get("done"))
        except grpc.aio.AioRpcError:
            return -1, False

    async def wait_position(self, at: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            interrupt.check()
            pos, done = await self._producer_position()
            if pos >= at or done or time.monotonic() > deadline or self.cluster.could_not_restart():
                return
            await asyncio.sleep(self.poll_s)

    async def arm(self) -> list[dict]:
        """Apply the ``"arm": true`` steps (call-count triggered link faults) before
        the workload starts."""
        return [await self._fire(i, step) for i, step in enumerate(self.steps) if step.get("arm")]

    async def run(self, step_timeout_s: float = 60.0) -> list[dict]:
        """Fire every other step at its position; return the ``ok``/``info`` records."""
        for i, step in enumerate(self.steps):
            if step.get("arm"):
                continue
            await self.wait_position(step["at"], step_timeout_s)
            await self._fire(i, step)
        return self.fired

    async def _fire(self, i: int, step: dict) -> dict:
        """Carry out one step, recording invoke then ok (or info if it raised)."""
        nemesis = self.nemeses.get(step["f"])
        value = {k: v for k, v in step.items() if k != "f"}
        value["step"] = i
        self.history.record("invoke", step["f"], value)
        if nemesis is None:
            op = self.history.record("info", step["f"], value, error=f"unknown step kind {step['f']!r}")
        else:
            try:
                result = await nemesis.invoke(step)
                op = self.history.record("ok", step["f"], dict(value, **result))
            except asyncio.CancelledError:
                self.history.record("info", step["f"], value, error="cancelled")
                raise
            except Exception as e:  # a fault that failed to apply is recorded, not fatal
                op = self.history.record("info", step["f"], value, error=f"{type(e).__name__}: {e}")
        self.fired.append(op)
        return op

    async def wait_workload_done(self, timeout_s: float) -> bool:
        """Wait until the producer reports done (armed faults stay armed meanwhile);
        False if it did not finish within ``timeout_s`` (a fault may be holding it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            interrupt.check()
            _, done = await self._producer_position()
            if done:
                return True
            if self.cluster.could_not_restart():  # a node refused its data dir: it will not finish
                return False
            await asyncio.sleep(self.poll_s * 5)
        return False

    async def heal(self) -> None:
        """The final step: heal every link, resume paused nodes, restart dead ones."""
        self.history.record("invoke", "heal", {})
        errors = []
        for name in ("failpoint", "link", "pause", "kill"):
            if name not in self.nemeses:
                continue
            try:
                await self.nemeses[name].heal()
            except Exception as e:
                errors.append(f"{name}: {type(e).__name__}: {e}")
        if errors:
            self.history.record("info", "heal", {}, error="; ".join(errors))
        else:
            self.history.record("ok", "heal", {})
