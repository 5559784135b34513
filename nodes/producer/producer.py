"""The producer's batch loop: take the next batch, split it by partition, hand it to the mode.

:class:`Producer` is plain asyncio code over a Broker stub; the node shell
(``__main__``) only wires it to a gRPC channel and the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass

import grpc

from nodes.common.retry import PermanentRpcError, backoff_s, is_permanent

from nodes.common.modes import EXACTLY_ONCE, TOPIC
from nodes.common.partitioning import partition_for
from nodes.pb import broker_pb2
from nodes.pb.events_pb2 import Order
from nodes.producer.history import HistoryWriter
from nodes.producer.attempt import Counters, ProducerFenced, Sender
from nodes.producer.strategies import make_strategy
from nodes.producer.state import ProducerState, StateStore

log = logging.getLogger("producer")


@dataclass
class ProducerConfig:
    """Tunables (CLI flags). Units: events/s, events, ms."""

    mode: str
    rate: float = 0.0              # events/s; 0 = as fast as possible
    batch_size: int = 100          # events per workload batch
    ack_timeout_ms: int = 1000     # deadline of every Produce / InitProducer / ListOffsets
    retry_backoff_ms: int = 50     # pause before a retry
    no_retry: bool = False         # ablation: give a failed batch up instead of retrying
    max_in_flight: int = 64        # at-most-once back-pressure: concurrent fire-and-forget sends


class Producer:
    """Emits ``orders[state.position:]`` to the broker, batch by batch.

    Args:
        orders: the whole workload (``workload.generate`` / ``load_jsonl``).
        state: loaded by ``StateStore.load``; mutated and saved as batches go out.
        stub: a ``BrokerStub`` (InitProducer, Produce, ListOffsets).

    ``run`` raises ``sending.ProducerFenced`` when the broker fences the producer;
    every other broker error is retried (at-least-once, exactly-once) or recorded.
    """

    def __init__(self, orders: list[Order], state: ProducerState, store: StateStore,
                 history: HistoryWriter, stub, config: ProducerConfig) -> None:
        self.orders, self.state, self.store, self.history = orders, state, store, history
        self.stub, self.config = stub, config
        self.counters = Counters()
        self.partitions: int | None = None
        self.done = False
        self.sender = Sender(stub, history, self.counters, config.ack_timeout_ms / 1000)
        self.strategy = make_strategy(
            config.mode, self.sender, state, store, retry_backoff_s=config.retry_backoff_ms / 1000,
            no_retry=config.no_retry, max_in_flight=config.max_in_flight,
            init_producer=lambda req: self._until_answered("InitProducer", self.stub.InitProducer, req))

    async def _until_answered(self, what: str, rpc, request):
        """Call ``rpc`` until it answers (setup calls: the broker may still be starting).

        Raises:
            ProducerFenced: FAILED_PRECONDITION (e.g. "unknown producer id": the broker
                lost its producer table; resuming under a new id could duplicate).
        """
        failures = 0
        while True:
            try:
                return await rpc(request, timeout=self.config.ack_timeout_ms / 1000)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    raise ProducerFenced(f"{what} refused: {e.details()}") from None
                if is_permanent(e.code()):
                    raise PermanentRpcError(what, e.code(), e.details() or "") from None
                failures += 1
                if failures == 1 or failures % 50 == 0:
                    log.warning("%s failed, retrying: %s: %s", what, e.code().name, e.details(),
                                extra={"failures": failures})
                await asyncio.sleep(backoff_s(self.config.retry_backoff_ms, failures))

    def split(self, orders: list[Order]) -> dict[int, list[Order]]:
        """Group a batch by partition (``partition_for(account, partitions)``), keeping order."""
        groups: dict[int, list[Order]] = defaultdict(list)
        for o in orders:
            groups[partition_for(o.account, self.partitions)].append(o)
        return dict(groups)

    async def run(self) -> None:
        """Send the rest of the workload, then wait for outstanding sends; sets ``done``."""
        resp = await self._until_answered("ListOffsets", self.stub.ListOffsets,
                                          broker_pb2.ListOffsetsRequest(topic=TOPIC))
        if resp.partition_count <= 0:
            raise RuntimeError(f"broker reports {resp.partition_count} partitions")
        self.partitions = resp.partition_count
        await self.strategy.start()
        loop = asyncio.get_running_loop()
        t0, sent = loop.time(), 0
        total, size = len(self.orders), self.config.batch_size
        log.info("producing", extra={"position": self.state.position, "total": total,
                                     "partitions": self.partitions})
        while self.state.position < total:
            if self.config.rate > 0:   # pace on the loop clock: event n leaves at t0 + n / rate
                delay = t0 + sent / self.config.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            start = self.state.position
            end = min(start + size, total)
            await self.strategy.send_batch(self.state.batch, self.split(self.orders[start:end]), end)
            sent += end - start
        await self.strategy.drain()
        self.done = True
        log.info("workload finished", extra=self.status())

    def status(self) -> dict:
        """The Status JSON (counters count per-partition batches, i.e. ProduceRequests)."""
        c = self.counters
        return {"position": self.state.position, "total": len(self.orders), "done": self.done,
                "batches_sent": c.batches_sent, "batches_acked": c.batches_acked,
                "retries": c.retries, "given_up": c.given_up, "refused_orders": c.refused_orders,
                "in_flight": self.strategy.in_flight,
                "producer_id": self.state.producer_id if self.config.mode == EXACTLY_ONCE else None,
                "epoch": self.state.epoch if self.config.mode == EXACTLY_ONCE else None,
                "incarnation": self.state.incarnation, "partitions": self.partitions}
