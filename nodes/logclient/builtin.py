"""The builtin broker's client: its gRPC stub over one channel (behaviour of the seed)."""

from __future__ import annotations

from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2_grpc


class BuiltinClient:
    """``base.LogClient`` over ``broker_pb2_grpc.BrokerStub`` on a channel to ``address``
    ("host:port" of the broker or of its proxy). Errors: the stub's grpc.aio.AioRpcError."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = insecure_channel(address)
        stub = broker_pb2_grpc.BrokerStub(self.channel)
        self.InitProducer, self.Produce, self.ListOffsets = stub.InitProducer, stub.Produce, stub.ListOffsets
        self.Fetch, self.CommitOffset = stub.Fetch, stub.CommitOffset
        self.FetchCommittedOffset = stub.FetchCommittedOffset
        # Consumer groups (builtin broker only; nodes/broker/group.py).
        self.JoinGroup, self.Heartbeat, self.LeaveGroup = stub.JoinGroup, stub.Heartbeat, stub.LeaveGroup

    async def close(self) -> None:
        await self.channel.close()
