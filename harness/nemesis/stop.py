"""Graceful stop: SIGTERM, optionally SIGKILL during the shutdown, then restart.

Incident 12 of shared/incidents-2.md (a connector stopped with SIGTERM flushed
part of its buffer and committed offsets for all of it) needs the harness to
stop a node the way an operator or an orchestrator does: SIGTERM, the node's
own shutdown path runs (aiohttp's web_runner maps SIGTERM to a graceful stop
the same way), and a restart. Kubernetes sends SIGKILL after its grace period:
``kill_after_ms`` does the same, so a shutdown can be cut in the middle.
"""

from __future__ import annotations

import asyncio
import signal
import time

from harness.nemesis.base import Nemesis
from harness.nemesis.logical import hand_next_pause
from harness.nemesis.process import already_dead

DEFAULT_GRACE_MS = 30_000
"""Without ``kill_after_ms``: SIGKILL a node still alive after this long (recorded as killed)."""


class StopNemesis(Nemesis):
    """``{"f": "stop", "node": N, "kill_after_ms": K (optional), "down_ms": T}``:
    SIGTERM the node; if it is still alive K ms later, SIGKILL it (killed during
    its shutdown); keep it down T ms, restart it and wait for SERVING.

    The ``ok`` value says how it ended: ``graceful`` (exited by itself with code
    0), ``killed`` (SIGKILLed after K ms), ``exit_code`` and ``shutdown_ms``
    (SIGTERM to exit), plus ``new_pid``."""

    async def invoke(self, step: dict) -> dict:
        from harness.nemesis.logical import acted, wait_paused
        waited = await wait_paused(self.ctx, step) if step.get("pause_at") else None
        out = await self._stop(step)
        if waited is not None:
            acted(self.ctx, step)
            out["pause_at"] = waited
        return out

    async def _stop(self, step: dict) -> dict:
        p = await self.ctx.cluster.resolve_node(step)
        kill_after = step.get("kill_after_ms")
        grace_ms = int(kill_after) if kill_after is not None else DEFAULT_GRACE_MS
        async with p.exclusive():
            if not p.running:
                return already_dead(p)
            pid = p.pid
            p.exit_cause = "stop step"
            if p.paused:  # a stopped process cannot run its shutdown; resume it first
                p.resume()
            t0 = time.monotonic()
            p.signal(signal.SIGTERM)
            code = await p.wait(grace_ms / 1000)
            killed = code is None
            if killed:
                p.kill("stop step: killed during shutdown")
                code = await p.wait(10)
            shutdown_ms = round((time.monotonic() - t0) * 1000, 1)
            await asyncio.sleep(step.get("down_ms", 300) / 1000)
            hand_next_pause(p, step)  # the node's next logical step pauses in this new process
            await p.start_owned()
        return {"stopped_pid": pid, "graceful": not killed and code == 0, "killed": killed,
                "exit_code": code, "shutdown_ms": shutdown_ms, "kill_after_ms": kill_after,
                "new_pid": p.pid}

    async def heal(self) -> None:
        """Nothing to undo: every stop step restarts its node (the kill nemesis's heal
        restarts one whose step was cancelled during its downtime)."""
