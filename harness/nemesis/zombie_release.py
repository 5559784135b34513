"""The logical zombie (issue 15): what a stalled group member holds, and what it meets when it wakes, by counts.

    {"at": 200, "f": "zombie", "node": "processor", "trigger": "failpoint", "release": "drained"}

A timed zombie (harness.nemesis.group: SIGCONT ``after_ms`` after the rebalance) races three
clocks: the producer (200 orders/s), the member's fetches and the coordinator's session timeout.
What the zombie held, and how much the survivor re-read before it woke, changed from run to run
(s18 at-least-once: 3, 2 and 7 duplicated from one seed). Here every wait is for a count or an
observed state instead (FoundationDB's way: take the timer out of the fault; the NATS leader
kill's "hold, drain, fault, wait for a state, release" in harness.nemesis.window):

1. ``quiesce``: the producer is held at its batch of ``at`` and the group drains
   (harness.nemesis.quiesce; in a schedule with other logical steps the producer's pause is
   chained as theirs is, harness.nemesis.logical.expand);
2. the member is armed to ``pause`` at its next (``nth``-th) hit of
   ``processor.member-before-output``, and the producer sends exactly one batch and is held
   again (a window of one batch): the member stops with that batch's records of its first
   partition (scenarios send a batch's partitions one after another, ``sequential_sends``:
   the next partition's Produce waits for the ACK of the one the member's long poll woke on);
3. SIGSTOP (its heartbeats stop), then wait until the coordinator expired it and gave its
   partitions to the others (a stable generation without its member id: ``expired``);
4. wait until the survivors' durable positions reach the broker's high watermarks on every
   partition (``survivor_drained``): they re-read and output everything the zombie held;
5. SIGCONT and disarm: the zombie does its held output (fenced, or applied under the
   ``generation-fencing`` ablation); wait until it has joined the group again
   (``rejoined``: its loop rejoins only once that step ended, nodes/processor/group_loop.py)
   and the whole group drained, then let the producer go on (``released``).

The ``ok`` record lists these events in the order they were seen (``order``), each with
its time since the step began (ms; information only, nothing waits on it).
"""

from __future__ import annotations

import time

from harness.nemesis.failpoint import arm_failpoint, disarm_failpoint, list_failpoints
from harness.nemesis.quiesce import QUIESCE_TIMEOUT_S, quiesce, release, wait_held

RELEASE = "drained"
"""The value of a zombie step's ``release`` that selects this logical form."""


def is_logical(step: dict) -> bool:
    """A zombie released by observed states (this module), not by ``after_ms``."""
    return step.get("f") == "zombie" and step.get("release") == RELEASE


async def _survivors_drained(cluster, zombie: str) -> bool:
    """The members other than ``zombie``, merged: durable positions >= high watermarks everywhere."""
    import grpc

    from harness.group_cluster import merge_statuses
    statuses = {}
    for name in cluster.processor_names():
        if name != zombie:
            try:
                statuses[name] = await cluster.status(name)
            except grpc.aio.AioRpcError as e:
                statuses[name] = {"error": e.code().name}
    merged = merge_statuses(statuses)
    hw = await cluster.high_watermarks()
    durable = {int(k): v for k, v in merged.get("durable_positions", {}).items()}
    return "error" not in merged and all(durable.get(int(p), 0) >= off for p, off in hw.items())


async def _group_drained(cluster) -> bool:
    from harness.cluster import _drained
    progress = await cluster.drain_progress()
    progress["producer"] = {"done": True}   # held on purpose: only the group must drain
    return _drained(progress) and bool(progress["processor"].get("stable", True))


async def run(nemesis, step: dict, p) -> dict:
    """Carry out a logical zombie step on member ``p`` (module doc). Returns the ``ok`` value.

    Raises:
        TimeoutError: the producer was not held at ``at`` (it finished first: nothing to hold;
            at once, not after the step's timeout), the member's pause never fired (then the
            producer is released first; at once when the group output the ACKed batch let
            through without it: an ``nth`` larger than the member's hits in one batch), or the
            group did not rebalance without it.
    """
    from harness.nemesis.group import FAILPOINT, _until, group_state, replaced_without
    cluster = nemesis.ctx.cluster
    timeout_s = int(step.get("timeout_ms", 60_000)) / 1000
    t0 = time.monotonic()
    order: list[dict] = []

    def seen(event: str, **facts) -> None:
        order.append({"event": event, "ms": round((time.monotonic() - t0) * 1000)} | facts)

    q = step["quiesce"]
    waited = await quiesce(cluster, q)
    seen("producer-held", drained=waited["drained"])
    if not p.running:   # down (another step's kill): nothing to pause; the producer goes on
        from harness.nemesis.process import already_dead
        await release(cluster, step, waited)
        return already_dead(p) | {"quiesce": waited, "order": order}
    if not waited["paused"]:   # the producer finished (or never paused): no batch left to hold the member on
        await release(cluster, step, waited)
        raise TimeoutError(f"the producer was not held at its batch of {step.get('at')} (finished before it, or "
                           f"not paused within {QUIESCE_TIMEOUT_S:.0f} s): nothing for {p.name} to hold")
    await arm_failpoint(p.address, FAILPOINT, "pause", nth=int(step.get("nth", 1)), count=1)
    producer = cluster.nodes[q["node"]].address
    await arm_failpoint(producer, q["failpoint"], "pause", nth=1, count=1)   # one batch, then held again
    held_again = await wait_held(cluster, q, 2 + q.get("seq", 0), time.monotonic() + QUIESCE_TIMEOUT_S)
    seen("one-batch-sent", held=held_again)

    acked = q["failpoint"] == "producer.after-ack-before-persist"   # held with the batch in the log (not at-most-once)

    async def fired():   # or the group output the whole batch without it: no hit is left to come
        if any(f["name"] == FAILPOINT and f["fired"] for f in await list_failpoints(p.address)):
            return "fired"
        return "drained" if acked and await _group_drained(cluster) else None
    outcome = await _until(fired, timeout_s)
    if outcome != "fired":
        await disarm_failpoint(p.address, FAILPOINT)
        await release(cluster, step, waited)
        if outcome == "drained":   # was a wait of the whole timeout (60 s), e.g. with "nth": 5
            raise TimeoutError(f"not fired: {FAILPOINT} in {p.name}: the group output the batch let through "
                               f"without its hit {int(step.get('nth', 1))} ('nth' counts the member's hits "
                               "within that one batch: a small nth, as s18's 1, is what fires)")
        raise TimeoutError(f"not fired: {FAILPOINT} in {p.name} within {timeout_s:.0f} s "
                           "(its partitions got no record of the batch let through)")
    before = (await cluster.status(p.name)).get("group") or {}
    pid, stopped_at = p.pid, time.monotonic()
    p.pause()
    nemesis.stopped.append(p)
    seen("paused", member_id=before.get("member_id"), generation=before.get("generation"),
         partitions=before.get("assignment"))
    try:
        after = await replaced_without(cluster, before, timeout_s)
        if after is None:
            raise TimeoutError(f"{p.name} (member {before.get('member_id')}) paused, but the group did "
                               f"not rebalance without it within {timeout_s:.0f} s")
        seen("expired", generation=after["generation"], assignment=after.get("assignment"))
        drained = await _until(lambda: _survivors_drained(cluster, p.name), timeout_s)
        seen("survivor-drained", ok=bool(drained))
    finally:
        if p.pid == pid and p.paused:
            p.resume()
            nemesis.stopped.remove(p)
    stopped_ms = round((time.monotonic() - stopped_at) * 1000)
    await disarm_failpoint(p.address, FAILPOINT)
    seen("resumed")

    async def rejoined():
        mine = (await cluster.status(p.name)).get("group") or {}
        g = await group_state(cluster)
        return g if (g.get("state") == "stable" and mine.get("generation", 0) > after["generation"]
                     and mine.get("generation") == g.get("generation")
                     and mine.get("member_id") in g.get("members", [])) else None
    back = await _until(rejoined, timeout_s)
    seen("rejoined", ok=back is not None, generation=(back or {}).get("generation"))
    settled = await _until(lambda: _group_drained(cluster), timeout_s)
    seen("drained", ok=bool(settled))
    await release(cluster, step, waited)
    seen("released")
    return {"pid": pid, "node": p.name, "member_id": before.get("member_id"),
            "generation": before.get("generation"), "partitions": before.get("assignment"),
            "replaced_by_generation": after["generation"], "assignment_after": after.get("assignment"),
            "stopped_ms": stopped_ms, "failpoint": FAILPOINT, "release": RELEASE, "order": order, "quiesce": waited}
