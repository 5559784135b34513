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
  partition (nodes/logclient/mqtt_queue.py); ``Fetch(offset)`` serves from it. The
  offsets are local to this client: the first Fetch of a partition sets the offset its
  first queued message gets (the
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
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import aiomqtt
import grpc

from nodes.common.modes import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE
from nodes.logclient.base import log_error
from nodes.logclient.mqtt_queue import CommitBeyondEnd, SessionQueues
from nodes.pb import broker_pb2

QOS = {AT_MOST_ONCE: 0, AT_LEAST_ONCE: 1, EXACTLY_ONCE: 2}
TOPIC_PREFIX = "orders/"
SUBSCRIPTION = "orders/#"
CLIENT_ID_PREFIX = "testbed-"
KEEPALIVE_S = 5
RECONNECT_S = 0.1
SUB_TIMEOUT_S = 2.0
"""The subscriber's wait for CONNACK / SUBACK (s): a broker that does not answer (paused,
restarting) is given up and dialled again; a QoS 0 session is offline, losing messages,
for as long as this lasts."""

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
        self.q = SessionQueues(self.addr.partitions, self._send_ack)

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
            high_watermarks=[broker_pb2.PartitionOffset(partition=p, offset=self.q.end(p))
                             for p in range(self.addr.partitions)])

    # ----- consumer ------------------------------------------------------------------------

    def _ensure_subscriber(self) -> None:
        if self._sub_task is None or self._sub_task.done():
            self._sub_task = asyncio.ensure_future(self._subscribe_loop())

    async def _subscribe_loop(self) -> None:
        """Connect (persistent session), subscribe, move messages into the local queues;
        on a lost connection reconnect with the same client id until cancelled."""
        c = aiomqtt.Client(self.addr.host, self.addr.port, identifier=self.addr.client_id,
                           clean_session=False, keepalive=KEEPALIVE_S, timeout=SUB_TIMEOUT_S,
                           logger=_paho_log)
        c._client.manual_ack_set(True)   # paho >= 2.0: PUBACK / PUBCOMP when CommitOffset says
        self._sub = c
        while True:
            try:
                async with c:
                    self.q.gen += 1
                    await c.subscribe(SUBSCRIPTION, qos=self.sub_qos)
                    self.q.connected = True
                    log.info("subscribed", extra={"client_id": self.addr.client_id, "gen": self.q.gen})
                    async for m in c.messages:
                        self._on_message(m)
            except aiomqtt.MqttError as e:
                log.info("connection lost", extra={"error": str(e)})
            finally:
                self.q.connected = False
            await asyncio.sleep(RECONNECT_S)

    def _on_message(self, m: aiomqtt.Message) -> None:
        try:
            p = int(str(m.topic)[len(TOPIC_PREFIX):])
        except ValueError:
            return
        if p in self.q.queues:
            self.q.receive(p, m.mid, m.qos, bytes(m.payload) if m.payload is not None else b"")

    def _send_ack(self, mid: int, qos: int) -> None:
        if self._sub is not None:
            self._sub._client.ack(mid, qos)

    async def Fetch(self, request, *, timeout: float):
        """Records of the local queues from each partition's offset, up to ``max_records``;
        waits up to ``max_wait_ms`` for one to arrive. The first Fetch of a partition sets
        its base offset (the offset of its first queued message) to the requested one."""
        self._ensure_subscriber()
        for po in request.partitions:
            if po.partition not in self.q.queues:
                raise log_error(grpc.StatusCode.INVALID_ARGUMENT, f"mqtt: no partition {po.partition}")
            self.q.set_base(po.partition, po.offset)
        def ready() -> bool:
            return any(self.q.end(po.partition) > po.offset for po in request.partitions)
        self.q.arrived.clear()   # cleared before the look: a message arriving after it sets it
        if not ready():
            try:
                await asyncio.wait_for(self.q.arrived.wait(), request.max_wait_ms / 1000)
            except asyncio.TimeoutError:
                pass
        limit = max(1, request.max_records or 500)
        out = [broker_pb2.PartitionRecords(
                   partition=po.partition, high_watermark=self.q.end(po.partition),
                   records=[broker_pb2.Record(offset=o, value=v)
                            for o, v in self.q.records(po.partition, po.offset, limit)])
               for po in request.partitions]
        return broker_pb2.FetchResponse(partitions=out)

    async def CommitOffset(self, request, *, timeout: float):
        """Acknowledge (PUBACK / PUBCOMP) every message of each partition below the offset.
        Offsets below the committed one are kept (listed in ``kept``), as the builtin broker
        does; one beyond the local queue end is OUT_OF_RANGE. A message received on an
        earlier connection is acknowledged when the broker redelivers it."""
        kept = []
        for po in request.offsets:
            if po.partition not in self.q.queues:
                raise log_error(grpc.StatusCode.INVALID_ARGUMENT, f"mqtt: no partition {po.partition}")
            try:
                k = self.q.commit(po.partition, po.offset)
            except CommitBeyondEnd as e:
                raise log_error(grpc.StatusCode.OUT_OF_RANGE, f"mqtt: {e}") from None
            if k is not None:
                kept.append(broker_pb2.PartitionOffset(partition=po.partition, offset=k))
        return broker_pb2.CommitOffsetResponse(kept=kept)

    async def FetchCommittedOffset(self, request, *, timeout: float):
        """None: offsets are local to a session (a new incarnation starts from 0 or its checkpoint)."""
        self._ensure_subscriber()
        return broker_pb2.FetchCommittedOffsetResponse()

    def status(self) -> dict:
        """The subscriber's state for the processor's Status (``log_client``,
        nodes/logclient/mqtt_queue.py): connected, received, quiet_ms, ``ends``..."""
        return {"system": "mqtt", **self.q.status()}

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
