"""Hold a node down (or stopped) until the next logical step: mosquitto's m01 stories, replayed exactly.

A kill or pause step with ``"trigger": "failpoint", "until": "next"`` is a quiesce step
(harness.nemesis.quiesce): the producer is held at its Nth batch, the pipeline drains, the
node is killed (SIGKILL) or stopped (SIGSTOP) and *stays* so (:func:`hold`), and the producer
goes on. The next quiesce step of the schedule (a kill -9 of mosquitto at the producer's Mth
batch) acts, then brings the held node back (:func:`revive`: restart, or SIGCONT) and waits
until its MQTT session is connected and subscribed again (:func:`wait_session`) before it
releases the producer (with no such step after it, the final heal restarts or resumes the
node). What the broker holds when it dies is then the same in every run: the
(M - N) batches published while the subscriber was away, every one acknowledged; and nothing
is published while the subscriber reconnects (FoundationDB's way: take the timing out of the
fault rather than measuring around it).

Where timing would still decide, and why it does not here:

- mosquitto writes its persistence file (``autosave_on_changes``) at the end of the event-loop
  turn that handled the change, *after* the PUBACK: a kill right after the last PUBACK can miss
  it. :func:`settle_mosquitto` makes one CONNECT/CONNACK round trip on a new connection first;
  mosquitto answers it in a later turn, so every save owed to what the producer saw
  acknowledged is on disk (mosquitto 2.0 ``loop.c``: ``persist__backup`` after ``mux__handle``).
- the subscriber's reconnect and the producer's first publish after the restart: the producer
  is held until the subscriber's session is back (``generation`` higher than before the hold).
- at-most-once (QoS 0) has no acknowledgement: the producer's last batch before the hold was
  written to the socket, not seen processed by mosquitto; it is milliseconds ahead of a step
  that first polls the producer's failpoints (hundreds of ms), not a proven order.
"""

from __future__ import annotations

import asyncio
import time

UNTIL_NEXT = "next"
"""The value of a step's ``until``: the node stays down until the next logical step."""
SESSION_TIMEOUT_S = 30.0
"""Longest wait for a revived processor's MQTT session to be connected and subscribed (s)."""


async def session_generation(cluster, node: str = "processor") -> int | None:
    """The processor's MQTT subscriber generation (connections made), or None (no MQTT
    client, or the node does not answer)."""
    import grpc
    try:
        lc = (await cluster.status(node, timeout_s=2.0)).get("log_client") or {}
    except grpc.aio.AioRpcError:
        return None
    return int(lc["generation"]) if lc.get("system") == "mqtt" else None


async def wait_session(cluster, node: str = "processor", above: int = 0,
                       timeout_s: float = SESSION_TIMEOUT_S, poll_s: float = 0.05) -> dict:
    """Wait until ``node``'s MQTT session is connected and subscribed on a generation above
    ``above`` (nodes/logclient/mqtt_queue.py ``status``). Returns {"connected", "generation",
    "waited_ms"}; never raises on a timeout (the record says connected false)."""
    import grpc
    t0 = time.monotonic()
    lc: dict = {}
    while time.monotonic() - t0 < timeout_s:
        try:
            lc = (await cluster.status(node, timeout_s=2.0)).get("log_client") or {}
        except grpc.aio.AioRpcError:
            lc = {}
        if lc.get("connected") and int(lc.get("generation", 0)) > above:
            break
        await asyncio.sleep(poll_s)   # polling the node's Status until the session is back
    return {"connected": bool(lc.get("connected")), "generation": lc.get("generation"),
            "waited_ms": round((time.monotonic() - t0) * 1000)}


async def settle_mosquitto(server) -> bool:
    """One CONNECT/CONNACK round trip straight to mosquitto (not through a proxy): every
    persistence write owed to what it handled before is done once it answers (above)."""
    from harness.mosquitto import connack
    host, port = server.address.rsplit(":", 1)
    return await connack(host, int(port))


async def hold(ctx, p, how: str) -> dict:
    """Kill (``how`` "kill") or SIGSTOP (``"pause"``) ``p`` and remember it in ``ctx.held``
    for :func:`revive`. Returns the ``ok`` value's facts (pid, exit code, generation)."""
    gen = await session_generation(ctx.cluster, p.name) if how == "pause" else 0
    async with p.exclusive():
        pid = p.pid
        if how == "kill":
            p.kill("kill step (held down until the next step)")
            code = await p.wait(10)
        else:
            p.pause()
            code = None
    ctx.held.append({"node": p.name, "how": how, "pid": pid, "generation": gen or 0})
    return {"killed_pid" if how == "kill" else "pid": pid, "exit_code": code, "held": UNTIL_NEXT,
            "server": p.name}


async def revive(ctx) -> list[dict]:
    """Bring back every node :func:`hold` left down or stopped (restart / SIGCONT), then wait
    for each one's MQTT session (:func:`wait_session`; a node without one: its restart's
    SERVING is enough). Returns one record per node."""
    out = []
    held, ctx.held[:] = list(ctx.held), []
    for h in held:
        p = ctx.cluster.nodes[h["node"]]
        rec = {"node": h["node"], "how": h["how"]}
        if h["how"] == "kill":
            async with p.exclusive():
                if not p.running:
                    await p.start_owned()
            rec["new_pid"] = p.pid
        elif p.paused and p.pid == h["pid"]:
            p.resume()
        if ctx.cluster.mosquitto is not None and h["node"] == "processor":
            rec["session"] = await wait_session(ctx.cluster, h["node"], above=h["generation"])
        out.append(rec)
    return out
