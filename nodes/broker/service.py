"""The Broker gRPC servicer: a thin shell translating protobuf to :class:`Broker` calls.

Every :class:`nodes.broker.errors.BrokerError` becomes the gRPC status named by
its ``code`` with its message as details (see errors.py for the tree).
"""

from __future__ import annotations

import functools

import grpc

from nodes.broker.broker import Broker
from nodes.broker.errors import BrokerError
from nodes.broker.group_service import GroupServicerMixin
from nodes.pb import broker_pb2 as pb
from nodes.pb import broker_pb2_grpc


def _errors_to_status(method):
    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except BrokerError as e:
            await context.abort(getattr(grpc.StatusCode, e.code), str(e))
    return wrapper


class BrokerServicer(GroupServicerMixin, broker_pb2_grpc.BrokerServicer):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @_errors_to_status
    async def InitProducer(self, request, context):
        pid, epoch, seqs = await self.broker.init_producer(request.producer_id)
        return pb.InitProducerResponse(
            producer_id=pid, producer_epoch=epoch,
            next_sequences=[pb.PartitionOffset(partition=p, offset=s) for p, s in sorted(seqs.items())])

    @_errors_to_status
    async def Produce(self, request, context):
        entries = [(r.key, r.value) for r in request.records]
        base, dup, end = await self.broker.produce(request.topic, request.partition, request.producer_id,
                                                   request.producer_epoch, request.base_sequence, entries)
        return pb.ProduceResponse(base_offset=base, duplicate=dup, log_end_offset=end)

    @_errors_to_status
    async def Fetch(self, request, context):
        got = await self.broker.fetch(request.topic, [(po.partition, po.offset) for po in request.partitions],
                                      request.max_records, request.max_wait_ms)
        resp = pb.FetchResponse()
        for p, recs, hw in got:
            # records.add(...) builds each Record in place: half the CPU of a list of
            # pb.Record copied into the repeated field (issue 16).
            add = resp.partitions.add(partition=p, high_watermark=hw).records.add
            for offset, ts, pid, epoch, seq, key, value in recs:
                add(offset=offset, key=key, value=value, timestamp_ms=ts, producer_id=pid,
                    producer_epoch=epoch, sequence=seq)
        return resp

    @_errors_to_status
    async def CommitOffset(self, request, context):
        kept = await self.broker.commit_offsets(request.group, request.topic,
                                                [(po.partition, po.offset) for po in request.offsets],
                                                member_id=request.member_id,
                                                generation=request.generation_id)
        return pb.CommitOffsetResponse(
            kept=[pb.PartitionOffset(partition=p, offset=o) for p, o in sorted(kept.items())])

    @_errors_to_status
    async def FetchCommittedOffset(self, request, context):
        offs = self.broker.committed_offsets(request.group, request.topic)
        return pb.FetchCommittedOffsetResponse(
            offsets=[pb.PartitionOffset(partition=p, offset=o) for p, o in sorted(offs.items())])

    @_errors_to_status
    async def ListOffsets(self, request, context):
        hws = self.broker.list_offsets(request.topic)
        return pb.ListOffsetsResponse(
            partition_count=len(hws),
            high_watermarks=[pb.PartitionOffset(partition=p, offset=o) for p, o in sorted(hws.items())])
