"""The consumer-group RPCs of the Broker servicer (JoinGroup, Heartbeat, LeaveGroup): a thin
shell over :class:`nodes.broker.group.GroupCoordinator` (the logic, testable without gRPC).

gRPC statuses: INVALID_ARGUMENT for an empty or too long group or client id, an unknown
topic, a session timeout outside [100, 300000] ms; RESOURCE_EXHAUSTED for a group that
already has 1,024 members. The group protocol's own outcomes (REBALANCE_IN_PROGRESS,
UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION) are the ``status`` of an OK reply.
"""

from __future__ import annotations

import grpc

from nodes.broker.group import MAX_CLIENT_ID_BYTES, MAX_MEMBERS, JoinResult
from nodes.broker.limits import check_group
from nodes.broker.errors import BrokerError
from nodes.common.limits import short, too_long
from nodes.common.modes import TOPIC
from nodes.pb import broker_pb2 as pb


def _reply(r: JoinResult) -> pb.GroupAssignment:
    return pb.GroupAssignment(status=r.status, generation_id=r.generation, member_id=r.member_id,
                              partitions=r.partitions, members=r.members)


async def _invalid(context, message: str, code=grpc.StatusCode.INVALID_ARGUMENT):
    await context.abort(code, message)


class GroupServicerMixin:
    """Mixed into BrokerServicer (``self.broker`` is the Broker)."""

    async def _group(self, request, context):
        try:
            check_group(request.group)
        except BrokerError as e:
            await _invalid(context, str(e))
        if too_long(request.member_id, MAX_CLIENT_ID_BYTES):
            await _invalid(context, f"member_id longer than {MAX_CLIENT_ID_BYTES} bytes: "
                                    f"{short(request.member_id)}")
        return self.broker.groups.group(request.group)

    async def JoinGroup(self, request, context):
        if request.topic != TOPIC:
            await _invalid(context, f"unknown topic {short(request.topic)} (this broker serves {TOPIC!r})")
        if too_long(request.client_id, MAX_CLIENT_ID_BYTES):
            await _invalid(context, f"client_id longer than {MAX_CLIENT_ID_BYTES} bytes")
        g = await self._group(request, context)
        if not request.member_id and len(g.members) >= MAX_MEMBERS:
            await _invalid(context, f"group {request.group!r} already has {MAX_MEMBERS} members",
                           grpc.StatusCode.RESOURCE_EXHAUSTED)
        try:
            r = g.join(request.member_id, request.client_id, request.session_timeout_ms)
        except ValueError as e:
            await _invalid(context, str(e))
        return _reply(r)

    async def Heartbeat(self, request, context):
        g = await self._group(request, context)
        return _reply(g.heartbeat(request.member_id, request.generation_id))

    async def LeaveGroup(self, request, context):
        g = await self._group(request, context)
        return pb.LeaveGroupResponse(known=g.leave(request.member_id))
