"""The leaderless window of a logical NATS leader kill: exactly K producer batches, then a leader.

    {"at": 500, "f": "kill", "node": "nats", "role": "leader", "down_ms": 500,
     "trigger": "failpoint", "window_batches": 5}

A JetStream stream whose leader died takes no publish until the other servers elect a new
one, on NATS's own election timers (seconds): an unacknowledged (core) publish sent
meanwhile is dropped without a word. What a timed kill loses is then however many batches
the producer sent before the election ended, different in every run. The logical kill
(harness.nemesis.quiesce: the producer held at its Nth batch, the pipeline drained) makes
that window a number of batches instead (FoundationDB's way: take the timer out of the
fault): with the leader dead, the producer's pause is re-armed ``window_batches`` (K) hits
on, which lets it send exactly K batches into the leaderless stream and holds it again
(:func:`open_window`); the harness waits until its sends have their outcome, looks whether
the streams were still leaderless (``leaderless``: what makes the K batches count), keeps
the server down (at least ``down_ms``) until the others elected a leader for every stream
(``leaders.elected``), restarts it, puts the leaders back where they were (``leaders.placed``; both
harness/nats_leaders.py: asked of the servers' /jsz, bounded, reported), and only then lets
the producer go on (harness.nemesis.process.KillNemesis). A restarted server that the
others have not voted out yet may report its old leadership for a moment: waiting for the
election before the restart keeps that stale view out of the question. At-most-once then loses exactly K batches' orders (every
stream's leader is on the killed server) in every run; a mode that awaits the publish ACK
cannot finish its K batches before a leader answers, and loses nothing.
"""

from __future__ import annotations

import asyncio
import time

from harness.nemesis.quiesce import QUIESCE_TIMEOUT_S, wait_held


async def open_window(cluster, step: dict, among: set[str] | None = None) -> dict:
    """Let the paused producer send ``step["window_batches"]`` batches, then hold it again
    (``among``: the servers whose view counts, the majority side of a partition).

    Returns {"batches": K, "held": bool (paused again), "in_flight": its sends still
    without an outcome (0 when it finished), "leaderless": [the partitions' streams that
    had no leader yet once the sends finished], "waited_ms": int}; never raises on a timeout."""
    from harness.nats_leaders import leaders_now
    from harness.nemesis.failpoint import arm_failpoint
    q, k = step["quiesce"], int(step["window_batches"])
    t0 = time.monotonic()
    deadline = t0 + QUIESCE_TIMEOUT_S
    await arm_failpoint(cluster.nodes[q["node"]].address, q["failpoint"], "pause", nth=k, count=1)
    held = await wait_held(cluster, q, 2 + q.get("seq", 0), deadline)
    in_flight = None
    while time.monotonic() < deadline:   # at-most-once's fire-and-forget sends: each flushed
        try:
            in_flight = int((await cluster.status(q["node"])).get("in_flight", 0))
        except Exception:  # grpc.aio.AioRpcError: the producer is down; the record says so
            break
        if in_flight == 0:
            break
        await asyncio.sleep(0.02)
    from nodes.logclient.nats import stream_name
    now = await leaders_now(cluster.nats, [stream_name(p) for p in range(cluster.nats.partitions)], among)
    return {"batches": k, "held": held, "in_flight": in_flight,
            "leaderless": sorted(name for name, leader in now.items() if leader is None),
            "waited_ms": round((time.monotonic() - t0) * 1000)}
