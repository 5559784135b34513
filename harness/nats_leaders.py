"""Stream leaders of a NATS cluster: where they are, placing them, waiting for them.

JetStream elects a Raft leader per stream (every ``orders-<p>`` and the ``offsets`` bucket's
``KV_offsets``) at random, and again after a leader dies, on the servers' own timers: which
server a "kill the leader" step hits, which partitions lose their leader with it, and on
which server the clients' connection is (they connect to ``nats-1`` first,
nodes/logclient/nats.py) would then change from run to run of one seed. So the harness
places every stream's leader on :data:`PINNED` once the streams exist, and again after a
logical leader kill once the cluster has elected new leaders (harness.nemesis.window):
JetStream's own leader stepdown with a preferred server
(``$JS.API.STREAM.LEADER.STEPDOWN.<stream>`` with ``{"placement": {"preferred": ...}}``,
nats-server 2.11+). Every question is asked of the servers' monitoring endpoint
``/jsz?streams=true`` (each running server's own view of each stream's leader).
"""

from __future__ import annotations

import asyncio
import json
import time

PINNED = "nats-2"
"""Where every stream's leader is placed: not ``nats-1``, the server the producer and the
processor connect to first, so a kill of the leader never cuts the clients' connection."""

WAIT_S = 60.0
"""Longest wait for every stream to have a leader again, or for a placement (s)."""


def stream_names(partitions: int) -> list[str]:
    """Every replicated stream of the pipeline: ``orders-0`` .. and the offsets bucket's."""
    from nodes.logclient.nats import OFFSETS_BUCKET, stream_name
    return [stream_name(p) for p in range(partitions)] + [f"KV_{OFFSETS_BUCKET}"]


async def views(cluster) -> dict[str, dict[str, str]]:
    """{server: {stream: the leader that server reports ("" none)}} of every running,
    unpaused server that answered /jsz."""
    out: dict[str, dict[str, str]] = {}
    for s in cluster.servers:
        if not s.running or s.paused:
            continue
        jsz = await s.http_get("/jsz?streams=true", timeout_s=1.0)
        if jsz is None:
            continue
        out[s.name] = {st.get("name"): (st.get("cluster") or {}).get("leader") or ""
                       for acc in jsz.get("account_details") or [] for st in acc.get("stream_detail") or []}
    return out


async def leaders_now(cluster, streams: list[str], among: set[str] | None = None) -> dict[str, str | None]:
    """{stream: its leader, or None} for every stream of ``streams``: a leader when every
    running server (of ``among``, if given: the majority side of a partition) answered and
    all agree on one server that is itself running and of ``among`` (a dead or cut-off
    leader the followers have not voted out yet is not a leader)."""
    seen = await views(cluster)
    running = {s.name for s in cluster.servers if s.running and not s.paused}
    if among is not None:
        running &= set(among)
        seen = {k: v for k, v in seen.items() if k in running}
    out: dict[str, str | None] = {}
    for name in streams:
        lead = {v.get(name, "") for v in seen.values()}
        leader = lead.pop() if len(lead) == 1 and set(seen) == running else ""
        out[name] = leader if leader in running else None
    return out


async def settled(cluster, streams: list[str], among: set[str] | None = None) -> dict[str, str] | None:
    """{stream: leader} when every stream of ``streams`` has a leader (:func:`leaders_now`), else None."""
    now = await leaders_now(cluster, streams, among)
    return None if any(v is None for v in now.values()) else now  # type: ignore[return-value]


async def wait_leaders(cluster, timeout_s: float = WAIT_S, poll_s: float = 0.1,
                       among: set[str] | None = None) -> dict:
    """Wait until every stream has a settled leader (:func:`settled`; of ``among`` if given),
    at most ``timeout_s``.
    Returns {"ok": bool, "waited_ms": int, "leaders": {stream: leader} | None}; never raises
    on a timeout (the caller records ``ok: false`` and goes on)."""
    streams = stream_names(cluster.partitions)
    t0 = time.monotonic()
    while True:
        leaders = await settled(cluster, streams, among)
        if leaders is not None or time.monotonic() - t0 >= timeout_s:
            return {"ok": leaders is not None, "waited_ms": round((time.monotonic() - t0) * 1000),
                    "leaders": leaders}
        await asyncio.sleep(poll_s)


async def place_leaders(cluster, server: str = PINNED, timeout_s: float = WAIT_S,
                        poll_s: float = 0.1) -> dict:
    """Move every stream's leader to ``server`` (a stepdown with ``server`` preferred, asked
    again each second until the servers agree; a preferred server that is not caught up
    yet refuses). Returns {"ok": bool, "waited_ms": int, "moved": stepdowns asked,
    "leaders": {stream: leader} | None}; never raises on a timeout."""
    import nats
    streams = stream_names(cluster.partitions)
    t0 = time.monotonic()
    moved, asked_at, leaders = 0, 0.0, None
    nc = None
    try:
        while time.monotonic() - t0 < timeout_s:
            leaders = await settled(cluster, streams)
            if leaders is not None and all(v == server for v in leaders.values()):
                return {"ok": True, "waited_ms": round((time.monotonic() - t0) * 1000), "moved": moved,
                        "leaders": leaders}
            if leaders is not None and time.monotonic() - asked_at >= 1.0:
                asked_at = time.monotonic()
                if nc is None:
                    try:
                        nc = await nats.connect(servers=[f"nats://{s.client_address}" for s in cluster.servers
                                                         if s.running], connect_timeout=2, allow_reconnect=False)
                    except Exception:  # refused, timed out: tried again in 1 s
                        continue
                body = json.dumps({"placement": {"preferred": server}}).encode()
                for name, leader in leaders.items():
                    if leader != server:
                        moved += 1
                        try:
                            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{name}", body, timeout=2)
                        except Exception:  # timeout, no responders mid-election: asked again in 1 s
                            pass
            await asyncio.sleep(poll_s)
    finally:
        if nc is not None:
            await nc.close()
    return {"ok": False, "waited_ms": round((time.monotonic() - t0) * 1000), "moved": moved, "leaders": leaders}
