"""Storage faults on lazy storage (``--storage lazy``, harness.storage): power loss,
fsync error, disk full. The model is Jepsen's LazyFS; each step needs the
cluster to run with lazy storage, else it is recorded as ``info`` (not applied).

    {"at": 500, "f": "power-loss", "nodes": ["broker"], "down_ms": 200}
    {"at": 500, "f": "power-loss", "nodes": "all"}
    {"at": 1000, "f": "power-loss", "nodes": ["nats"], "synced": "*/_meta_/*"}
    {"at": 300, "f": "fsync-error", "node": "broker", "path": "orders-*/*.log"}
    {"at": 300, "f": "disk-full", "node": "sink", "after_bytes": 4096, "for_ms": 2000}

- ``power-loss``: (with ``quiesce``, a logical trigger: first the producer pauses at
  its Nth batch and the pipeline drains, harness.nemesis.quiesce) the named nodes lose
  power at once: all are sent SIGKILL
  before any is waited for, then every write they had not fsynced is dropped
  (the lazy filesystem's ``clear-cache``, then a fresh mount), then they are
  restarted (sink, broker, processor, producer order) after ``down_ms``. The
  ``ok`` record says, per node, the files and bytes dropped. Jepsen's NATS
  2.12.1 analysis: a coordinated power loss lost acknowledged messages that
  had not been fsynced yet.
- ``fsync-error``: the next fsync of a file of the node (matching ``path``, a
  glob relative to the data dir; any file if absent) fails with EIO once and
  that file's unsynced data is dropped (fsyncgate). The step waits for it to
  fire and for the node to fail-stop, and restarts it. ``heal`` disarms it.
- ``disk-full``: after ``after_bytes`` more bytes of data writes, the node's
  writes fail with ENOSPC; lifted after ``for_ms`` if given, else by ``heal``.
  A node that exited meanwhile (it could not write a checkpoint) is restarted
  then, its exit code recorded.

Firings are in ``<node>.lazyfs/faults.jsonl``.
"""

from __future__ import annotations

import asyncio
import contextlib

from harness.cluster import NODE_ORDER
from harness.nemesis.base import Nemesis
from harness.storage import LazyMount


class StorageNotLazy(RuntimeError):
    """A storage fault was asked of a cluster without lazy storage."""


def _mount(nemesis: Nemesis, node: str) -> LazyMount:
    mount = nemesis.ctx.cluster.mounts.get(node)
    if mount is None:
        raise StorageNotLazy(f"{node} has no lazy storage; run with --storage lazy")
    return mount


POWER_ORDER = ("sink", "nats-1", "nats-2", "nats-3", *NODE_ORDER[1:])
"""Restart order after a power loss: the NATS servers (if any) where the broker stands."""


def power_loss_nodes(step: dict, present=None) -> list[str]:
    """The step's ``nodes`` ("all", a list, or a single ``node``) in restart order;
    ``"nats"`` in the list stands for every NATS server. With ``present`` (the cluster's
    node names), "all" means those."""
    nodes = step.get("nodes", [step["node"]] if "node" in step else "all")
    if nodes == "all":
        nodes = list(present) if present is not None else list(NODE_ORDER)
    if "nats" in nodes:
        nodes = [*nodes, "nats-1", "nats-2", "nats-3"]
    return [n for n in POWER_ORDER if n in nodes]


STREAMS_BACK_S = 45.0
"""After a power loss of NATS servers: longest wait for every stream to have a leader again
(s). Longer than the 30 s after which a server whose meta layer lost the stream assignments
deletes the streams it still holds as orphans ("Detected orphaned stream")."""


class PowerLossNemesis(Nemesis):
    """``{"f": "power-loss", "nodes": [...] | "all", "down_ms": T}``.

    With NATS servers among the nodes, the step then waits (at most :data:`STREAMS_BACK_S`)
    until every stream has a leader that all running servers agree on, and records it as
    ``streams_back`` ({"ok", "waited_ms", "leaders"}) before it lets a paused producer go
    on: whether JetStream got its streams back decides the verdict, not how long the
    drain waited.

    ``"synced": GLOB`` (an fnmatch glob on the path inside each node's data dir, ``*``
    crossing ``/``) writes the matching files' unsynced writes back just before the cut,
    as the kernel's writeback would have done for files written long before: n01 keeps
    JetStream's meta layer (``*/_meta_/*``: the stream and consumer assignments) and loses
    the rest. The ``ok`` op says what was synced per node."""

    async def invoke(self, step: dict) -> dict:
        cluster = self.ctx.cluster
        waited = None
        if step.get("quiesce"):  # a logical power loss (harness.nemesis.logical.power_loss_trigger)
            from harness.nemesis.quiesce import quiesce
            waited = await quiesce(cluster, step["quiesce"])
        names = power_loss_nodes(step, present=cluster.nodes)
        mounts = {n: _mount(self, n) for n in names}
        procs = {n: cluster.nodes[n] for n in names if n in cluster.nodes}
        killed = {}
        synced = {}
        if step.get("synced"):   # the files a writeback would have written by now (docstring)
            for n, m in mounts.items():
                r = await m.control(f"sync {step['synced']}")
                synced[n] = {"files": r["files"], "synced_bytes": r["synced_bytes"]}
        async with contextlib.AsyncExitStack() as owned:
            for p in procs.values():  # one owner per node restart (NODE_ORDER: no lock cycle)
                await owned.enter_async_context(p.exclusive())
            for n, p in procs.items():  # every node loses power at the same moment
                killed[n] = {"killed_pid": p.pid, "was_running": p.running}
                p.kill("power loss")
            for n, p in procs.items():
                killed[n]["exit_code"] = await p.wait(10)
            dropped = await asyncio.gather(*(m.power_loss() for m in mounts.values()))
            for n, d in zip(mounts, dropped):
                killed.setdefault(n, {}).update(d)
            await asyncio.sleep(step.get("down_ms", 200) / 1000)
            for n, p in procs.items():
                await p.start_owned()
                killed[n]["new_pid"] = p.pid
        cluster.write_manifest()
        back = None
        if cluster.nats is not None and any(n.startswith("nats-") for n in procs):
            # JetStream's streams come back (or not) on its own timers: wait for their leaders,
            # bounded and reported, before the producer goes on (harness.nats_leaders)
            from harness.nats_leaders import wait_leaders
            back = await wait_leaders(cluster.nats, timeout_s=STREAMS_BACK_S)
        if waited and step["quiesce"]["node"] not in names:  # the paused producer kept its power: let it go on
            from harness.nemesis.quiesce import release
            await release(cluster, step, waited)
        return {"nodes": killed, "dropped_bytes": sum(d["dropped_bytes"] for d in dropped),
                "dropped_files": sum(d["files"] for d in dropped)} | ({"quiesce": waited} if waited else {}) \
            | ({"streams_back": back} if back is not None else {}) | ({"synced": synced} if synced else {})

    async def heal(self) -> None:
        pass  # a power loss is over once its nodes restarted


class FsyncErrorNemesis(Nemesis):
    """``{"f": "fsync-error", "node": N, "path": GLOB, "wait_ms": 10000, "down_ms": 300}``.

    Arms the fault, then waits up to ``wait_ms`` for it to fire and up to 10 s for
    the node to fail-stop (the reaction the testbed expects after fsyncgate); a
    node that exited is restarted after ``down_ms``. The ``ok`` record says
    ``fired``, the node's ``exit_code`` (None: it kept running) and ``new_pid``.
    """

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.armed: set[str] = set()

    async def invoke(self, step: dict) -> dict:
        node = step["node"]
        mount = _mount(self, node)
        path = step.get("path")
        before = (await mount.control("stats"))["faults_fired"].get("fsync-error", 0)
        self.ctx.cluster.nodes[node].storage_fault_injected = True  # its exit 3 is expected
        answer = await mount.control(f"fsync-error {path}" if path else "fsync-error")
        self.armed.add(node)
        out: dict = {"armed": answer["armed"], "fired": False}
        deadline = asyncio.get_running_loop().time() + step.get("wait_ms", 10_000) / 1000
        while asyncio.get_running_loop().time() < deadline:
            if (await mount.control("stats"))["faults_fired"].get("fsync-error", 0) > before:
                out["fired"] = True
                self.armed.discard(node)
                break
            await asyncio.sleep(0.02)
        p = self.ctx.cluster.nodes[node]
        if not out["fired"]:
            return out  # still armed: the flag stays until the heal disarms it
        async with p.exclusive():
            out["exit_code"] = await p.wait(10)
            if out["exit_code"] is not None:
                if p.exit_cause is None:  # the fail-stop this step expects, not a finding
                    p.exit_cause = "fsync-error (the node fail-stopped)"
                await asyncio.sleep(step.get("down_ms", 300) / 1000)
                await p.start_owned()
                out["new_pid"] = p.pid
            p.storage_fault_injected = False
        if "new_pid" in out:
            self.ctx.cluster.write_manifest()
        return out

    async def heal(self) -> None:
        for node in sorted(self.armed):
            mount = self.ctx.cluster.mounts[node]
            if mount.running:
                await mount.control("fsync-error off")
            self.ctx.cluster.nodes[node].storage_fault_injected = False
        self.armed.clear()


class DiskFullNemesis(Nemesis):
    """``{"f": "disk-full", "node": N, "after_bytes": B, "for_ms": T}``."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.armed: set[str] = set()

    async def invoke(self, step: dict) -> dict:
        node = step["node"]
        mount = _mount(self, node)
        self.ctx.cluster.nodes[node].storage_fault_injected = True  # its exit 3 is expected
        await mount.control(f"disk-full {int(step.get('after_bytes', 0))}")
        self.armed.add(node)
        if "for_ms" not in step:
            return {"armed": True}
        await asyncio.sleep(step["for_ms"] / 1000)
        stats = await mount.control("stats")
        await mount.control("disk-full off")
        self.armed.discard(node)
        return {"armed": False, "enospc": stats["faults_fired"].get("disk-full", 0),
                **await self._restart_if_exited(node)}

    async def _restart_if_exited(self, node: str) -> dict:
        """A node that stopped on ENOSPC (e.g. a checkpoint it could not write) is
        restarted once the disk has room again; its exit is this step's doing."""
        p = self.ctx.cluster.nodes[node]
        async with p.exclusive():
            if p.proc is None or p.running:
                p.storage_fault_injected = False
                return {}
            code = p.proc.returncode
            if p.exit_cause is None:
                p.exit_cause = "disk-full (the node stopped on ENOSPC)"
            await p.start_owned()
            p.storage_fault_injected = False
        self.ctx.cluster.write_manifest()
        return {"exit_code": code, "new_pid": p.pid}

    async def heal(self) -> None:
        for node in sorted(self.armed):
            mount = self.ctx.cluster.mounts[node]
            if mount.running:
                await mount.control("disk-full off")
            restarted = await self._restart_if_exited(node)
            if restarted:
                self.ctx.history.record("info", "disk-full-restart", {"node": node, **restarted})
        self.armed.clear()
