"""What a NATS JetStream cluster holds, read after the heal, written for the offline audit.

``broker/nats-streams.json``::

    {"url": "nats://...", "partitions": {"0": [[offset, order_id | null], ...], ...},
     "high_watermarks": {"0": last_seq, ...},
     "replicas": {"nats-1": {"0": {"messages": n, "first_seq": f, "last_seq": l}, ...}, ...}}

``partitions`` is read through the client (the stream leader answers each get);
``replicas`` is each server's own account of each stream (its monitoring endpoint
``/jsz?streams=true``): the checker's ``divergent`` family compares them. A record whose
value is not an Order is ``null`` (poison).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nodes.common.modes import AT_LEAST_ONCE, TOPIC
from nodes.logclient import open_client
from nodes.pb import broker_pb2, events_pb2

DUMP_FILE = "nats-streams.json"


async def replica_states(servers) -> dict[str, dict[str, dict]]:
    """Per server, per partition: messages, first_seq, last_seq (from /jsz); a server
    that does not answer is absent."""
    from nodes.logclient.nats import STREAM_PREFIX
    out: dict[str, dict[str, dict]] = {}
    for srv in servers:
        jsz = await srv.http_get("/jsz?streams=true", timeout_s=2.0)
        if jsz is None:
            continue
        mine: dict[str, dict] = {}
        for acc in jsz.get("account_details") or []:
            for st in acc.get("stream_detail") or []:
                name = st.get("name", "")
                if name.startswith(STREAM_PREFIX) and name[len(STREAM_PREFIX):].isdigit():
                    state = st.get("state") or {}
                    mine[name[len(STREAM_PREFIX):]] = {k: state.get(k, 0) for k in ("messages", "first_seq", "last_seq")}
        out[srv.name] = mine
    return out


async def read_partitions(url: str, timeout_s: float = 5.0) -> tuple[dict[str, list], dict[str, int]]:
    """Every record of every partition stream: ({"p": [[offset, order_id|null]]}, {"p": end})."""
    client = open_client(url, mode=AT_LEAST_ONCE)
    try:
        lo = await client.ListOffsets(broker_pb2.ListOffsetsRequest(topic=TOPIC), timeout=timeout_s)
        ends = {po.partition: po.offset for po in lo.high_watermarks}
        parts: dict[str, list] = {}
        for p, end in sorted(ends.items()):
            rows, pos = [], 0
            while pos < end:
                resp = await client.Fetch(broker_pb2.FetchRequest(
                    topic=TOPIC, max_records=500, max_wait_ms=0,
                    partitions=[broker_pb2.PartitionOffset(partition=p, offset=pos)]), timeout=timeout_s)
                recs = [r for pr in resp.partitions for r in pr.records]
                for r in recs:
                    o = events_pb2.Order()
                    try:
                        o.ParseFromString(r.value)
                        oid = o.order_id
                    except Exception:   # poison: not an order
                        oid = None
                    rows.append([r.offset, oid])
                pos = min(end, pos + 500) if not recs else max(pos + 1, recs[-1].offset + 1)
            parts[str(p)] = rows
        return parts, {str(p): e for p, e in ends.items()}
    finally:
        await client.close()


def _agree(replicas: dict[str, dict[str, dict]]) -> bool:
    by_partition: dict[str, set] = {}
    for states in replicas.values():
        for p, s in states.items():
            by_partition.setdefault(p, set()).add((s["messages"], s["first_seq"], s["last_seq"]))
    return all(len(v) == 1 for v in by_partition.values())


async def dump_streams(nats_cluster, out_dir: Path) -> Path:
    """Write ``out_dir/nats-streams.json``; return its path.

    Raises:
        grpc.aio.AioRpcError: the cluster did not answer (no quorum, servers down).
    """
    parts, ends = await read_partitions(nats_cluster.url)
    replicas = await replica_states(nats_cluster.servers)
    for _ in range(50):   # followers catch up after the heal: up to ~5 s for them to agree
        if _agree(replicas) and len(replicas) == len(nats_cluster.servers):
            break
        await asyncio.sleep(0.1)
        replicas = await replica_states(nats_cluster.servers)
    dump = {"url": nats_cluster.url, "partitions": parts, "high_watermarks": ends, "replicas": replicas}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / DUMP_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dump, allow_nan=False))
    tmp.replace(path)
    return path
