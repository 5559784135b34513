"""Logical triggers for kill steps: a failpoint's Nth hit instead of a producer position.

A step ``{"at": 400, "f": "kill", "node": "processor", "down_ms": 300,
"trigger": "failpoint"}`` (what harness.schedule.generate writes for the
default campaign's kills) is turned, when the cluster starts, into a crash at
the Nth hit of a failpoint of that node (FoundationDB's and TiKV's fail-rs
way: the fault lands on a protocol step, not on whatever a timer finds in
flight). The failpoint depends on the mode, since each mode runs a different
protocol (:data:`POINTS`); ``N`` is the number of hits that ``at`` records take
(:data:`RECORDS_PER_HIT`, an estimate: only the hit is exact, not the position
it corresponds to). Pauses stay timed (SIGSTOP at a position): a node has one
arming per failpoint name, and the kills of the node already use its point.

Several kills of one node are chained: the second is armed in the restarted
process once the first crash has happened, with ``N`` counted from there
(harness.nemesis.failpoint). Where no failpoint of the node is on the path of
the mode (exactly-once with ``--disable checkpointing``: no checkpoint step), or
the node is the user's own (``--processor-cmd``, ``--sink-cmd``), the step stays
timed: it fires at its producer position and says ``"timed": true``.
"""

from __future__ import annotations

from harness.nemesis.quiesce import quiesce_trigger
from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, SINK_TRANSACTIONAL


TWOPC_POINTS = {
    "processor.after-checkpoint-before-commit": ("2pc-commit-after-checkpoint",),
    "processor.after-sink-commit": (),
}

WRITES_OUTSTANDING = "processor.after-checkpoint-writes-outstanding"
"""A checkpoint persisted with sink writes still in flight: reached only with the
``drain-before-checkpoint`` ablation (exactly-once/idempotent, scenario s04); a kill step
asking for it elsewhere gets the mode's usual processor point."""
"""Two-phase-commit points a kill step may ask for (``"point"``, harness.schedule.TWOPC_KILLS),
with the ablations whose order skips the point: ``commit-before-checkpoint`` never reaches
``after-checkpoint-before-commit`` (exactly_once.TransactionalCheckpointing.checkpoint)."""


def point_for(node: str, config, wanted: str | None = None) -> str | None:
    """The failpoint a logical kill or pause of ``node`` hits in ``config``'s mode (None: none).

    ``wanted``: a two-phase-commit point (:data:`TWOPC_POINTS`) the step asks for; taken
    in exactly-once/transactional with checkpoints when the mode's order reaches it; or
    :data:`WRITES_OUTSTANDING`, taken in exactly-once/idempotent (one processor) with the
    ``drain-before-checkpoint`` ablation; else the mode's usual point of ``node``. A group
    member ``processor-K`` has the processor's points."""
    disabled = set(config.disabled or ())
    if node.startswith("processor-") and node[10:].isdigit():   # a consumer-group member (processor-K):
        node = "processor"                                      # the same points in its own process
    if wanted == WRITES_OUTSTANDING and node == "processor" and config.mode == EXACTLY_ONCE \
            and config.sink_strategy != SINK_TRANSACTIONAL and not {"checkpointing"} & disabled \
            and "drain-before-checkpoint" in disabled and int(getattr(config, "processors", 1) or 1) < 2 \
            and node not in (getattr(config, "external", None) or {}):
        return wanted
    if wanted in TWOPC_POINTS and node == "processor" and config.mode == EXACTLY_ONCE \
            and config.sink_strategy == SINK_TRANSACTIONAL and "checkpointing" not in disabled \
            and not disabled & set(TWOPC_POINTS[wanted]) and node not in (getattr(config, "external", None) or {}):
        return wanted
    if node in (getattr(config, "external", None) or {}):
        return None  # a user's node (--processor-cmd): no testbed failpoints, the kill stays timed
    if node == "broker":
        if getattr(config, "broker", "builtin") != "builtin":
            return None  # NATS JetStream: no testbed failpoints in it
        return "broker.after-append-before-fsync"  # every mode appends
    if node == "processor":
        if config.mode == AT_MOST_ONCE or (config.mode == AT_LEAST_ONCE and "commit-after-sink" in disabled):
            return "processor.after-offset-commit-before-sink"
        if config.mode == AT_LEAST_ONCE:
            return "processor.after-sink-ack-before-offset-commit"
        if config.mode == EXACTLY_ONCE and "checkpointing" not in disabled:
            return "processor.before-checkpoint"
        return None
    if node == "sink":
        if config.mode != EXACTLY_ONCE:
            return "sink.after-apply-before-reply"
        return "sink.after-commit-before-reply" if config.sink_strategy == SINK_TRANSACTIONAL \
            and "checkpointing" not in disabled else "sink.after-upsert-before-reply"
    if node == "producer":
        return "producer.after-send-before-ack"  # every mode: a Produce returned OK, not yet recorded
    return None


def records_per_hit(point: str, batch_size: int, fetch_group: int = 0) -> int:
    """Records the producer emits per hit of ``point`` (an estimate, to turn a position into N)."""
    if point.startswith(("broker.", "producer.")):
        return max(1, batch_size // 4)  # one Produce per partition of each batch
    if point in ("processor.before-checkpoint", "sink.after-commit-before-reply", *TWOPC_POINTS, WRITES_OUTSTANDING):
        return 500  # a checkpoint every 500 ms at 1000 events/s
    if fetch_group and point.startswith(("processor.after-", "sink.after-apply")):
        return fetch_group  # one step (one sink write) per group (nodes/processor/grouping.py)
    return max(1, batch_size)  # one fetch / sink write per producer batch when caught up


RECORDS_PER_HIT = records_per_hit


PAUSE_THEN = ("stop", "snapshot", "rollback", "wipe")
"""Steps made logical by a pause first (:func:`stop_triggers`): each stops its node."""


def stop_triggers(steps: list[dict], config) -> list[dict]:
    """``"trigger": "failpoint"`` stop steps (SIGTERM), and snapshot, rollback and wipe steps
    of a node's data dir (each stops the node first), made logical: the node first pauses at
    the Nth hit of its kill point (:func:`point_for`; the step's own ``nth`` if it gives one),
    then the step acts (harness.nemesis.stop, harness.nemesis.datadir), so it cuts the same
    protocol step in every run, instead of whatever a timer found in flight. The first such
    step of a node is armed before the workload (an arm step, returned apart, appended by
    :func:`expand`); each later one is handed to the restart of the step before it
    (``next_pause``), its N counted from that restart. Where the node has no point the step
    stays timed."""
    arms, prev = [], {}
    for step in steps:
        if step.get("trigger") != "failpoint" or step["f"] not in PAUSE_THEN:
            continue
        node = step.get("node")
        point = point_for(node, config) if node in ("processor", "sink", "broker") else None
        step.pop("trigger")
        if point is None:
            step["timed"] = True
            continue
        per = records_per_hit(point, int(config.batch_size), int(getattr(config, "fetch_group", 0) or 0))
        before = prev.get(node)
        nth = int(step["nth"]) if "nth" in step else \
            max(1, step["at"] // per - (0 if before is None else before["at"] // per))
        pause = {"name": point, "nth": nth, "seq": 0 if before is None else before["pause_at"]["seq"] + 1}
        step.update({"pause_at": pause, "logical": "stop"})
        if before is None:
            arms.append({"at": 0, "arm": True, "f": "failpoint", "node": node, "name": point, "action": "pause",
                         "nth": nth, "count": 1, "logical": "stop"})
        else:
            before["next_pause"] = {"name": point, "nth": nth}
        prev[node] = step
    return arms


async def wait_paused(ctx, step: dict, timeout_s: float = 60.0) -> dict:
    """A logical pause-then-act step (:func:`stop_triggers`): wait for the steps of the same
    node before it (``ctx.logical_done``), then until the node's process paused at
    ``pause_at`` (ListFailpoints says fired; up to ``timeout_s``, then the step acts anyway
    and ``paused`` says false). The caller counts the step done once it acted
    (:func:`acted`). Returns {"paused", "waited_ms", "name", "nth", "seq"}."""
    import asyncio
    import time

    import grpc

    from harness.nemesis.failpoint import list_failpoints
    node, want = step["node"], step["pause_at"]
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    while ctx.logical_done.get(node, 0) < want["seq"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    paused = False
    while not paused and time.monotonic() < deadline:
        p = ctx.cluster.nodes[node]
        try:
            fps = await list_failpoints(p.address, timeout_s=2.0) if p.running else []
            paused = any(f["name"] == want["name"] and f["total_fired"] >= 1 for f in fps)
        except grpc.aio.AioRpcError:
            pass
        if not paused:
            await asyncio.sleep(0.05)
    return {"paused": paused, "waited_ms": round((time.monotonic() - t0) * 1000)} | want


def acted(ctx, step: dict) -> None:
    """Count a logical pause-then-act step of ``step["node"]`` as done (:func:`wait_paused`)."""
    ctx.logical_done[step["node"]] = ctx.logical_done.get(step["node"], 0) + 1


def hand_next_pause(p, step: dict) -> None:
    """Arm the node's next logical pause (``step["next_pause"]``) in its next start
    (``TESTBED_FAILPOINTS`` of that start only)."""
    from nodes.common.failpoints import ENV_VAR, Arming
    if step.get("next_pause"):
        nxt = step["next_pause"]
        spec = Arming(nxt["name"], "pause", nth=int(nxt["nth"]), count=1).validate().spec()
        p.once_env[ENV_VAR] = ";".join(filter(None, [p.once_env.get(ENV_VAR, ""), spec]))


OUTSTANDING_DROPS = 3
"""Attempts of the one Upsert a ``writes-outstanding`` kill drops (each waits out the
processor's 1 s sink deadline): the write stays outstanding for several checkpoints."""


def writes_outstanding_steps(step: dict, config) -> tuple[dict, dict]:
    """A kill at :data:`WRITES_OUTSTANDING` (scenario s04's story, from two logical triggers):
    the processor-sink proxy drops the Kth Upsert call (K = ``at`` / batch size: one write per
    fetch, and a caught-up fetch holds about one producer batch; an estimate on the low side, as
    a fetch of a backlog holds more: with K = ``at`` / 25 a trial's 7th Upsert never came) and
    its retries; once that drop fired, the processor is armed to crash at its next
    checkpoint taken with writes outstanding (``when_fired``, harness.nemesis.failpoint), so
    the checkpoint's offsets cover the dropped write's records and the restart skips them.
    A crash there alone loses nothing: the Upserts in flight still reach the sink.

    Returns (the failpoint step, in the kill's place; the link fault's arm step)."""
    per = max(1, int(config.batch_size))
    drop = {"at": 0, "arm": True, "f": "link", "link": "processor-sink", "logical": "kill",
            "fault": {"kind": "drop-request", "method": "Upsert", "probability": 1.0,
                      "count": OUTSTANDING_DROPS, "after_calls": max(1, step["at"] // per)}}
    crash = {"at": 0, "f": "failpoint", "node": step["node"], "name": WRITES_OUTSTANDING, "nth": 1,
             "action": "crash", "down_ms": int(step.get("down_ms", 300)), "logical": "kill",
             "when_fired": {"link": "processor-sink", "kind": "drop-request"}}
    return crash, drop


def zombie_trigger(step: dict) -> tuple[dict, dict]:
    """A ``"trigger": "failpoint"`` zombie (harness.nemesis.group): its pause at
    ``processor.member-before-output`` is armed before the workload starts (an arm step), so
    its ``nth`` counts the member's hits from its first record; the zombie step
    (``armed_at_start``) then waits for that pause and does the rest. Armed when the step
    ran instead, a short workload had been processed before the arming (a 150-order shrunk
    find of explore did not fire on its replay). Returns (the zombie step, the arm step)."""
    from harness.nemesis.group import FAILPOINT
    node = step.get("node", "processor")
    arm = {"at": 0, "arm": True, "f": "failpoint", "node": node, "name": FAILPOINT, "action": "pause",
           "nth": int(step.get("nth", 1)), "count": 1, "logical": "zombie"}
    zombie = {k: v for k, v in step.items() if k != "trigger"} | {"armed_at_start": True, "logical": "zombie",
                                                                   "timed": True}   # released after_ms later
    return zombie, arm


def is_quiesce_step(step: dict) -> bool:
    """A ``"trigger": "failpoint"`` step that holds the producer at a batch and drains first
    (harness.nemesis.quiesce): a power loss, a kill / corrupt / partition of a NATS server, a
    kill / corrupt of mosquitto, a pause of the producer, a kill or pause held ``until`` the
    next step, a zombie with ``"release": "drained"`` (harness.nemesis.zombie_release). Only
    such a step releases a node held by an earlier ``"until": "next"``."""
    return step.get("trigger") == "failpoint" and (step["f"] == "power-loss" or step.get("release") == "drained" or (
        step["f"] in ("kill", "corrupt", "partition") and step.get("node") == "nats") or (
        step["f"] in ("kill", "corrupt") and step.get("node") == "mosquitto") or (
        step["f"] == "pause" and step.get("node") == "producer") or (
        step["f"] in ("kill", "pause") and bool(step.get("until"))))


def expand(steps: list[dict], config) -> list[dict]:
    """``steps`` (in the runner's order) with each ``"trigger": "failpoint"`` kill
    step replaced by its armed failpoint step (same index), or marked
    ``"timed": true`` where the mode has no failpoint for it; each ``"trigger":
    "failpoint"`` power loss, and kill of a NATS server, gets ``quiesce``
    (harness.nemesis.quiesce: chained by re-arming the producer's pause), each such stop
    ``pause_at`` (:func:`stop_triggers`); the arm steps of their pauses are appended after
    every step (the indices of the others stay)."""
    steps = [dict(s) for s in steps]
    out, last_at, extra, prev_q = [], {}, stop_triggers(steps, config), None
    for step in steps:
        if is_quiesce_step(step):  # harness.nemesis.quiesce, .hold
            loss, arm = quiesce_trigger(step, config)
            if step["f"] == "zombie":   # it lets one batch through and holds the producer again
                loss |= {"window_batches": 1, "logical": "zombie"}
            if prev_q is not None and prev_q.get("until"):  # its node is held down: nothing can drain
                loss["quiesce"]["drain"] = False
            if prev_q is None:
                extra.append(arm)
            else:  # the pause is re-armed as the previous one releases the producer (chained);
                #      a leaderless window (harness.nemesis.window) held it once more, K hits on
                k = int(prev_q.get("window_batches") or 0)
                prev_q["quiesce_next"] = {"nth": max(1, arm["nth"] - prev_q["quiesce"]["nth"] - k)}
                loss["quiesce"]["seq"] = prev_q["quiesce"].get("seq", 0) + 1 + (k > 0)
            out.append(loss)
            prev_q = loss
            continue
        if step.get("trigger") == "failpoint" and step["f"] == "zombie":
            zombie, arm = zombie_trigger(step)
            out.append(zombie)
            extra.append(arm)
            continue
        if step.get("trigger") != "failpoint" or step["f"] != "kill":
            out.append(step | ({"timed": True} if step["f"] == "zombie" else {}))   # released after_ms later
            continue
        node = step.get("node")
        point = point_for(node, config, step.get("point"))
        if point is None:
            out.append({k: v for k, v in step.items() if k not in ("trigger", "point")} | {"timed": True})
            continue
        if point == WRITES_OUTSTANDING:   # drop an Upsert, crash at the next checkpoint it is outstanding at
            crash, drop = writes_outstanding_steps(step, config)
            out.append(crash)
            extra.append(drop)
            continue
        per = records_per_hit(point, int(config.batch_size), int(getattr(config, "fetch_group", 0) or 0))
        prev = last_at.get(node)
        nth = max(1, step["at"] // per - (0 if prev is None else prev // per))
        out.append({"at": step["at"], "arm": True, "f": "failpoint", "node": node, "name": point, "nth": nth,
                    "action": "crash", "down_ms": int(step.get("down_ms", 300)), "logical": "kill",
                    "chain": prev is not None})
        last_at[node] = step["at"]
    return out + extra
