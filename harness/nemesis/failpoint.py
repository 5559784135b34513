"""Failpoints as a nemesis: arm a named failpoint in a node, restart it if it crashed.

Step shape (``f`` = "failpoint"; see nodes/common/failpoints.py for the names
and actions)::

    {"at": 0, "arm": true, "f": "failpoint", "node": "processor",
     "name": "processor.after-checkpoint-before-commit", "action": "crash",
     "nth": 3, "count": 1, "down_ms": 300}

``nth`` counts hits from the arming, so a step armed before the workload
(``"arm": true``) fires at the same protocol step in every run of a seed.
For ``crash`` the nemesis watches the node's process: when it exits, the
crash is recorded in the history (``failpoint-crash``), the node stays down
``down_ms`` ms and is restarted on the same address (the failpoint is gone
after the restart: it lived in the dead process); any other exit is reported
as ``node-exited``, never restarted as if it were the crash. ``heal`` disarms
every failpoint in every running node and finishes pending restarts.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from harness.nemesis.base import Nemesis
from harness.process import NodeProcess
from nodes.common.control_auth import control_channel
from nodes.pb import node_pb2, node_pb2_grpc


async def arm_failpoint(address: str, name: str, action: str, *, nth: int = 1, count: int = 1,
                        delay_ms: int = 0, timeout_ms: int = 0, timeout_s: float = 5.0) -> str:
    """ArmFailpoint on the node at ``address``; return the armed spec.

    Raises:
        grpc.aio.AioRpcError: NOT_FOUND (unknown name), INVALID_ARGUMENT, UNAVAILABLE (node down).
    """
    async with control_channel(address) as ch:
        resp = await node_pb2_grpc.NodeControlStub(ch).ArmFailpoint(
            node_pb2.ArmFailpointRequest(name=name, action=action, nth=nth, count=count,
                                         delay_ms=delay_ms, timeout_ms=timeout_ms), timeout=timeout_s)
    return resp.spec


async def disarm_failpoint(address: str, name: str = "", timeout_s: float = 5.0) -> bool:
    """DisarmFailpoint (``name`` "" = all); return whether anything was armed."""
    async with control_channel(address) as ch:
        resp = await node_pb2_grpc.NodeControlStub(ch).DisarmFailpoint(
            node_pb2.DisarmFailpointRequest(name=name), timeout=timeout_s)
    return resp.was_armed


async def list_failpoints(address: str, timeout_s: float = 5.0) -> list[dict]:
    """ListFailpoints: [{name, description, armed, hits, fired, total_fired}]."""
    async with control_channel(address) as ch:
        resp = await node_pb2_grpc.NodeControlStub(ch).ListFailpoints(
            node_pb2.ListFailpointsRequest(), timeout=timeout_s)
    return [{"name": f.name, "description": f.description, "armed": f.armed, "hits": f.hits,
             "fired": f.fired, "total_fired": f.total_fired} for f in resp.failpoints]


def fired_in_logs(mode_dir: Path) -> list[dict]:
    """Every failpoint firing recorded in the nodes' JSON logs under ``mode_dir``:
    [{node, failpoint, action, ts}], in time order (crashes included: logged and
    flushed before the process kills itself)."""
    out = []
    for log in Path(mode_dir).glob("*/*.log"):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"failpoint fired"' not in line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            out.append({"node": ev.get("node"), "failpoint": ev.get("failpoint"),
                        "action": ev.get("action"), "ts": ev.get("ts")})
    return sorted(out, key=lambda e: e["ts"] or 0)


def crash_logged(p: NodeProcess, pid: int | None) -> str | None:
    """The failpoint whose ``crash`` action killed process ``pid`` of node ``p``,
    from its JSON log ("failpoint crash" with that pid, logged and fsynced before
    the SIGKILL); None if that process did not die at a failpoint."""
    log = p.data_dir / f"{p.module}.log"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    needle = f'"pid": {pid}'
    for line in reversed(text.splitlines()):
        if '"failpoint crash"' in line and needle in line:
            try:
                return json.loads(line).get("failpoint")
            except ValueError:
                return None
    return None


class FailpointNemesis(Nemesis):
    """Carries out ``"f": "failpoint"`` steps (see the module doc).

    The crash watcher restarts a node only when its exit was the armed crash:
    SIGKILL (exit -9) and a "failpoint crash" log line for that very pid. Any
    other exit (an exit 1 during recovery, a crash elsewhere) is recorded as a
    ``node-exited`` info op and left down for the final heal: an exit no fault
    step caused is always reported, never absorbed as if it were the crash. An
    exit the harness caused (a kill or stop step) belongs to that step.
    """

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.watchers: list[tuple[NodeProcess, asyncio.Task]] = []
        self.down: set[str] = set()

    async def invoke(self, step: dict) -> dict:
        p = self.ctx.cluster.nodes[step["node"]]
        spec = await arm_failpoint(p.address, step["name"], step.get("action", "crash"),
                                   nth=int(step.get("nth", 1)), count=int(step.get("count", 1)),
                                   delay_ms=int(step.get("delay_ms", 0)),
                                   timeout_ms=int(step.get("timeout_ms", 0)))
        if step.get("action", "crash") == "crash":
            # One watcher per node process, however many crash failpoints are armed in it.
            if not any(w is p and not t.done() for w, t in self.watchers):
                task = asyncio.ensure_future(self._restart_after_crash(p, step))
                self.watchers.append((p, task))
        return {"armed": spec, "pid": p.pid}

    async def _restart_after_crash(self, p: NodeProcess, step: dict) -> None:
        proc, pid = p.proc, p.pid
        code = await proc.wait()
        if p.proc is not proc or p.exit_cause is not None:
            return  # the harness ended it (a kill or stop step): that step owns the restart
        point = crash_logged(p, pid) if code == -signal.SIGKILL else None
        if point is None:
            self.ctx.reported_exits.add((p.name, pid))
            self.ctx.history.record("info", "node-exited", {"node": p.name, "pid": pid, "exit_code": code},
                                    error="exited while a crash failpoint was armed, but not at it; "
                                          "left down for the final heal", stderr=p.stderr_tail(3))
            return
        self.down.add(p.name)
        self.ctx.history.record("ok", "failpoint-crash", {"node": p.name, "pid": pid, "exit_code": code,
                                                          "failpoint": point})
        try:
            await asyncio.sleep(int(step.get("down_ms", 300)) / 1000)
            await p.start_if_down()
            self.ctx.history.record("ok", "failpoint-restart", {"node": p.name, "new_pid": p.pid})
        except Exception as e:  # recorded; the final heal tries again
            self.ctx.history.record("info", "failpoint-restart", {"node": p.name},
                                    error=f"{type(e).__name__}: {e}")
        finally:
            self.down.discard(p.name)

    async def heal(self) -> None:
        """Finish restarts already under way, stop watching, disarm everything still
        armed (releasing any caller a ``pause`` holds). Records ``failpoint-hits``
        (what was still armed and how often it was reached), or an ``info``
        ``failpoint-hits`` naming the nodes that could not be listed."""
        for p, task in self.watchers:
            if p.name in self.down:
                await asyncio.wait({task}, timeout=60)
            if not task.done():
                task.cancel()
        self.watchers.clear()
        hits: dict[str, dict[str, int]] = {}
        errors: dict[str, str] = {}
        for p in self.ctx.cluster.nodes.values():
            if not p.running or p.paused or p.module == "nats":   # a real broker has no failpoints
                continue
            try:
                armed = [f for f in await list_failpoints(p.address) if f["armed"]]
                if armed:
                    hits[p.name] = {f["name"]: f["hits"] for f in armed}
                await disarm_failpoint(p.address)
            except Exception as e:
                errors[p.name] = f"{type(e).__name__}: {e}"
        if hits:  # what was still armed at the heal, and how often it was reached (sweep calibration)
            self.ctx.history.record("ok", "failpoint-hits", hits)
        if errors:
            self.ctx.history.record("info", "failpoint-hits", {"nodes": sorted(errors)},
                                    error="; ".join(f"{n}: {e}" for n, e in errors.items()))
