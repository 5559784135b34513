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

import grpc

from harness.nemesis.base import Nemesis
from harness.nemesis.process import already_dead
from nodes.common.failpoints import ENV_VAR, Arming

DEFAULT_GRACE_MS = 30_000
"""Without ``kill_after_ms``: SIGKILL a node still alive after this long (recorded as killed)."""


class StopNemesis(Nemesis):
    """``{"f": "stop", "node": N, "kill_after_ms": K (optional), "down_ms": T}``:
    SIGTERM the node; if it is still alive K ms later, SIGKILL it (killed during
    its shutdown); keep it down T ms, restart it and wait for SERVING.

    The ``ok`` value says how it ended: ``graceful`` (exited by itself with code
    0), ``killed`` (SIGKILLed after K ms), ``exit_code`` and ``shutdown_ms``
    (SIGTERM to exit), plus ``new_pid``."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.logical_done: dict[str, int] = {}
        """node -> logical stops carried out (each waits for the ones before it)."""

    async def invoke(self, step: dict) -> dict:
        waited = await self._wait_pause(step) if step.get("pause_at") else None
        out = await self._stop(step)
        if waited is not None:
            self.logical_done[step["node"]] = self.logical_done.get(step["node"], 0) + 1
            out["pause_at"] = waited
        return out

    async def _wait_pause(self, step: dict) -> dict:
        """A logical stop (harness.nemesis.logical.stop_triggers): wait for the stops of
        this node before it, then until its process paused at ``pause_at`` (ListFailpoints
        says fired; up to 60 s, then the SIGTERM goes anyway and ``paused`` says false)."""
        from harness.nemesis.failpoint import list_failpoints
        node, want = step["node"], step["pause_at"]
        t0 = time.monotonic()
        deadline = t0 + 60.0
        while self.logical_done.get(node, 0) < want["seq"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        paused = False
        while not paused and time.monotonic() < deadline:
            p = self.ctx.cluster.nodes[node]
            try:
                fps = await list_failpoints(p.address, timeout_s=2.0) if p.running else []
                paused = any(f["name"] == want["name"] and f["total_fired"] >= 1 for f in fps)
            except grpc.aio.AioRpcError:
                pass
            if not paused:
                await asyncio.sleep(0.05)
        return {"paused": paused, "waited_ms": round((time.monotonic() - t0) * 1000)} | want

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
            if step.get("next_pause"):  # the node's next logical stop pauses in this new process
                nxt = step["next_pause"]
                spec = Arming(nxt["name"], "pause", nth=int(nxt["nth"]), count=1).validate().spec()
                p.once_env[ENV_VAR] = ";".join(filter(None, [p.once_env.get(ENV_VAR, ""), spec]))
            await p.start_owned()
        return {"stopped_pid": pid, "graceful": not killed and code == 0, "killed": killed,
                "exit_code": code, "shutdown_ms": shutdown_ms, "kill_after_ms": kill_after,
                "new_pid": p.pid}

    async def heal(self) -> None:
        """Nothing to undo: every stop step restarts its node (the kill nemesis's heal
        restarts one whose step was cancelled during its downtime)."""
