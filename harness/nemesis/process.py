"""Process faults: kill -9 then restart; SIGSTOP then SIGCONT."""

from __future__ import annotations

import asyncio

from harness.nemesis.base import Nemesis


class KillNemesis(Nemesis):
    """``{"f": "kill", "node": N, "down_ms": T}``: SIGKILL the node (no flush, no
    cleanup: what a crash leaves), keep it down T ms, restart it on the same
    address and wait for SERVING."""

    async def invoke(self, step: dict) -> dict:
        p = self.ctx.cluster.nodes[step["node"]]
        pid = p.pid
        p.kill()
        code = await p.wait(10)
        await asyncio.sleep(step.get("down_ms", 300) / 1000)
        await p.restart()
        return {"killed_pid": pid, "exit_code": code, "new_pid": p.pid}

    async def heal(self) -> None:
        """Restart every node or proxy found dead. None should be (each kill step
        restarts its node), so each is recorded as a ``node-exited`` info op: a
        node that exited on its own is a finding, never silently papered over."""
        cluster = self.ctx.cluster
        for name, p in [*cluster.nodes.items(), *cluster.proxies.items()]:
            if p.proc is not None and not p.running and not getattr(p, "start_error", None):
                # (a node whose last start failed, e.g. it refused its data dir, stays down:
                # the datadir nemesis recorded node-refused-start, the drain reports it)
                self.ctx.history.record("info", "node-exited", {"node": name, "exit_code": p.proc.returncode},
                                        error="exited outside the schedule; restarted by the final heal",
                                        stderr=p.stderr_tail(3))
                await p.restart()
                cluster.write_manifest()


class PauseNemesis(Nemesis):
    """``{"f": "pause", "node": N, "for_ms": T}``: SIGSTOP the node for T ms, then
    SIGCONT. Its sockets stay open: callers hang until their deadlines."""

    async def invoke(self, step: dict) -> dict:
        p = self.ctx.cluster.nodes[step["node"]]
        p.pause()
        try:
            await asyncio.sleep(step.get("for_ms", 500) / 1000)
        finally:
            p.resume()
        return {"pid": p.pid}

    async def heal(self) -> None:
        for p in self.ctx.cluster.nodes.values():
            if p.paused:
                p.resume()
