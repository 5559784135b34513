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
as ``node-exited``, never restarted as if it were the crash. A chained step
(the node's next logical kill, counted from the restart) is armed in that
restart's environment, before the node serves (``failpoint-rearm`` with
``"at_start": true``). ``heal`` disarms
every failpoint in every running node and finishes pending restarts.

A node the cluster has not started yet (the producer: the campaign starts it
after the ``arm`` steps, so that the workload begins with every fault armed)
cannot be armed by RPC: its arming is handed to its first start instead
(``TESTBED_FAILPOINTS`` in that start's environment only, so a restart does
not re-arm it), and the crash watcher attaches once the process exists. The
``ok`` record then says ``"at_start": true``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import grpc

from harness.nemesis.base import Nemesis
from harness.process import NodeProcess
from nodes.common.control_auth import control_channel
from nodes.common.failpoints import ENV_VAR, Arming
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
            node = ev.get("node")
            if node == "processor" and log.parent.name.startswith("processor-"):
                node = log.parent.name   # a consumer-group member's own data dir (processor-K)
            out.append({"node": node, "failpoint": ev.get("failpoint"),
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


async def wait_link_fault_fired(cluster, when: dict, timeout_s: float = 30.0) -> dict:
    """Wait until a fault of kind ``when["kind"]`` on link ``when["link"]``'s proxy fired
    (its ListFaults says ``fired`` >= 1), polled every 50 ms: a failpoint armed then counts its
    hits from that protocol event (harness.nemesis.logical.writes_outstanding_steps).
    Returns {"link", "kind", "waited_ms"}.

    Raises:
        TimeoutError: not fired within ``timeout_s`` (the failpoint is then not armed).
    """
    import time

    from harness.proxy_client import ProxyControlClient
    t0 = time.monotonic()
    proxy = cluster.proxies[when["link"]]
    while time.monotonic() - t0 < timeout_s:
        try:
            async with ProxyControlClient(proxy.address) as px:
                if any(f["spec"].get("kind") == when["kind"] and f["fired"] >= 1 for f in await px.list()):
                    return {**when, "waited_ms": round((time.monotonic() - t0) * 1000)}
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not fired: {when['kind']} on {when['link']} within {timeout_s:.0f} s")


class NoNodeControl(RuntimeError):
    """A failpoint step aimed at an external node that does not serve NodeControl."""


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
        self.pending: list[tuple[str, asyncio.Task]] = []  # watchers of nodes not started yet
        self.down: set[str] = set()
        self.chained: dict[str, list[dict]] = {}
        """node -> logical kill steps waiting for the node's current crash arming to fire
        (harness.nemesis.logical: a node has one arming per failpoint name)."""
        self.crash_armed: set[str] = set()

    async def invoke(self, step: dict) -> dict:
        if step.get("when_fired"):   # a logical trigger: armed once a link fault fired
            waited = await wait_link_fault_fired(self.ctx.cluster, step["when_fired"])
            rest = {k: v for k, v in step.items() if k != "when_fired"}
            for _ in range(600):   # the node may be down (another step's kill or stop): up to 30 s
                try:
                    return await self.invoke(rest) | {"when_fired": waited}
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                await asyncio.sleep(0.05)
            return await self.invoke(rest) | {"when_fired": waited}
        if step.get("chain") and step["node"] in self.crash_armed:
            self.chained.setdefault(step["node"], []).append(step)
            return {"chained": True, "armed_after": "the node's previous crash and restart"}
        if step["node"] not in self.ctx.cluster.nodes:
            return self._arm_at_start(step)
        p = self.ctx.cluster.nodes[step["node"]]
        if getattr(p, "control", True) is False:
            raise NoNodeControl(f"the external {p.name} does not serve testbed.v1.NodeControl: a failpoint "
                                "step cannot reach it (it still gets process and link faults)")
        spec = await arm_failpoint(p.address, step["name"], step.get("action", "crash"),
                                   nth=int(step.get("nth", 1)), count=int(step.get("count", 1)),
                                   delay_ms=int(step.get("delay_ms", 0)),
                                   timeout_ms=int(step.get("timeout_ms", 0)))
        if step.get("action", "crash") == "crash":
            self.crash_armed.add(p.name)
            # One watcher per node process, however many crash failpoints are armed in it.
            me = asyncio.current_task()  # a re-arm runs in the watcher that just restarted p
            if not any(w is p and not t.done() and t is not me for w, t in self.watchers):
                task = asyncio.ensure_future(self._restart_after_crash(p, step))
                self.watchers.append((p, task))
        return {"armed": spec, "pid": p.pid}

    def _arm_at_start(self, step: dict) -> dict:
        """Arm ``step`` at the first start of a node not started yet (see the module doc).

        Raises:
            nodes.common.failpoints.FailpointSpecError: unknown name, bad action or value.
        """
        a = Arming(step["name"], step.get("action", "crash"), delay_ms=int(step.get("delay_ms", 0)),
                   timeout_ms=int(step.get("timeout_ms", 0)), nth=int(step.get("nth", 1)),
                   count=int(step.get("count", 1))).validate()
        env = self.ctx.cluster.first_start_env.setdefault(step["node"], {})
        env[ENV_VAR] = ";".join(filter(None, [env.get(ENV_VAR, ""), a.spec()]))
        if a.action == "crash":
            self.crash_armed.add(step["node"])
        if a.action == "crash" and not any(n == step["node"] for n, _ in self.pending):
            self.pending.append((step["node"], asyncio.ensure_future(self._watch_when_started(step))))
        return {"armed": a.spec(), "at_start": True}

    @staticmethod
    def _arm_at_restart(p: NodeProcess, step: dict) -> str:
        """Hand ``step``'s arming to ``p``'s next start (``TESTBED_FAILPOINTS`` in that
        start's environment): armed before the node serves, so its hits count from its
        first protocol step. An ArmFailpoint RPC after SERVING raced the node's main task
        (a restarted producer's first Produce could return before it, shifting the Nth
        hit by one: issue 16, docs/bench.md). Returns the spec.

        Raises:
            nodes.common.failpoints.FailpointSpecError: unknown name, bad action or value.
        """
        a = Arming(step["name"], step.get("action", "crash"), delay_ms=int(step.get("delay_ms", 0)),
                   timeout_ms=int(step.get("timeout_ms", 0)), nth=int(step.get("nth", 1)),
                   count=int(step.get("count", 1))).validate()
        p.once_env[ENV_VAR] = ";".join(filter(None, [p.once_env.get(ENV_VAR, ""), a.spec()]))
        return a.spec()

    async def _watch_when_started(self, step: dict) -> None:
        """Wait for the node's first start (polled: the cluster starts it later), then watch it."""
        while True:
            p = self.ctx.cluster.nodes.get(step["node"])
            if p is not None and p.pid is not None:
                break
            await asyncio.sleep(0.02)
        task = asyncio.ensure_future(self._restart_after_crash(p, step))
        self.watchers.append((p, task))

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
        self.crash_armed.discard(p.name)
        self.ctx.history.record("ok", "failpoint-crash", {"node": p.name, "pid": pid, "exit_code": code,
                                                          "failpoint": point})
        try:
            await asyncio.sleep(int(step.get("down_ms", 300)) / 1000)
            queue = self.chained.get(p.name)
            nxt = queue.pop(0) if queue else None  # the next logical kill, counted from the restart
            at_start = nxt is not None and getattr(p, "control", True) is not False
            spec = self._arm_at_restart(p, nxt) if at_start else None
            started = await p.start_if_down()
            self.ctx.history.record("ok", "failpoint-restart", {"node": p.name, "new_pid": p.pid})
            if nxt is not None:
                value = {k: v for k, v in nxt.items() if k != "f"}
                if started and at_start:
                    armed = {"armed": spec, "pid": p.pid, "at_start": True}
                    if nxt.get("action", "crash") == "crash":
                        self.crash_armed.add(p.name)
                        self.watchers.append((p, asyncio.ensure_future(self._restart_after_crash(p, nxt))))
                else:  # someone else restarted it first (or an external node): arm by RPC
                    p.once_env.pop(ENV_VAR, None)
                    armed = await self.invoke(dict(nxt, chain=False))
                self.ctx.history.record("ok", "failpoint-rearm", value | armed)
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
        for _, task in self.pending:
            if not task.done():
                task.cancel()
        self.pending.clear()
        for p, task in self.watchers:
            if p.name in self.down:
                await asyncio.wait({task}, timeout=60)
            if not task.done():
                task.cancel()
        self.watchers.clear()
        hits: dict[str, dict[str, int]] = {}
        errors: dict[str, str] = {}
        for p in self.ctx.cluster.nodes.values():
            if not p.running or p.paused or getattr(p, "control", True) is False or p.module in ("nats", "mosquitto"):
                continue  # an external node without NodeControl, or a real broker: no failpoints
            try:
                armed = [f for f in await list_failpoints(p.address) if f["armed"]]
                if armed:
                    hits[p.name] = {f["name"]: f["hits"] for f in armed}
                await disarm_failpoint(p.address)
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:   # UNIMPLEMENTED: an external node
                    errors[p.name] = f"{type(e).__name__}: {e}"  # with Status but no failpoints
            except Exception as e:
                errors[p.name] = f"{type(e).__name__}: {e}"
        if hits:  # what was still armed at the heal, and how often it was reached (sweep calibration)
            self.ctx.history.record("ok", "failpoint-hits", hits)
        if errors:
            self.ctx.history.record("info", "failpoint-hits", {"nodes": sorted(errors)},
                                    error="; ".join(f"{n}: {e}" for n, e in errors.items()))
