"""The processor's side of a consumer group: join, heartbeat, leave (Kafka's consumer coordinator).

:class:`GroupMember` joins the broker's group coordinator (nodes/broker/group.py)
and learns its generation id and partitions. A background task heartbeats every
``heartbeat_ms``; a reply other than OK (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID) sets :attr:`rejoin_needed`: the processing loop finishes its step,
hands back what it owns (commit / checkpoint, as its mode requires) and calls
:meth:`join` again. A member whose process was stopped (SIGSTOP, a long GC pause)
sends no heartbeat: after its session timeout the coordinator removes it and gives its
partitions to the others. When it wakes up it does not know yet; its next commit is
refused (:class:`Fenced`), or its next heartbeat says UNKNOWN_MEMBER_ID.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from nodes.common.modes import TOPIC
from nodes.common.retry import backoff_s
from nodes.pb import broker_pb2

FENCING_ERRORS = ("ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "NOT_OWNER", "FENCED")
"""Prefixes of a FAILED_PRECONDITION's details that mean "you are no longer the owner"."""


class Fenced(Exception):
    """A commit or sink write refused because this member's generation is stale or it does not
    own the partition any more (FAILED_PRECONDITION, details starting with a FENCING_ERRORS name):
    the member stops processing and rejoins; nothing of the refused call took effect."""


def is_fencing(e: grpc.aio.AioRpcError) -> bool:
    return (e.code() == grpc.StatusCode.FAILED_PRECONDITION
            and (e.details() or "").startswith(FENCING_ERRORS))


class GroupMember:
    """One member of consumer group ``group``.

    Args:
        stub: the broker's stub (or a log client with JoinGroup / Heartbeat / LeaveGroup).
        client_id: prefix of the member id the coordinator gives (e.g. ``processor-2``).
        session_timeout_ms: the coordinator removes the member when silent this long.
        heartbeat_ms: heartbeat interval (Kafka's default is a third of the session timeout).
    """

    def __init__(self, stub, *, group: str, client_id: str, log: logging.Logger,
                 session_timeout_ms: int = 2000, heartbeat_ms: int = 0, rpc_timeout_ms: int = 1000,
                 backoff_ms: int = 50) -> None:
        self.stub, self.group, self.client_id, self.log = stub, group, client_id, log
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_s = (heartbeat_ms or max(session_timeout_ms // 4, 50)) / 1000.0
        self.timeout_s = rpc_timeout_ms / 1000.0
        self.backoff_ms = backoff_ms
        self.member_id = ""
        self.generation = 0
        self.generation_member = ""
        """The member id this process had in ``generation``: what its sink calls name as the
        writer. ``member_id`` is cleared when a heartbeat hears UNKNOWN_MEMBER_ID, while output
        of the old generation may still be written (a zombie's: recorded under this id)."""
        self.partitions: list[int] = []
        self.rejoin_needed = True
        self.joins = 0
        self.fenced = 0
        self.history: list[dict] = []
        """Assignments this process received: {"generation", "partitions", "time"}."""
        self._task: asyncio.Task | None = None

    async def join(self) -> list[int]:
        """JoinGroup until the rebalance completes (polled every heartbeat interval; errors retried
        with backoff). Returns the partitions of the new generation; starts the heartbeats."""
        attempt = 0
        while True:
            req = broker_pb2.JoinGroupRequest(group=self.group, topic=TOPIC, member_id=self.member_id,
                                              client_id=self.client_id,
                                              session_timeout_ms=self.session_timeout_ms)
            try:
                r = await self.stub.JoinGroup(req, timeout=self.timeout_s)
            except grpc.aio.AioRpcError as e:
                if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                grpc.StatusCode.UNIMPLEMENTED):
                    raise
                attempt += 1
                await asyncio.sleep(backoff_s(self.backoff_ms, attempt))
                continue
            attempt = 0
            if r.status == "UNKNOWN_MEMBER_ID":
                self.member_id = ""
                continue
            self.member_id = r.member_id
            if r.status == "OK":
                break
            await asyncio.sleep(min(self.heartbeat_s, 0.1))
        self.generation, self.partitions = r.generation_id, sorted(r.partitions)
        self.generation_member = self.member_id
        self.rejoin_needed = False
        self.joins += 1
        self.history.append({"generation": self.generation, "partitions": self.partitions,
                             "time": time.time()})
        self.log.info("joined group", extra={"group": self.group, "member_id": self.member_id,
                                             "generation": self.generation, "partitions": self.partitions,
                                             "members": list(r.members)})
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._heartbeats())
        return self.partitions

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if not self.member_id:
                continue
            try:
                r = await self.stub.Heartbeat(broker_pb2.HeartbeatRequest(
                    group=self.group, member_id=self.member_id, generation_id=self.generation),
                    timeout=self.timeout_s)
            except grpc.aio.AioRpcError:
                continue  # the coordinator unreachable: keep processing until a commit says otherwise
            if r.status != "OK" and not self.rejoin_needed:
                self.log.info("rebalance: rejoining", extra={"status": r.status, "generation": self.generation,
                                                             "group_generation": r.generation_id})
                self.rejoin_needed = True
            if r.status == "UNKNOWN_MEMBER_ID":
                self.member_id = ""

    def fenced_by(self, what: str, e: BaseException) -> Fenced:
        """Count a fencing refusal and turn it into :class:`Fenced` (the loop rejoins)."""
        self.fenced += 1
        self.rejoin_needed = True
        self.log.warning("fenced: this member's generation is stale", extra={
            "what": what, "generation": self.generation, "member_id": self.member_id, "error": str(e)})
        return Fenced(f"{what}: {e}")

    async def leave(self) -> None:
        """LeaveGroup (one attempt) and stop heartbeating; on graceful stop."""
        if self._task is not None:
            self._task.cancel()
        if self.member_id:
            try:
                await self.stub.LeaveGroup(broker_pb2.LeaveGroupRequest(group=self.group,
                                                                        member_id=self.member_id),
                                           timeout=self.timeout_s)
            except grpc.aio.AioRpcError:
                pass

    def status(self) -> dict:
        return {"member_id": self.member_id, "generation": self.generation, "assignment": self.partitions,
                "joins": self.joins, "fenced": self.fenced, "assignments": self.history[-50:]}
