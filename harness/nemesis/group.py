"""Consumer-group faults (issue 14): the zombie consumer and scale-out.

``{"f": "zombie", "node": "processor", "nth": 3, "after_ms": 1000}`` (incident 11: a
consumer stalls past its session timeout, its partitions move, it wakes up):

1. arm failpoint ``processor.member-before-output`` (action ``pause``, the ``nth`` hit
   counted from the arming) in the node: the member stops with processed records whose
   output (offset commit, sink write or transaction) is not done yet;
2. once it fired, SIGSTOP the process: its heartbeats stop too (a long GC pause);
3. wait until the broker's group coordinator completed a rebalance without the member
   (a generation newer than the one the member had), then ``after_ms`` more so that the
   partitions' new owner claims and processes them;
4. SIGCONT and disarm the failpoint: the zombie carries on with the output it held, for
   partitions it no longer owns. Fencing (broker: ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID;
   sink: FENCED) refuses it; the ``generation-fencing`` ablation lets it through.

This form is timed (step 3's ``after_ms``: what the new owner re-read before the zombie
woke depends on the clock; its history op says ``"timed": true``). With ``"trigger":
"failpoint", "release": "drained"`` every wait is for a count or an observed state
instead (harness.nemesis.zombie_release: the producer held, the survivor drained).

The ``ok`` record says which member was paused, its generation, the generation that
replaced it and how long it was stopped. A failpoint that never fires within
``timeout_ms`` (default 60 s) is recorded as ``info`` ``zombie`` with "not fired".

``{"f": "add-processor"}``: start one more processor (``processor-K``, its own data dir
and links) mid-run: it joins the group and the partitions are rebalanced (scale out).
Killing one member is the ordinary ``kill`` step aimed at ``processor-K``.
"""

from __future__ import annotations

import asyncio
import json
import time

import grpc

from harness.nemesis.base import Nemesis
from harness.nemesis.failpoint import arm_failpoint, disarm_failpoint, list_failpoints
from harness.nemesis.process import already_dead

FAILPOINT = "processor.member-before-output"
GROUP = "processor"


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


ZOMBIE_KEYS = ("at", "f", "node", "nth", "trigger", "release", "after_ms", "timeout_ms", "must_fire", "timed")
"""The keys a zombie step may have (a scenario's or schedule's; the nemesis adds its own at run time)."""
_ZOMBIE_RUNTIME_KEYS = ("armed_at_start", "logical", "quiesce", "quiesce_next", "window_batches", "step")


def validate_step(step: dict) -> str | None:
    """Why a ``zombie`` / ``add-processor`` step is malformed (one line), or None:
    ``node`` a processor (``processor`` or ``processor-K``), ``nth`` and ``timeout_ms``
    integers >= 1, a zombie's keys among ZOMBIE_KEYS (``"nht": 3`` in a hand-edited shrunk
    scenario was ignored: the zombie paused at its first hit and the run said "as expected")."""
    if step["f"] == "zombie":
        if unknown := [k for k in step if k not in ZOMBIE_KEYS and k not in _ZOMBIE_RUNTIME_KEYS]:
            import difflib
            close = difflib.get_close_matches(str(unknown[0]), ZOMBIE_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"zombie: unknown key {unknown[0]!r:.60}{hint}; known keys: {', '.join(ZOMBIE_KEYS)}"
        node = step.get("node", "processor")
        if not (node == "processor" or (isinstance(node, str) and node.startswith("processor-")
                                        and node[10:].isdigit())):
            return f"zombie: 'node' must be a processor (processor or processor-K), got {node!r:.60}"
        if "nth" in step and not _positive_int(step["nth"]):
            return f"zombie: 'nth' must be an integer >= 1, got {step['nth']!r:.60}"
        if "release" in step and (step["release"] != "drained" or step.get("trigger") != "failpoint"
                                  or "after_ms" in step):
            return ("zombie: 'release' must be \"drained\", with \"trigger\": \"failpoint\" and no "
                    "'after_ms' (harness.nemesis.zombie_release)")
    if "timeout_ms" in step and not _positive_int(step["timeout_ms"]):
        return f"{step['f']}: 'timeout_ms' must be an integer >= 1 (ms), got {step['timeout_ms']!r:.60}"
    return None


def schedule_problem(steps: list, processors: int, broker: str, events: int | None = None,
                     batch_size: int | None = None) -> str | None:
    """Why this schedule cannot run with ``processors`` members on ``broker`` (one line), or None:
    a ``zombie`` or ``add-processor`` step needs a consumer group (2+ processors: with one,
    a zombie paused the only processor and the run hung), a zombie aimed at ``processor-K``
    needs K members (counting the ``add-processor`` steps), a ``partition`` step needs NATS;
    given ``events`` and ``batch_size``, a zombie with ``"release": "drained"`` needs a batch
    after the one of its ``at`` (:func:`zombie_position_problem`)."""
    group = [s for s in steps if isinstance(s, dict) and s.get("f") in ("zombie", "add-processor")]
    if group and processors < 2:
        return f"the {group[0]['f']} step needs a consumer group: --processors 2 or more (the 'processors' key)"
    if events is not None and batch_size is not None and (
            problem := zombie_position_problem(steps, events, batch_size)):
        return problem
    most = processors + sum(1 for s in group if s["f"] == "add-processor")
    for s in group:
        node = s.get("node", "processor")
        if s["f"] == "zombie" and node != "processor" and int(node[10:]) > most:
            return f"zombie step on {node}: the group has at most {most} processors"
    if broker != "nats" and any(isinstance(s, dict) and s.get("f") == "partition" for s in steps):
        return f"a partition step cuts NATS routes: it needs --broker nats (not {broker})"
    present = {"producer", "processor", "sink", *(f"processor-{k}" for k in range(2, most + 1)),
               *{"builtin": ("broker",), "nats": ("nats", "nats-1", "nats-2", "nats-3"),
                 "mosquitto": ("mosquitto",)}.get(broker, ())}
    for i, s in enumerate(steps):   # a step on a node this cluster lacks failed as "KeyError" and
        if not isinstance(s, dict):   # the run went on as if it were a fault that did not hit
            continue
        named = [s["node"]] if isinstance(s.get("node"), str) else []
        named += [n for n in s["nodes"] if isinstance(n, str)] if isinstance(s.get("nodes"), list) else []
        for node in named:
            if node not in present:
                return (f"step {i} ({s.get('f')}) is aimed at {node}, which a {broker} cluster with "
                        f"{most} processor(s) does not have ({', '.join(sorted(present))})")
    return None


def zombie_position_problem(steps: list, events: int, batch_size: int) -> str | None:
    """Why a logical zombie (``"release": "drained"``) of ``steps`` cannot fire with ``events``
    orders sent in batches of ``batch_size`` (one line), or None. The producer is held at the
    batch of the step's ``at`` and then lets exactly one more batch through, the one the member
    pauses on (harness.nemesis.zombie_release): with no batch after that one the producer
    finished instead, the member's pause never fired, and the run waited the step's whole
    timeout (60 s) to end as if no fault had been scheduled."""
    size = max(1, int(batch_size))
    for i, s in enumerate(steps):
        if not (isinstance(s, dict) and s.get("f") == "zombie" and s.get("release") == "drained"
                and isinstance(s.get("at"), int)):
            continue
        if (s["at"] // size + 1) * size >= events:
            last = (events - 1) // size * size - size
            fix = f"'at' must be at most {last}, or raise 'events'" if last >= 0 else "raise 'events'"
            return (f"step {i} (zombie of {s.get('node', 'processor')} at {s['at']}) needs a batch of the "
                    f"producer after the one of its 'at', but the workload has {events} events in batches of "
                    f"{size}: {fix}")
    return None


async def group_state(cluster) -> dict:
    """The broker's view of consumer group ``processor`` ({} before anyone joined)."""
    st = await cluster.status("broker")
    return (st.get("groups") or {}).get(GROUP, {})


async def _until(pred, timeout_s: float, poll_s: float = 0.05):
    """Poll the async ``pred()`` until it returns a truthy value (returned) or time runs out (None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = await pred()
        except grpc.aio.AioRpcError:
            got = None
        if got:
            return got
        await asyncio.sleep(poll_s)
    return None


async def replaced_without(cluster, before: dict, timeout_s: float) -> dict | None:
    """The group's state (group_state) once it is stable at a generation newer than
    ``before``'s without ``before``'s member (the coordinator expired it), or None after
    ``timeout_s`` (s)."""
    async def replaced():
        g = await group_state(cluster)
        return g if (g.get("state") == "stable" and g.get("generation", 0) > before.get("generation", 0)
                     and before.get("member_id") not in g.get("members", [])) else None
    return await _until(replaced, timeout_s)


class ZombieNemesis(Nemesis):
    """Carries out ``"f": "zombie"`` steps (module doc)."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.stopped: list = []

    async def invoke(self, step: dict) -> dict:
        cluster = self.ctx.cluster
        p = cluster.nodes[step.get("node", "processor")]
        if step.get("quiesce"):   # released by counts and states (harness.nemesis.zombie_release)
            from harness.nemesis.zombie_release import run
            return await run(self, step, p)
        if not p.running:
            return already_dead(p)
        timeout_s = int(step.get("timeout_ms", 60_000)) / 1000
        if not step.get("armed_at_start"):   # else armed before the workload (harness.nemesis.logical)
            await arm_failpoint(p.address, FAILPOINT, "pause", nth=int(step.get("nth", 1)), count=1)

        async def fired():
            return any(f["name"] == FAILPOINT and f["fired"] for f in await list_failpoints(p.address))
        if not await _until(fired, timeout_s):
            await disarm_failpoint(p.address, FAILPOINT)
            raise TimeoutError(f"not fired: {FAILPOINT} in {p.name} within {timeout_s:.0f} s")
        before = (await cluster.status(p.name)).get("group") or {}
        pid, t0 = p.pid, time.monotonic()
        p.pause()
        self.stopped.append(p)
        try:
            after = await replaced_without(cluster, before, timeout_s)
            await asyncio.sleep(int(step.get("after_ms", 1000)) / 1000)
        finally:
            if p.pid == pid and p.paused:
                p.resume()
                self.stopped.remove(p)
        stopped_ms = int((time.monotonic() - t0) * 1000)
        await disarm_failpoint(p.address, FAILPOINT)
        if after is None:
            raise TimeoutError(f"{p.name} (member {before.get('member_id')}) paused {stopped_ms} ms, but the "
                               "group did not rebalance without it")
        return {"pid": pid, "node": p.name, "member_id": before.get("member_id"),
                "generation": before.get("generation"), "partitions": before.get("assignment"),
                "replaced_by_generation": after["generation"],
                "assignment_after": after.get("assignment"), "stopped_ms": stopped_ms,
                "failpoint": FAILPOINT}

    async def heal(self) -> None:
        for p in list(self.stopped):
            if p.paused:
                p.resume()
        self.stopped.clear()


class AddProcessorNemesis(Nemesis):
    """Carries out ``"f": "add-processor"`` steps: scale the group out by one member."""

    async def invoke(self, step: dict) -> dict:
        from harness.group_cluster import add_member
        before = await group_state(self.ctx.cluster)
        p = await add_member(self.ctx.cluster)

        async def rebalanced():
            g = await group_state(self.ctx.cluster)
            return g if g.get("state") == "stable" and g.get("generation", 0) > before.get("generation", 0) \
                and any(m.startswith(p.name + "-") for m in g.get("members", [])) else None
        after = await _until(rebalanced, int(step.get("timeout_ms", 30_000)) / 1000)
        return {"node": p.name, "pid": p.pid, "generation_before": before.get("generation"),
                "generation": after.get("generation") if after else None,
                "assignment": json.loads(json.dumps(after.get("assignment"))) if after else None}
