"""The consumer side: partitions, fetch positions, committed offsets (Kafka's consumer group).

All calls go to the broker's service (proto/nodes/pb/broker.proto). Positions
are the next offset to consume per partition; the consumer never guesses a
position: committed offsets are fetched with retry and an error is never
taken as "start at the log end" (scenario 8).
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from nodes.common.modes import TOPIC
from nodes.pb import broker_pb2, broker_pb2_grpc
from nodes.common.retry import PermanentRpcError, is_permanent
from nodes.processor.membership import is_fencing
from nodes.processor.retry import backoff_s, retry_rpc


class Consumer:
    """Fetches ``topic`` from every partition on behalf of consumer group ``group``.

    Args:
        channel: a log client (nodes/logclient: ``LogClient``), or a grpc.aio channel to the
            builtin broker (or its proxy).
        rpc_timeout_ms: deadline of each broker call; a Fetch gets ``max_wait_ms`` on top.
        backoff_ms: base of the retry backoff.
        max_records: Fetch's ``max_records`` (per partition).
        max_wait_ms: Fetch's long-poll wait.
    """

    def __init__(self, channel: grpc.aio.Channel, *, group: str, log: logging.Logger,
                 topic: str = TOPIC, rpc_timeout_ms: int = 2000, backoff_ms: int = 50,
                 max_records: int = 500, max_wait_ms: int = 500) -> None:
        self.stub = channel if hasattr(channel, "Fetch") else broker_pb2_grpc.BrokerStub(channel)
        self.group, self.topic, self.log = group, topic, log
        self.timeout_s = rpc_timeout_ms / 1000.0
        self.backoff_ms = backoff_ms
        self.max_records, self.max_wait_ms = max_records, max_wait_ms
        self.positions: dict[int, int] = {}
        self.high_watermarks: dict[int, int] = {}
        self.fetch_errors = 0
        self.commits_kept = 0
        self._fetch_failures = 0
        self.member = None
        """A nodes.processor.membership.GroupMember when the processor is one member of a
        consumer group: committed offsets are read for its partitions only and every commit
        carries its generation id and member id."""

    async def partition_count(self) -> int:
        """ListOffsets (retried until it answers); also records the high watermarks."""
        resp = await retry_rpc(
            lambda: self.stub.ListOffsets(broker_pb2.ListOffsetsRequest(topic=self.topic),
                                          timeout=self.timeout_s),
            what="ListOffsets", base_ms=self.backoff_ms, log=self.log)
        for po in resp.high_watermarks:
            self.high_watermarks[po.partition] = po.offset
        return resp.partition_count

    async def committed_offsets(self, partitions: int) -> dict[int, int]:
        """The group's committed offsets for partitions ``0..partitions-1`` (absent -> 0).

        FetchCommittedOffset is retried on every error until it answers (scenario 8).
        """
        resp = await retry_rpc(
            lambda: self.stub.FetchCommittedOffset(
                broker_pb2.FetchCommittedOffsetRequest(group=self.group, topic=self.topic),
                timeout=self.timeout_s),
            what="FetchCommittedOffset", base_ms=self.backoff_ms, log=self.log)
        offsets = {p: 0 for p in range(partitions)}
        for po in resp.offsets:
            offsets[po.partition] = po.offset
        if self.member is not None:
            return {p: o for p, o in offsets.items() if p in self.member.partitions}
        return offsets

    async def fetch(self, max_wait_ms: int | None = None) -> list[tuple[int, broker_pb2.Record]]:
        """One long-poll Fetch from ``positions``; returns ``[(partition, record), ...]``.

        Only records at or after the current position are returned (in offset
        order per partition); positions are NOT advanced here (the caller
        advances them as it processes). A Fetch failing with a transient code
        returns [] after a backoff, and is counted in ``fetch_errors``.

        Raises:
            PermanentRpcError: a permanent code (nodes/common/retry.py), e.g.
                DATA_LOSS or INVALID_ARGUMENT: retrying the same Fetch cannot help.
        """
        wait = self.max_wait_ms if max_wait_ms is None else max_wait_ms
        req = broker_pb2.FetchRequest(
            topic=self.topic, max_records=self.max_records, max_wait_ms=wait,
            partitions=[broker_pb2.PartitionOffset(partition=p, offset=o)
                        for p, o in sorted(self.positions.items())])
        try:
            resp = await self.stub.Fetch(req, timeout=self.timeout_s + wait / 1000.0)
        except grpc.aio.AioRpcError as e:
            self.fetch_errors += 1
            if is_permanent(e.code()):
                raise PermanentRpcError("Fetch", e.code(), e.details() or "") from None
            self._fetch_failures += 1
            self.log.info("Fetch failed", extra={"code": e.code().name, "details": e.details()})
            await asyncio.sleep(backoff_s(self.backoff_ms, self._fetch_failures))
            return []
        self._fetch_failures = 0
        out: list[tuple[int, broker_pb2.Record]] = []
        append = out.append
        for pr in resp.partitions:
            part = pr.partition
            self.high_watermarks[part] = pr.high_watermark
            expected = self.positions.get(part, 0)
            for rec in pr.records:
                offset = rec.offset
                if offset < expected:
                    continue  # already consumed
                append((part, rec))
                expected = offset + 1
        return out

    async def commit(self, offsets: dict[int, int], *, retry: bool = True) -> bool:
        """CommitOffset(``offsets``); with ``retry`` until it succeeds, else one attempt.

        Returns True if the broker acknowledged the commit. The broker never
        moves a committed offset backwards: partitions it kept at a higher
        committed offset (``CommitOffsetResponse.kept``: a newer commit of this
        group got there first) are logged and counted in ``commits_kept``; the
        call still counts as acknowledged (those records are covered by the
        newer commit).

        Raises:
            PermanentRpcError: with ``retry``, a permanent code, e.g. OUT_OF_RANGE
                (an offset beyond the broker's log end: the broker lost records
                this consumer already processed); the processor stops with it.
            Fenced: a group member's commit refused as ILLEGAL_GENERATION,
                UNKNOWN_MEMBER_ID or NOT_OWNER (membership.py): nothing committed.
        """
        m = self.member
        req = broker_pb2.CommitOffsetRequest(
            group=self.group, topic=self.topic,
            offsets=[broker_pb2.PartitionOffset(partition=p, offset=o) for p, o in sorted(offsets.items())],
            member_id=m.member_id if m else "", generation_id=m.generation if m else 0)
        call = lambda: self.stub.CommitOffset(req, timeout=self.timeout_s)  # noqa: E731
        fatal = (grpc.StatusCode.FAILED_PRECONDITION,) if m else ()
        try:
            resp = await self._commit_call(call, retry, fatal)
        except grpc.aio.AioRpcError as e:
            if m is not None and is_fencing(e):
                raise m.fenced_by("CommitOffset", e) from None
            raise PermanentRpcError("CommitOffset", e.code(), e.details() or "") from None
        if resp is None:
            return False
        if resp.kept:
            self.commits_kept += len(resp.kept)
            self.log.warning("CommitOffset below the committed offset: the broker kept the newer one",
                             extra={"requested": offsets,
                                    "kept": {po.partition: po.offset for po in resp.kept}})
        return True

    async def _commit_call(self, call, retry: bool, fatal):
        """The CommitOffset call, retried or once; None when a single attempt failed with
        a code not in ``fatal`` (logged)."""
        if retry:
            resp = await retry_rpc(call, what="CommitOffset", base_ms=self.backoff_ms, log=self.log,
                                   fatal=fatal)
        else:
            try:
                resp = await call()
            except grpc.aio.AioRpcError as e:
                if e.code() in fatal:
                    raise
                self.log.info("CommitOffset failed (not retried)",
                              extra={"code": e.code().name, "details": e.details()})
                return None
        return resp
