"""The log-client interface the producer and processor need (Jepsen's client: open, invoke, close).

The operations and their messages are the builtin broker's (proto/nodes/pb/broker.proto),
the vocabulary of a partitioned log: every system's client speaks them.

    InitProducer(InitProducerRequest)   -> InitProducerResponse  (idempotent producer id, epoch)
    Produce(ProduceRequest)             -> ProduceResponse       (one batch for one partition:
                                                                  base offset, duplicate)
    ListOffsets(ListOffsetsRequest)     -> ListOffsetsResponse   (partition count, high watermarks)
    Fetch(FetchRequest)                 -> FetchResponse         (records from an offset)
    CommitOffset(CommitOffsetRequest)   -> CommitOffsetResponse  (a group's next offsets)
    FetchCommittedOffset(...)           -> FetchCommittedOffsetResponse

Each takes ``timeout=`` seconds. Errors are ``grpc.aio.AioRpcError`` with the gRPC status
code that says what the caller may do (nodes/common/retry.py): UNAVAILABLE and
DEADLINE_EXCEEDED are transient (retry; a Produce that timed out has an unknown outcome),
INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE / DATA_LOSS are permanent. A client
of another system maps its own errors onto these codes (:func:`log_error`).
"""

from __future__ import annotations

from typing import Protocol

import grpc

from nodes.pb import broker_pb2


class LogClient(Protocol):
    """What the producer and the processor call; ``close`` ends the client."""

    async def InitProducer(self, request: broker_pb2.InitProducerRequest, *, timeout: float
                           ) -> broker_pb2.InitProducerResponse: ...

    async def Produce(self, request: broker_pb2.ProduceRequest, *, timeout: float
                      ) -> broker_pb2.ProduceResponse: ...

    async def ListOffsets(self, request: broker_pb2.ListOffsetsRequest, *, timeout: float
                          ) -> broker_pb2.ListOffsetsResponse: ...

    async def Fetch(self, request: broker_pb2.FetchRequest, *, timeout: float
                    ) -> broker_pb2.FetchResponse: ...

    async def CommitOffset(self, request: broker_pb2.CommitOffsetRequest, *, timeout: float
                           ) -> broker_pb2.CommitOffsetResponse: ...

    async def FetchCommittedOffset(self, request: broker_pb2.FetchCommittedOffsetRequest, *,
                                   timeout: float) -> broker_pb2.FetchCommittedOffsetResponse: ...

    async def close(self) -> None: ...


def log_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """An error of a non-gRPC log client, shaped as the gRPC error the callers handle."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
