"""Process faults: kill -9 then restart; SIGSTOP then SIGCONT.

Every step that ends a node holds the node's lifecycle lock
(:meth:`harness.process.NodeProcess.exclusive`) from the signal to the
restart, so two nemeses never start one node twice at once; a step aimed at a
node that is already down is recorded with ``"already_dead": true`` and does
nothing (whoever brought it down owns its restart).
"""

from __future__ import annotations

import asyncio

from harness.nemesis.base import Nemesis
from harness.process import NodeProcess


def already_dead(p: NodeProcess) -> dict:
    """The ``ok`` value of a step that found its node down."""
    return {"already_dead": True, "pid": p.pid, "exit_code": p.proc.returncode if p.proc else None,
            "exit_cause": p.exit_cause}


async def _hold_then_release(ctx, step: dict, p: NodeProcess, how: str, waited: dict) -> dict:
    """A quiesce step with ``until``: kill or stop ``p`` and leave it so (the next logical
    step revives it: harness.nemesis.hold), then let the producer go on."""
    from harness.nemesis.hold import hold
    from harness.nemesis.quiesce import release
    if not p.running:
        out = already_dead(p)
    else:
        out = await hold(ctx, p, how)
    await release(ctx.cluster, step, waited)
    return out | {"quiesce": waited}


class KillNemesis(Nemesis):
    """``{"f": "kill", "node": N, "down_ms": T}``: SIGKILL the node (no flush, no
    cleanup: what a crash leaves), keep it down T ms, restart it on the same
    address and wait for SERVING. A logical kill of a NATS server (``quiesce``) keeps
    it down until the others elected a leader for every stream, and puts the leaders
    back on their server after the restart (``leaders``: harness.nats_leaders), before
    the producer goes on; with ``window_batches`` K it first lets the held producer
    send K batches while the streams have no leader (harness.nemesis.window)."""

    async def invoke(self, step: dict) -> dict:
        waited = None
        if step.get("quiesce"):  # a logical kill of a NATS server or mosquitto (harness.nemesis.logical)
            from harness.nemesis.quiesce import quiesce
            waited = await quiesce(self.ctx.cluster, step["quiesce"])
        p = await self.ctx.cluster.resolve_node(step)
        window = None
        if waited is not None and step.get("until"):  # held down until the next step (hold.py)
            return await _hold_then_release(self.ctx, step, p, "kill", waited)
        settled = None
        async with p.exclusive():
            if not p.running:
                return already_dead(p)
            gen = None
            if waited is not None and p is self.ctx.cluster.mosquitto:
                from harness.nemesis.hold import session_generation, settle_mosquitto
                settled = await settle_mosquitto(p)
                gen = None if self.ctx.held else await session_generation(self.ctx.cluster)
            pid = p.pid
            p.kill("kill step")
            code = await p.wait(10)
            if waited is not None and step.get("window_batches"):  # K batches, no leader (window.py)
                from harness.nemesis.window import open_window
                window = await open_window(self.ctx.cluster, step)
            await asyncio.sleep(step.get("down_ms", 300) / 1000)
            leaders = {}
            if waited is not None and step.get("node") == "nats":  # logical: down until the others
                from harness.nats_leaders import wait_leaders  # elected a leader for every stream
                leaders["elected"] = await wait_leaders(self.ctx.cluster.nats)
            await p.start_owned()
        out = {"killed_pid": pid, "exit_code": code, "new_pid": p.pid, "server": p.name}
        if leaders:  # the leaders back where they were (harness.nats_leaders), then the producer goes on
            from harness.nats_leaders import PINNED, place_leaders
            leaders["placed"] = await place_leaders(self.ctx.cluster.nats, PINNED)
            out["leaders"] = leaders
        if window is not None:
            out["window"] = window
        if waited is not None:  # the producer paused for it: bring back what an earlier step held, let it go on
            from harness.nemesis.hold import revive
            from harness.nemesis.quiesce import release
            if settled is not None:
                out["settled"] = settled
            if self.ctx.held:
                out["revived"] = await revive(self.ctx)
            elif gen is not None:  # a subscriber that stayed up: back and subscribed before the producer goes on
                from harness.nemesis.hold import wait_session
                out["session"] = await wait_session(self.ctx.cluster, above=gen)
            await release(self.ctx.cluster, step, waited)
            out["quiesce"] = waited
        return out

    async def heal(self) -> None:
        """Restart every node or proxy found dead. A node the harness brought down
        (a step cancelled during its downtime) is restarted with an ``ok`` restart op;
        one that exited on its own is a finding, never silently papered over: a
        ``node-exited`` info op (unless a watcher already reported that exit)."""
        cluster = self.ctx.cluster
        for name, p in [*cluster.nodes.items(), *cluster.proxies.items()]:
            if p.proc is None or p.running:
                continue
            if getattr(p, "start_error", None):
                continue  # its last start failed (it refused its data dir): the datadir nemesis
                #           recorded node-refused-start and the drain reports it; it stays down
            if p.exit_cause is not None:
                self.ctx.history.record("ok", "restart", {"node": name, "pid": p.pid, "after": p.exit_cause})
            elif (name, p.pid) not in self.ctx.reported_exits:
                self.ctx.reported_exits.add((name, p.pid))
                self.ctx.history.record("info", "node-exited", {"node": name, "pid": p.pid,
                                                                "exit_code": p.proc.returncode},
                                        error="exited outside the schedule; restarted by the final heal",
                                        stderr=p.stderr_tail(3))
            await p.start_if_down()
            cluster.write_manifest()


class PauseNemesis(Nemesis):
    """``{"f": "pause", "node": N, "for_ms": T}``: SIGSTOP the node for T ms, then
    SIGCONT. Its sockets stay open: callers hang until their deadlines. A pause
    guard process resumes and stops the node if the harness dies meanwhile."""

    async def invoke(self, step: dict) -> dict:
        if step.get("quiesce") and step.get("until"):  # stopped until the next step (hold.py)
            from harness.nemesis.quiesce import quiesce
            waited = await quiesce(self.ctx.cluster, step["quiesce"])
            p = await self.ctx.cluster.resolve_node(step)
            return await _hold_then_release(self.ctx, step, p, "pause", waited)
        if step.get("quiesce"):  # logical: the producer held at its Nth batch, not SIGSTOPped
            return await self._hold(step)
        p = await self.ctx.cluster.resolve_node(step)
        if not p.running:
            return already_dead(p)
        pid = p.pid
        p.pause()
        try:
            await asyncio.sleep(step.get("for_ms", 500) / 1000)
        finally:
            if p.pid == pid:
                p.resume()
        return {"pid": pid, "server": p.name}

    async def _hold(self, step: dict) -> dict:
        """A logical pause of the producer (harness.nemesis.quiesce): it stops at its Nth
        batch, ACKed and not yet persisted (nothing in flight), the pipeline drains, it is
        held ``for_ms`` more, then released: an idle producer, the same in every run."""
        from harness.nemesis.quiesce import quiesce, release
        waited = await quiesce(self.ctx.cluster, step["quiesce"])
        await asyncio.sleep(step.get("for_ms", 500) / 1000)
        await release(self.ctx.cluster, step, waited)
        return {"quiesce": waited, "held_ms": step.get("for_ms", 500)}

    async def heal(self) -> None:
        for p in self.ctx.cluster.nodes.values():
            if p.paused:
                p.resume()
