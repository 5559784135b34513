"""Quiesce before a harness-made fault: what a power loss or a NATS server kill hits, made deterministic.

The cut of a power loss (every node at once) and the kill of a NATS server (no failpoint
in it) stay harness actions; what they hit is made the same in every run instead
(issue 15, FoundationDB's way of removing the timing from a fault): the producer is armed
to ``pause`` at its Nth batch, the step waits until it paused there and the rest of the
pipeline drained what it got (:func:`quiesce`), acts, then lets the producer go on
(:func:`release`; a power loss that restarted the producer needs no release). Several
such steps in one schedule share the producer's one arming of the point: each release
re-arms the pause for the next (``quiesce_next``), its N counted from there.
"""

from __future__ import annotations

from nodes.common.modes import AT_MOST_ONCE


def quiesce_trigger(step: dict, config) -> tuple[dict, dict]:
    """A ``"trigger": "failpoint"`` power loss (or NATS kill, corrupt) at ``at``: the producer pauses at
    its Nth batch (``pause`` at ``producer.after-ack-before-persist``: every partition
    ACKed, the position not yet persisted; at-most-once: ``after-persist-before-send``),
    the rest of the pipeline drains what it got, then the power goes
    (harness.nemesis.storage: ``quiesce``). What the power loss hits is then the same in
    every run: one ACKed batch the producer will re-send, nothing in flight elsewhere.

    Returns (the power-loss step with ``quiesce`` and its ``at`` moved to where the producer
    stops, the arm step of the pause)."""
    size = max(1, int(config.batch_size))
    if config.mode == AT_MOST_ONCE:   # the position is persisted before the pause
        point, nth = "producer.after-persist-before-send", max(1, step["at"] // size)
        at = nth * size
    else:                             # the position of the paused batch's start
        point, nth = "producer.after-ack-before-persist", step["at"] // size + 1
        at = (nth - 1) * size
    arm = {"at": 0, "arm": True, "f": "failpoint", "node": "producer", "name": point, "action": "pause",
           "nth": nth, "count": 1, "logical": "quiesce"}
    loss = {k: v for k, v in step.items() if k != "trigger"} | {
        "at": at, "quiesce": {"node": "producer", "failpoint": point, "nth": nth}, "logical": "quiesce"}
    return loss, arm


QUIESCE_TIMEOUT_S = 60.0
"""Longest wait for a logical power loss's pause to fire, then for the pipeline to drain (s)."""


async def quiesce(cluster, spec: dict, poll_s: float = 0.05) -> dict:
    """Wait until the producer paused at ``spec["failpoint"]`` (its ListFailpoints says
    fired) or finished, then until the processor's durable positions reach the broker's
    high watermarks on every partition, three looks in a row (not when ``spec["drain"]`` is
    false: a subscriber held down by an earlier step cannot drain). Returns what it saw:
    {"paused": bool, "drained": bool, "waited_ms": int}; never raises on a timeout
    (the power loss then goes anyway, and the record says so)."""
    import asyncio
    import time

    from harness.cluster import _drained

    t0 = time.monotonic()
    deadline = t0 + QUIESCE_TIMEOUT_S
    paused = await wait_held(cluster, spec, 1 + spec.get("seq", 0), deadline, poll_s)
    still = 0
    while spec.get("drain", True) and time.monotonic() < deadline and still < 3:
        progress = await cluster.drain_progress()
        progress["producer"] = {"done": True}   # paused on purpose: only the rest must drain
        still = still + 1 if _drained(progress) else 0
        await asyncio.sleep(2 * poll_s)
    drained = still >= 3 if spec.get("drain", True) else None   # None: a node is held down (hold.py)
    return {"paused": paused, "drained": drained, "waited_ms": round((time.monotonic() - t0) * 1000)}


async def wait_held(cluster, spec: dict, fired: int, deadline: float, poll_s: float = 0.05) -> bool:
    """Wait until ``spec["node"]``'s failpoint ``spec["failpoint"]`` has fired ``fired`` times
    in all (its ListFailpoints' ``total_fired``: the pause holds the caller), until the node
    says it is done (False), or until ``deadline`` (time.monotonic(); False)."""
    import asyncio
    import time

    import grpc

    from harness.nemesis.failpoint import list_failpoints
    while time.monotonic() < deadline:
        p = cluster.nodes.get(spec["node"])
        try:
            fps = await list_failpoints(p.address, timeout_s=2.0) if p is not None and p.running else []
            if any(f["name"] == spec["failpoint"] and f["total_fired"] >= fired for f in fps):
                return True
            if p is not None and p.running and (await cluster.status(spec["node"])).get("done"):
                return False
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(poll_s)
    return False


async def release(cluster, step: dict, waited: dict) -> None:
    """Let the producer a ``quiesce`` paused go on: re-arm its pause for the next logical
    step of the schedule (``quiesce_next``: re-arming releases the held caller, and counts
    from its next hit), else disarm it. Records ``released`` in ``waited``."""
    from harness.nemesis.failpoint import arm_failpoint, disarm_failpoint
    q = step["quiesce"]
    address = cluster.nodes[q["node"]].address
    if step.get("quiesce_next"):
        waited["released"] = await arm_failpoint(address, q["failpoint"], "pause",
                                                 nth=int(step["quiesce_next"]["nth"]), count=1)
    else:
        waited["released"] = await disarm_failpoint(address, q["failpoint"])
