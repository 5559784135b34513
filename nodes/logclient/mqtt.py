"""MQTT (mosquitto) as the log: aiomqtt on paho-mqtt 2, MQTT 3.1.1.

MQTT has topics, not logs: no offsets, no high watermark, nothing to re-read. The
mapping (docs/brokers.md, "MQTT"):

* **Producer**: ``Produce`` (one batch for partition p) publishes each record to topic
  ``orders/<p>`` at the mode's QoS (:data:`QOS`: 0 at-most-once, 1 at-least-once, 2
  exactly-once) and returns once every record is acknowledged: PUBACK (QoS 1), PUBCOMP
  (QoS 2), the socket write (QoS 0). No ACK within the timeout is DEADLINE_EXCEEDED
  (outcome unknown: the producer's retry rules apply), a lost or refused connection
  UNAVAILABLE. A clean session: the producer's own history is its durable state.
* **Processor**: a persistent session (``clean_session`` false, client id
  ``testbed-<client>``, created by the harness before the producer starts) subscribed to
  ``orders/#`` at the mode's QoS. Received messages go to a local in-memory queue per
  partition; ``Fetch(offset)`` serves from it. The offsets are local to this client: the
  first Fetch of a partition sets the offset its first queued message gets (the
  processor's committed offset, 0, or its checkpoint's), so a restored checkpoint's
  offsets and a new incarnation's line up. ``CommitOffset(p, n)`` is the MQTT
  acknowledgement (paho's manual ack: PUBACK for QoS 1, PUBCOMP for QoS 2) of every
  message of p below n: at-most-once acknowledges before processing, at-least-once after
  the sink's ACK, exactly-once after each checkpoint. A processor that dies with messages
  unacknowledged gets them again from the broker (QoS 1/2, persistent session).
  ``FetchCommittedOffset`` answers none (a new session starts from 0 or from its checkpoint).
* **Redelivery within one incarnation**: after a reconnect the broker resends the
  unacknowledged messages with the DUP flag and their packet ids; one that matches a
  message still unacknowledged here (same packet id, same payload) is the same
  message, not appended twice (and acknowledged at once if already committed).

QoS 2 at the processor: paho sends PUBREC on receipt and hands the message over at
PUBREL; PUBCOMP waits for the commit. Ownership passes to the client at PUBREC (MQTT
3.1.1, 4.3.3): a processor that dies after PUBREC and before processing loses those
messages (after a reconnect the broker only resends PUBREL). The audit shows it.

Errors map onto gRPC codes (nodes/logclient/base.py) as nodes/logclient/nats.py does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import aiomqtt
import grpc

from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from nodes.logclient.base import log_error
from nodes.pb import broker_pb2

QOS = {AT_MOST_ONCE: 0, AT_LEAST_ONCE: 1, EXACTLY_ONCE: 2}
TOPIC_PREFIX = "orders/"
SUBSCRIPTION = "orders/#"
CLIENT_ID_PREFIX = "testbed-"
KEEPALIVE_S = 5
RECONNECT_S = 0.1

log = logging.getLogger("logclient.mqtt")
_paho_log = logging.getLogger("logclient.mqtt.aiomqtt")
_paho_log.setLevel(logging.ERROR)   # aiomqtt warns at every 10th concurrent publish of a batch


def topic(partition: int) -> str:
    return f"{TOPIC_PREFIX}{partition}"


@dataclass
class MqttAddress:
    """``mqtt://host:port?partitions=N&client=NAME``: where, how many partitions, and the
    client's name (``processor``: the persistent subscriber; anything else publishes)."""

    host: str
    port: int
    partitions: int
    client: str
    sub_qos: int | None = None
    """``&sub_qos=Q``: the processor subscribes at Q instead of the mode's QoS (the broker
    delivers at min(publish QoS, subscription QoS))."""

    @classmethod
    def parse(cls, url: str) -> "MqttAddress":
        """Raises: ValueError (not an mqtt:// URL with a port and partitions >= 1)."""
        u = urlsplit(url)
        q = parse_qs(u.query)
        if u.scheme != "mqtt" or not u.hostname or not u.port:
            raise ValueError(f"not an mqtt://host:port URL: {url!r}")
        parts = int(q.get("partitions", ["4"])[0])
        if parts < 1:
            raise ValueError(f"partitions must be >= 1: {url!r}")
        sub_qos = int(q["sub_qos"][0]) if "sub_qos" in q else None
        if sub_qos not in (None, 0, 1, 2):
            raise ValueError(f"sub_qos must be 0, 1 or 2: {url!r}")
        return cls(u.hostname, u.port, parts, q.get("client", ["producer"])[0], sub_qos)

    @property
    def client_id(self) -> str:
        return f"{CLIENT_ID_PREFIX}{self.client}"


@dataclass
class _Entry:
    """One received message: its packet id, QoS, connection generation, payload."""

    mid: int
    qos: int
    gen: int
    payload: bytes
    done: bool = False    # committed by the processor
    acked: bool = False   # PUBACK / PUBCOMP sent


class MqttClient:
    """``base.LogClient`` over one MQTT broker.

    Args:
        url: ``mqtt://host:port?partitions=N&client=NAME`` (:class:`MqttAddress`).
        mode: the delivery mode: picks the QoS (:data:`QOS`).
    """

    def __init__(self, url: str, *, mode: str) -> None:
        self.addr = MqttAddress.parse(url)
        self.mode = mode
        self.qos = QOS[mode]
        self.sub_qos = self.qos if self.addr.sub_qos is None else self.addr.sub_qos
        self._pub: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        # consumer side
        self._sub: aiomqtt.Client | None = None
        self._sub_task: asyncio.Task | None = None
        self.connected = False
        self.gen = 0
        self.queues: dict[int, list[_Entry]] = {p: [] for p in range(self.addr.partitions)}
        self.base: dict[int, int] = {}
        self.committed: dict[int, int] = {}   # local index (not offset) committed per partition
        self.unacked: dict[tuple[int, int], _Entry] = {}   # (partition, packet id) -> not yet acked
        self.received = 0
        self.redelivered_matched = 0
        self.last_receive = time.monotonic()
        self._arrived = asyncio.Event()

    # ----- connections ---------------------------------------------------------------------

    async def _call(self, what: str, coro, timeout: float):
        try:
            return await asyncio.wait_for(coro, timeout)
        except grpc.aio.AioRpcError:
            raise
        except asyncio.TimeoutError:
            await self._drop_pub()
            raise log_error(grpc.StatusCode.DEADLINE_EXCEEDED, f"mqtt {what}: no ack within {timeout:.3g} s") from None
        except asyncio.CancelledError:
            raise
        except Exception as e:   # MqttError: refused, connection lost, not connected
            await self._drop_pub()
            raise log_error(grpc.StatusCode.UNAVAILABLE, f"mqtt {what}: {type(e).__name__}: {e}") from None

    async def _publisher(self) -> aiomqtt.Client:
        async with self._lock:
            if self._pub is None:
                c = aiomqtt.Client(self.addr.host, self.addr.port, identifier=self.addr.client_id,
                                   clean_session=True, keepalive=KEEPALIVE_S, max_inflight_messages=0,
                                   logger=_paho_log)
                try:
                    await c.__aenter__()
                except BaseException:
                    await _close(c)
                    raise
                self._pub = c
            return self._pub

    async def _drop_pub(self) -> None:
        c, self._pub = self._pub, None
        if c is not None:
            await _close(c)

    # ----- producer ------------------------------------------------------------------------

    async def InitProducer(self, request, *, timeout: float):
        """MQTT has no producer id: answers the caller's id (or 1), epoch 0."""
        pid = request.producer_id if request.producer_id >= 0 else 1
        return broker_pb2.InitProducerResponse(producer_id=pid, producer_epoch=0)

    async def Produce(self, request, *, timeout: float):
        """Publish each record to ``orders/<p>`` at the mode's QoS; return after every ACK."""
        async def publish():
            c = await self._publisher()
            await asyncio.gather(*(c.publish(topic(request.partition), r.value, qos=self.qos,
                                             timeout=timeout) for r in request.records))
            return broker_pb2.ProduceResponse(base_offset=-1)
        return await self._call("publish", publish(), timeout)

    async def ListOffsets(self, request, *, timeout: float):
        """The partition count from the address; high watermarks = this client's local
        queue ends (the processor's; a publisher's are 0)."""
        if self.addr.client == "processor":
            self._ensure_subscriber()
        return broker_pb2.ListOffsetsResponse(
            partition_count=self.addr.partitions,
            high_watermarks=[broker_pb2.PartitionOffset(partition=p, offset=self._end(p))
                             for p in range(self.addr.partitions)])

    # ----- consumer ------------------------------------------------------------------------

    def _ensure_subscriber(self) -> None:
        if self._sub_task is None or self._sub_task.done():
            self._sub_task = asyncio.ensure_future(self._subscribe_loop())

    async def _subscribe_loop(self) -> None:
        """Connect (persistent session), subscribe, move messages into the local queues;
        on a lost connection reconnect with the same client id until cancelled."""
        c = aiomqtt.Client(self.addr.host, self.addr.port, identifier=self.addr.client_id,
                           clean_session=False, keepalive=KEEPALIVE_S, timeout=5,
                           logger=_paho_log)
        c._client.manual_ack_set(True)   # paho >= 2.0: PUBACK / PUBCOMP when CommitOffset says
        self._sub = c
        while True:
            try:
                async with c:
                    self.gen += 1
                    await c.subscribe(SUBSCRIPTION, qos=self.sub_qos)
                    self.connected = True
                    log.info("subscribed", extra={"client_id": self.addr.client_id, "gen": self.gen})
                    async for m in c.messages:
                        self._on_message(m)
            except aiomqtt.MqttError as e:
                log.info("connection lost", extra={"error": str(e)})
            finally:
                self.connected = False
            await asyncio.sleep(RECONNECT_S)

    def _on_message(self, m: aiomqtt.Message) -> None:
        try:
            p = int(str(m.topic)[len(TOPIC_PREFIX):])
        except ValueError:
            return
        if p not in self.queues:
            return
        payload = bytes(m.payload) if m.payload is not None else b""
        self.last_receive = time.monotonic()
        if m.qos > 0:
            old = self.unacked.get((p, m.mid))
            if old is not None and old.gen < self.gen and old.payload == payload:
                old.gen = self.gen      # the same message, redelivered after a reconnect
                self.redelivered_matched += 1
                if old.done:
                    self._ack(p, old)
                return
        e = _Entry(m.mid, m.qos, self.gen, payload)
        self.queues[p].append(e)
        if m.qos > 0:
            self.unacked[(p, m.mid)] = e
        self.received += 1
        self._arrived.set()

    def committed_index(self, p: int) -> int:
        return self.committed.get(p, 0)

    def _ack(self, p: int, e: _Entry) -> None:
        """PUBACK / PUBCOMP of ``e`` if it came on the current connection (one from an
        earlier connection is acknowledged when the broker redelivers it)."""
        if e.qos == 0 or e.acked or e.gen != self.gen or not self.connected or self._sub is None:
            return
        self._sub._client.ack(e.mid, e.qos)
        e.acked = True
        if self.unacked.get((p, e.mid)) is e:
            del self.unacked[(p, e.mid)]

    def _end(self, p: int) -> int:
        return self.base.get(p, 0) + len(self.queues[p])

    async def Fetch(self, request, *, timeout: float):
        """Records of the local queues from each partition's offset, up to ``max_records``;
        waits up to ``max_wait_ms`` for one to arrive. The first Fetch of a partition sets
        its base offset (the offset of its first queued message) to the requested one."""
        self._ensure_subscriber()
        for po in request.partitions:
            self.base.setdefault(po.partition, po.offset)
        def ready() -> bool:
            return any(self._end(po.partition) > po.offset for po in request.partitions
                       if po.partition in self.queues)
        if not ready():
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), request.max_wait_ms / 1000)
            except asyncio.TimeoutError:
                pass
        out = []
        limit = max(1, request.max_records or 500)
        for po in request.partitions:
            p = po.partition
            if p not in self.queues:
                raise log_error(grpc.StatusCode.INVALID_ARGUMENT, f"mqtt: no partition {p}")
            base, q = self.base[p], self.queues[p]
            start = max(0, po.offset - base)
            recs = [broker_pb2.Record(offset=base + i, value=q[i].payload)
                    for i in range(start, min(len(q), start + limit))]
            out.append(broker_pb2.PartitionRecords(partition=p, records=recs, high_watermark=self._end(p)))
        return broker_pb2.FetchResponse(partitions=out)

    async def CommitOffset(self, request, *, timeout: float):
        """Acknowledge (PUBACK / PUBCOMP) every message of each partition below the offset.
        Offsets below the committed one are kept (listed in ``kept``), as the builtin broker
        does; one beyond the local queue end is OUT_OF_RANGE. A message received on an
        earlier connection is acknowledged when the broker redelivers it."""
        kept = []
        for po in request.offsets:
            p = po.partition
            if p not in self.queues:
                raise log_error(grpc.StatusCode.INVALID_ARGUMENT, f"mqtt: no partition {p}")
            base = self.base.setdefault(p, po.offset)
            idx = po.offset - base
            if idx > len(self.queues[p]):
                raise log_error(grpc.StatusCode.OUT_OF_RANGE,
                                f"mqtt: commit {po.offset} beyond the local end {self._end(p)} of partition {p}")
            if idx < self.committed_index(p):
                kept.append(broker_pb2.PartitionOffset(partition=p, offset=base + self.committed_index(p)))
                continue
            for e in self.queues[p][self.committed_index(p):idx]:
                e.done = True
                self._ack(p, e)
            self.committed[p] = idx
        return broker_pb2.CommitOffsetResponse(kept=kept)

    async def FetchCommittedOffset(self, request, *, timeout: float):
        """None: offsets are local to a session (a new incarnation starts from 0 or its checkpoint)."""
        self._ensure_subscriber()
        return broker_pb2.FetchCommittedOffsetResponse()

    def status(self) -> dict:
        """The subscriber's state for the processor's Status (``log_client``): connected,
        messages received, redeliveries matched, ms since the last message arrived, and
        ``ends``: each fetched partition's local queue end (its high watermark)."""
        return {"system": "mqtt", "connected": self.connected, "received": self.received,
                "redelivered_matched": self.redelivered_matched, "generation": self.gen,
                "quiet_ms": int((time.monotonic() - self.last_receive) * 1000),
                "unacked": len(self.unacked),
                "ends": {str(p): self._end(p) for p in sorted(self.base)}}

    async def close(self) -> None:
        if self._sub_task is not None:
            self._sub_task.cancel()
            try:
                await self._sub_task
            except BaseException:   # cancelled, or it had failed: nothing left to release
                pass
        await self._drop_pub()


async def _close(c: aiomqtt.Client) -> None:
    try:
        await asyncio.wait_for(c.__aexit__(None, None, None), 2)
    except BaseException:   # closing a dead connection: nothing left to release
        pass


async def create_session(url: str, mode: str, timeout_s: float = 10.0) -> None:
    """Create the processor's persistent session before anything is published: connect as
    ``testbed-processor`` (``clean_session`` false), subscribe to ``orders/#`` at the
    mode's QoS (or the URL's ``sub_qos``), disconnect. The broker queues every later message for it.

    Raises:
        aiomqtt.MqttError, asyncio.TimeoutError: the broker did not answer.
    """
    a = MqttAddress.parse(url)
    c = aiomqtt.Client(a.host, a.port, identifier=a.client_id, clean_session=False, keepalive=KEEPALIVE_S)
    async def go():
        async with c:
            await c.subscribe(SUBSCRIPTION, qos=QOS[mode] if a.sub_qos is None else a.sub_qos)
    await asyncio.wait_for(go(), timeout_s)
