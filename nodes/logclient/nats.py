"""NATS JetStream as the log (nats-py, asyncio).

Layout (created by the harness, harness/nats_cluster.py): one stream per partition,
``orders-<p>`` on subject ``orders.<p>``, 3 replicas, file storage. One stream per
partition makes a partition's offsets dense: offset = stream sequence - 1, high
watermark = the stream's last sequence. Committed offsets live in the replicated
key-value bucket ``offsets`` (key ``<group>.<p>``), a JetStream stream itself.

Mode mapping (docs/brokers.md):

* at-most-once: core-NATS publish, no publish ACK awaited (only a flush of the socket);
  the processor commits before processing (its own rule).
* at-least-once: JetStream publish, await every record's publish ACK within the timeout;
  a timeout is DEADLINE_EXCEEDED (outcome unknown) and the producer retries.
* exactly-once: at-least-once plus ``Nats-Msg-Id`` = the order id: a re-publish within the
  stream's duplicate window is answered with the original sequence and ``duplicate``.

Errors are mapped onto gRPC codes (nodes/logclient/base.py): a timeout is DEADLINE_EXCEEDED,
every other NATS error (no responders, no quorum, connection lost) UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import nats
import nats.errors
import nats.js.errors

from nodes.common.modes import AT_MOST_ONCE, EXACTLY_ONCE
from nodes.logclient.base import log_error
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order

STREAM_PREFIX = "orders-"
SUBJECT_PREFIX = "orders."
OFFSETS_BUCKET = "offsets"
KEY_HEADER = "Testbed-Key"
POLL_S = 0.05
"""Fetch's long poll looks at the stream's last sequence this often (seconds)."""

log = logging.getLogger("logclient.nats")


async def _log_error(e: Exception) -> None:
    """nats-py's error callback: one info line in the node's log (its default prints a
    traceback to stderr on every failed connect; the caller sees the error as a gRPC code)."""
    log.info("nats: %s: %s", type(e).__name__, e)


def stream_name(partition: int) -> str:
    return f"{STREAM_PREFIX}{partition}"


def subject(partition: int) -> str:
    return f"{SUBJECT_PREFIX}{partition}"


class NatsClient:
    """``base.LogClient`` over NATS JetStream.

    Args:
        url: "nats://host:port[,nats://host:port...]": the servers to try.
        mode: the delivery mode: picks core publish (at-most-once), acked publish, or acked
            publish with ``Nats-Msg-Id`` (exactly-once).
    """

    def __init__(self, url: str, *, mode: str) -> None:
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        self.mode = mode
        self.nc = None
        self.js = None
        self._kv = None
        self._lock = asyncio.Lock()

    async def _connect(self, timeout: float):
        async with self._lock:
            if self.nc is None or self.nc.is_closed:
                self.nc = await nats.connect(
                    servers=self.servers, connect_timeout=max(0.2, timeout),
                    allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                    dont_randomize=True,   # the url's order: the same server first in every run
                    ping_interval=1, max_outstanding_pings=3, error_cb=_log_error)
                self.js = self.nc.jetstream(timeout=timeout)
        return self.js

    async def _call(self, what: str, coro_fn, timeout: float):
        """Run ``coro_fn(js)`` within ``timeout`` s; map NATS errors onto gRPC codes."""
        try:
            js = await asyncio.wait_for(self._connect(timeout), timeout)
            return await asyncio.wait_for(coro_fn(js), timeout)
        except grpc.aio.AioRpcError:
            raise
        except (asyncio.TimeoutError, nats.errors.TimeoutError) as e:
            raise log_error(grpc.StatusCode.DEADLINE_EXCEEDED, f"nats {what}: timeout {e}") from None
        except asyncio.CancelledError:
            raise
        except Exception as e:   # no responders, 503 no quorum, connection closed, refused
            raise log_error(grpc.StatusCode.UNAVAILABLE, f"nats {what}: {type(e).__name__}: {e}") from None

    # ----- producer ------------------------------------------------------------------------

    async def InitProducer(self, request, *, timeout: float):
        """NATS has no producer id: dedupe is by message id. Answers id 1 (or the caller's), epoch 0."""
        pid = request.producer_id if request.producer_id >= 0 else 1
        return broker_pb2.InitProducerResponse(producer_id=pid, producer_epoch=0)

    async def Produce(self, request, *, timeout: float):
        subj = subject(request.partition)

        async def at_most_once(js):
            for r in request.records:
                await self.nc.publish(subj, r.value, headers={KEY_HEADER: r.key.decode()})
            await self.nc.flush(timeout=max(1, int(timeout)))
            return broker_pb2.ProduceResponse(base_offset=-1)

        async def acked(js):
            pubs = []
            for r in request.records:
                headers = {KEY_HEADER: r.key.decode()}
                if self.mode == EXACTLY_ONCE:
                    o = Order()
                    o.ParseFromString(r.value)
                    headers["Nats-Msg-Id"] = o.order_id
                pubs.append(js.publish(subj, r.value, timeout=timeout,
                                       stream=stream_name(request.partition), headers=headers))
            acks = await asyncio.gather(*pubs)
            first = acks[0].seq if acks else 0
            return broker_pb2.ProduceResponse(
                base_offset=first - 1, duplicate=bool(acks) and all(a.duplicate for a in acks),
                log_end_offset=max((a.seq for a in acks), default=0))

        return await self._call("publish", at_most_once if self.mode == AT_MOST_ONCE else acked, timeout)

    async def ListOffsets(self, request, *, timeout: float):
        async def list_streams(js):
            ends = {}
            for info in await js.streams_info():
                name = info.config.name
                if name.startswith(STREAM_PREFIX) and name[len(STREAM_PREFIX):].isdigit():
                    ends[int(name[len(STREAM_PREFIX):])] = info.state.last_seq
            return ends
        ends = await self._call("streams info", list_streams, timeout)
        return broker_pb2.ListOffsetsResponse(
            partition_count=(max(ends) + 1) if ends else 0,
            high_watermarks=[broker_pb2.PartitionOffset(partition=p, offset=o) for p, o in sorted(ends.items())])

    # ----- consumer ------------------------------------------------------------------------

    async def Fetch(self, request, *, timeout: float):
        """Records from each partition's offset: stream get by sequence (the stream leader
        answers), up to ``max_records``; long-polls the last sequence up to ``max_wait_ms``."""
        wait_s = request.max_wait_ms / 1000

        async def fetch(js):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            while True:
                infos = await asyncio.gather(*(js.stream_info(stream_name(po.partition))
                                               for po in request.partitions))
                ends = {po.partition: i.state.last_seq for po, i in zip(request.partitions, infos)}
                if any(ends[po.partition] > po.offset for po in request.partitions) or loop.time() >= deadline:
                    break
                await asyncio.sleep(POLL_S)
            out = []
            for po in request.partitions:
                end = min(ends[po.partition], po.offset + max(1, request.max_records))
                seqs = range(po.offset + 1, end + 1)
                msgs = await asyncio.gather(*(self._get(js, po.partition, s) for s in seqs))
                recs = [broker_pb2.Record(offset=m.seq - 1, value=m.data or b"",
                                          key=((m.headers or {}).get(KEY_HEADER) or "").encode())
                        for m in msgs if m is not None]
                out.append(broker_pb2.PartitionRecords(partition=po.partition, records=recs,
                                                       high_watermark=ends[po.partition]))
            return broker_pb2.FetchResponse(partitions=out)

        return await self._call("fetch", fetch, timeout + wait_s)

    @staticmethod
    async def _get(js, partition: int, seq: int):
        try:
            return await js.get_msg(stream_name(partition), seq=seq)
        except nats.js.errors.NotFoundError:
            return None   # deleted or lost: a gap in the partition's offsets

    async def _bucket(self, js):
        if self._kv is None:
            self._kv = await js.key_value(OFFSETS_BUCKET)
        return self._kv

    async def CommitOffset(self, request, *, timeout: float):
        """Write each partition's next offset to the ``offsets`` bucket; an offset below the
        stored one is kept (never moves back), as the builtin broker does."""
        async def commit(js):
            kv = await self._bucket(js)
            kept = []
            for po in request.offsets:
                key = f"{request.group}.{po.partition}"
                try:
                    cur = int((await kv.get(key)).value)
                except nats.js.errors.KeyNotFoundError:
                    cur = -1
                if po.offset < cur:
                    kept.append(broker_pb2.PartitionOffset(partition=po.partition, offset=cur))
                    continue
                await kv.put(key, str(po.offset).encode())
            return broker_pb2.CommitOffsetResponse(kept=kept)
        return await self._call("commit", commit, timeout)

    async def FetchCommittedOffset(self, request, *, timeout: float):
        async def fetch(js):
            kv = await self._bucket(js)
            try:
                keys = await kv.keys()
            except nats.js.errors.NoKeysError:
                keys = []
            out = []
            prefix = f"{request.group}."
            for key in keys:
                if key.startswith(prefix) and key[len(prefix):].isdigit():
                    out.append(broker_pb2.PartitionOffset(partition=int(key[len(prefix):]),
                                                          offset=int((await kv.get(key)).value)))
            return broker_pb2.FetchCommittedOffsetResponse(offsets=out)
        return await self._call("committed offsets", fetch, timeout)

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), 2)
            except Exception:  # closing a dead connection: nothing left to release
                pass
