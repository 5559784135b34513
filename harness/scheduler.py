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
    """Runs the steps of a schedule against a cluster.

    A step fires once the producer's source position reaches ``at`` (or the
    producer is done), plus ``after_ms`` ms if the step has it. Each step runs
    as its own task, so steps overlap in time (a broker restart during a
    producer pause: ``{"at": 400, "f": "pause", "node": "producer", "for_ms":
    3000}`` and ``{"at": 400, "after_ms": 500, "f": "stop", "node": "broker"}``).
    Each step is recorded in the nemesis history as ``invoke`` then ``ok``
    (with what happened) or ``info`` (it raised, or was cancelled by the heal:
    the outcome of the fault is unknown).
    """

    def __init__(self, cluster: Cluster, schedule: dict, history: HistoryWriter,
                 poll_s: float = 0.02) -> None:
        self.cluster = cluster
        from harness.nemesis.logical import expand
        self.steps = expand(sorted(schedule.get("steps", []), key=lambda s: s["at"]), cluster.config)
        self.history = history
        self.poll_s = poll_s
        self.ctx = NemesisContext(cluster, history)
        self.nemeses: dict[str, Nemesis] = {f: cls(self.ctx) for f, cls in NEMESES.items()}
        self.fired: list[dict] = []
        self.tasks: list[asyncio.Task] = []
        self._armed: set[int] = set()
        self._seen, self._done = -1, False

    async def _producer_position(self) -> tuple[int, bool]:
        if "producer" not in self.cluster.nodes:
            return 0, True  # no workload to wait for: every step is due

        try:
            s = await self.cluster.status("producer", timeout_s=1.0)
            return int(s.get("position", 0)), bool(s.get("done"))
        except grpc.aio.AioRpcError:
            return -1, False

    async def wait_position(self, at: int, timeout_s: float) -> None:
        """Return once the producer has reached ``at`` (remembered: a position already
        seen needs no new look, e.g. while a step holds the producer paused) or is done."""
        deadline = time.monotonic() + timeout_s
        while True:
            interrupt.check()
            if self._seen >= at or self._done:
                return
            pos, done = await self._producer_position()
            self._seen, self._done = max(self._seen, pos), self._done or done
            if pos >= at or done or time.monotonic() > deadline or self.cluster.could_not_restart():
                return
            await asyncio.sleep(self.poll_s)

    def _ready(self, step: dict) -> bool:
        """Whether what ``step`` acts on is up: its node running, its link's proxy started.
        A failpoint step of a node not started yet (the producer, started last) is ready:
        it is armed at the node's first start, so its hits count from the first one."""
        node = step.get("node")
        if node is not None and step.get("f") == "failpoint" and node not in self.cluster.nodes \
                and node not in (self.cluster.config.external or {}) and node != "nats":  # armed at start
            return True
        if node == "nats":   # a server chosen by role when the step fires (Cluster.resolve_node)
            return self.cluster.nats is not None
        if node is not None and not (node in self.cluster.nodes and self.cluster.nodes[node].running):
            return False
        link = step.get("link")
        if link is not None and self.cluster.config.proxies and not self.cluster.link_proxies(link):
            return False
        return True

    async def arm(self, *, final: bool = False) -> list[dict]:
        """Apply the ``"arm": true`` steps (call-count triggered faults) whose node or
        link is up and that are not armed yet; the cluster calls this as soon as the
        proxies run (before any node that calls through them starts) and again after
        each later start. With ``final`` every remaining arm step is applied."""
        out = []
        for i, step in enumerate(self.steps):
            if step.get("arm") and i not in self._armed and (final or self._ready(step)):
                self._armed.add(i)
                out.append(await self._fire(i, step))
        return out

    async def run(self, step_timeout_s: float = 60.0) -> list[dict]:
        """Fire every other step at its position, each as its own task; return the
        ``ok``/``info`` records once every step has finished."""
        try:
            for i, step in enumerate(self.steps):
                if step.get("arm"):
                    continue
                await self.wait_position(step["at"], step_timeout_s)
                self.tasks.append(asyncio.ensure_future(self._fire_later(i, step)))
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            await self.cancel_steps()
        return self.fired

    async def _fire_later(self, i: int, step: dict) -> dict:
        if step.get("after_ms"):
            await asyncio.sleep(step["after_ms"] / 1000)
        return await self._fire(i, step)

    async def cancel_steps(self) -> None:
        """Cancel the steps still running and wait until each has finished (each
        records ``info`` "cancelled"; what it left behind is for :meth:`heal`)."""
        pending = [t for t in self.tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

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
                self.fired.append(self.history.record("info", step["f"], value, error="cancelled"))
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
        """The final step: finish (cancel) steps still running, then heal every nemesis:
        disarm failpoints, heal every link, resume paused nodes, restart dead ones,
        and whatever a nemesis added to NEMESES undoes in its own ``heal``."""
        await self.cancel_steps()
        self.history.record("invoke", "heal", {})
        errors = []
        first = ("failpoint", "link", "pause")
        order = [*first, *(n for n in self.nemeses if n not in (*first, "kill")), "kill"]
        for name in order:  # "kill" last: it restarts whatever is still down
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
