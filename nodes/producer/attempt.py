"""One Produce attempt, recorded in the history; the broker's answers the producer acts on.

A workload batch is split by partition into :class:`PartitionBatch` es, one
ProduceRequest each ("one batch for one partition", broker.proto).
:class:`Sender` makes one attempt: ``invoke`` in the history, the call with the
ack timeout as deadline, then ``ok`` / ``fail`` (definite error) / ``info``
(unknown outcome) (Jepsen's client protocol). The strategies (``strategies``)
decide what to do next.

Broker answers that end the retry loop of the idempotent producer:

    FAILED_PRECONDITION ("stale epoch", "unknown producer id", "partial sequence
        overlap")  -> ProducerFenced: fatal, the node exits 1
    OUT_OF_RANGE ("sequence gap")  -> SequenceGap: re-initialise and rebase
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

import hashlib

from nodes.common.limits import MAX_HISTORY_ORDER_ID_CHARS
from nodes.common.failpoints import FAILPOINTS, FailpointError
from nodes.common.modes import TOPIC
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order
from nodes.producer.history import HistoryWriter, completion_type



class ProducerFenced(RuntimeError):
    """The broker refused the idempotent producer with FAILED_PRECONDITION: "stale epoch"
    (fenced by a newer incarnation owning the producer id), "unknown producer id" (the
    broker lost its producer table) or "partial sequence overlap" (a batch re-cut
    differently). Retrying cannot help: the node logs it and exits 1."""


class SequenceGap(RuntimeError):
    """OUT_OF_RANGE from the broker: our base_sequence is ahead of the next one it expects,
    i.e. the broker lost records it had acknowledged (an fsync ablation and a crash)."""

    def __init__(self, partition: int, details: str) -> None:
        super().__init__(f"partition {partition}: {details}")
        self.partition = partition


def is_fenced(code: grpc.StatusCode | None, producer_id: int) -> bool:
    """FAILED_PRECONDITION on an idempotent request (producer id >= 0) is fatal."""
    return code == grpc.StatusCode.FAILED_PRECONDITION and producer_id >= 0


def history_id(order_id: str) -> str:
    """``order_id`` as written in the history: whole up to MAX_HISTORY_ORDER_ID_CHARS
    characters, else ``"<sha256:HEX len:N>"`` (a history line stays bounded)."""
    if len(order_id) <= MAX_HISTORY_ORDER_ID_CHARS:
        return order_id
    digest = hashlib.sha256(order_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<sha256:{digest} len:{len(order_id)}>"


MAX_ERROR_CHARS = 1024
"""An ``error`` in the history is cut to this many characters."""


@dataclass
class PartitionBatch:
    """The orders of workload batch ``batch`` that go to ``partition``."""

    batch: int
    partition: int
    orders: list[Order]
    base_sequence: int | None = None   # idempotent producer only
    appended: int | None = None        # orders the broker took (sequence numbers used); None = all

    def request(self, producer_id: int = -1, epoch: int = 0) -> broker_pb2.ProduceRequest:
        req = broker_pb2.ProduceRequest(
            topic=TOPIC, partition=self.partition, producer_id=producer_id, producer_epoch=epoch,
            base_sequence=-1 if self.base_sequence is None else self.base_sequence)
        add = req.records.add  # built in place: a list of Records copied in costs 1.5x (issue 16)
        for o in self.orders:
            add(key=o.account.encode(), value=o.SerializeToString())
        return req

    def value(self, attempt: int) -> dict:
        """The history ``value`` of an attempt."""
        return {"batch": self.batch, "partition": self.partition,
                "base_sequence": self.base_sequence, "attempt": attempt,
                "orders": [history_id(o.order_id) for o in self.orders]}


@dataclass
class Outcome:
    """How one attempt ended: ``type`` is "ok", "fail" (definite) or "info" (unknown)."""

    type: str
    response: broker_pb2.ProduceResponse | None = None
    code: grpc.StatusCode | None = None
    details: str = ""


@dataclass
class Counters:
    """Per-partition batches: first sends, ACKed, re-sends, given up (the Status JSON)."""

    batches_sent: int = 0
    batches_acked: int = 0
    retries: int = 0
    given_up: int = 0
    refused_orders: int = 0   # orders the broker refused with a permanent error (history: fail)


class Sender:
    """One Produce attempt, recorded in the history as invoke then ok / fail / info.

    Args:
        stub: a ``BrokerStub`` (or anything with ``async Produce(request, timeout=s)``).
        ack_timeout_s: the call deadline (seconds); a missed deadline is ``info``.
    """

    def __init__(self, stub, history: HistoryWriter, counters: Counters, ack_timeout_s: float) -> None:
        self.stub, self.history, self.counters = stub, history, counters
        self.ack_timeout_s = ack_timeout_s

    async def attempt(self, pb: PartitionBatch, request: broker_pb2.ProduceRequest,
                      attempt: int) -> Outcome:
        value = pb.value(attempt)
        if attempt == 1:
            self.counters.batches_sent += 1
        else:
            self.counters.retries += 1
        self.history.invoke(value)
        try:
            resp = await self.stub.Produce(request, timeout=self.ack_timeout_s)
        except asyncio.CancelledError:
            self.history.info(value, "CANCELLED: producer stopping")
            raise
        except grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else None
            details = (e.details() if callable(getattr(e, "details", None)) else str(e)) or ""
            out = Outcome(completion_type(code), code=code, details=details)
            details = details[:MAX_ERROR_CHARS]
            error = f"{code.name if code else 'UNKNOWN'}: {details}"
            (self.history.fail if out.type == "fail" else self.history.info)(value, error)
            return out
        if FAILPOINTS.armed:  # the broker answered OK; not yet recorded nor acted on
            try:
                await FAILPOINTS.hit("producer.after-send-before-ack")
            except FailpointError as e:  # `error`: the ACK is lost on the way in (outcome unknown)
                self.history.info(value, f"UNAVAILABLE: {e}")
                return Outcome("info", code=grpc.StatusCode.UNAVAILABLE, details=str(e))
        self.counters.batches_acked += 1
        self.history.ok(value, offset=resp.base_offset, duplicate=resp.duplicate)
        return Outcome("ok", response=resp)
