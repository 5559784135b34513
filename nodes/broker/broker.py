"""The broker's logic, without gRPC: produce with dedupe, long-poll fetch, producer ids, offsets.

Produce calls write their records on the event loop and mark the log dirty;
the group-commit flusher (group_commit.py) fsyncs once per batch of appends
and advances each partition's *durable end*. In at-least-once / exactly-once a Produce is answered only
once the durable end covers its records, and Fetch serves only up to it (the
high watermark). In at-most-once (or with the ``--no-fsync`` ablation) the
high watermark is the appended end and the answer does not wait.

The dedupe check and the append of one batch run on the event loop with no
``await`` between them: that is the per-partition critical section (a single
appender), so a retry racing its own original is always answered as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from nodes.common import storage_fault
from nodes.broker.errors import BrokerError, CorruptLog, InvalidRequest, OffsetOutOfRange, RequestTooLarge, StorageError
from nodes.broker.coordinator import GroupCoordinator
from nodes.broker.group_commit import GroupCommit
from nodes.broker.log import TopicLog
from nodes.broker.offsets import ConsumerOffsets
from nodes.broker.partition_log import DEFAULT_SEGMENT_BYTES
from nodes.broker.producer_state import ProducerStateTable
from nodes.broker.segment import SegmentCorruptError
from nodes.broker.record import MAX_RECORD_BYTES, CorruptRecordError, Record
from nodes.common.durable import atomic_write_json, read_json
from nodes.common.failpoints import FAILPOINTS, FailpointError
from nodes.broker.limits import check_group, check_partition_list
from nodes.common.limits import MAX_GROUP_BYTES, MAX_FETCH_RECORDS, MAX_WAIT_MS, short, too_long
from nodes.common.modes import AT_MOST_ONCE, TOPIC

PRODUCERS_FILE = "producers.json"
SNAPSHOT_FILE = "producer-snapshot.json"
MAX_BATCH_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_RECORDS = 500
MAX_BATCH_RECORDS = 100_000
MAX_FETCH_BYTES = 32 * 1024 * 1024
"""Bytes of records per Fetch response (stays under the 64 MiB gRPC message limit)."""
INT32_MAX = 2**31 - 1

log = logging.getLogger("broker")


async def _failpoint(name: str, partition: int) -> None:
    """A failpoint of the produce, offset or fetch path; ``error`` becomes a StorageError
    (UNAVAILABLE). ``partition`` -1: not about one partition."""
    try:
        await FAILPOINTS.hit(name)
    except FailpointError as e:
        raise StorageError(f"partition {partition}: {e}" if partition >= 0 else str(e)) from None


class Broker:
    """One topic (``orders``) with ``partitions`` partitions in ``data_dir``.

    Args:
        mode: delivery mode (nodes.common.modes); at-most-once does not wait for fsync.
        segment_bytes: segment roll size (bytes).
        dedupe: False = ablation --no-dedupe (idempotent batches appended without dedupe).
        fsync: False = ablation --no-fsync: ACK at once, never fsync; records reach the
            file by a delayed write() (``writeback_ms``), so a kill -9 loses ACKed records.
        checkpoint_interval_s: how often the recovery point (indexes + producer
            snapshot) is persisted while running (seconds), so a crash restart scans little.
        monotonic_commits: False = ablation --no-monotonic-commits: an offset commit
            below the committed offset overwrites it (offsets.py).
        generation_fencing: False = ablation --no-generation-fencing: offset commits are
            accepted from any member and generation of a consumer group (group.py).
    """

    def __init__(self, data_dir: Path, partitions: int, mode: str, *,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, dedupe: bool = True, fsync: bool = True,
                 checkpoint_interval_s: float = 10.0, writeback_ms: int = 1000,
                 monotonic_commits: bool = True, generation_fencing: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.mode = mode
        self.dedupe = dedupe
        self.fsync = fsync
        self.ack_after_fsync = fsync and mode != AT_MOST_ONCE
        self.checkpoint_interval_s = checkpoint_interval_s
        self.topic = TopicLog(self.data_dir, partitions, segment_bytes=segment_bytes, fsync=fsync)
        self.producers = ProducerStateTable()
        # Committed offsets stay crash-safe with --no-fsync: the ablation is about the log.
        self.offsets = ConsumerOffsets(self.data_dir, fsync=True, monotonic=monotonic_commits)
        self.groups = GroupCoordinator(partitions, fencing=generation_fencing, data_dir=self.data_dir)
        self.commit = GroupCommit(self.topic, fsync=fsync, checkpoint_interval_s=checkpoint_interval_s,
                                  snapshot=self.producers_snapshot, snapshot_path=self.data_dir / SNAPSHOT_FILE,
                                  writeback_s=writeback_ms / 1000)
        self.durable = self.commit.durable  # first offset not yet fsynced, per partition
        self.recovered = False  # close() persists a recovery point only after a complete recovery
        self.appended_records = 0
        self.duplicate_batches = 0
        self.recovered_bytes_dropped = 0
        self._init_lock = asyncio.Lock()

    def producers_snapshot(self, log_ends: dict[int, int]) -> dict:
        return self.producers.snapshot(log_ends)

    @property
    def partition_count(self) -> int:
        return len(self.topic.partitions)

    # -- lifecycle ----------------------------------------------------------------------
    def recover(self) -> None:
        """Open the log (truncating a torn tail) and rebuild producer state (blocking).

        Raises:
            nodes.broker.segment.SegmentCorruptError: unrepairable corruption.
        """
        self.recovered_bytes_dropped = self.topic.open()
        ends = self.topic.end_offsets()
        if self.fsync:
            self._check_committed_offsets(ends)
        starts = {p: 0 for p in ends}
        try:
            snap = read_json(self.data_dir / SNAPSHOT_FILE)
        except ValueError as e:  # a recovery point is a cache: rebuild it from the log
            log.warning("producer snapshot unusable (%s); rebuilding producer state from offset 0", e)
            snap = None
        if snap is not None:
            table = ProducerStateTable()
            covered = table.load_snapshot(snap)
            if all(0 <= covered.get(p, 0) <= ends[p] for p in ends):
                self.producers, starts = table, {p: covered.get(p, 0) for p in ends}
            else:
                log.warning("producer snapshot is ahead of the log; rebuilding producer state from offset 0")
        self.producers.load_epochs(read_json(self.data_dir / PRODUCERS_FILE))
        scanned = 0
        for plog in self.topic.partitions:
            for pid, epoch, seq, off, count in plog.producer_runs(starts[plog.partition]):
                self.producers.observe(plog.partition, off, pid, epoch, seq, count)
                scanned += count
            if self.fsync:
                plog.active.fsync()
            self.durable[plog.partition] = plog.end_offset
        self.recovered = True
        log.info("recovered", extra={"end_offsets": ends, "records_scanned_for_producer_state": scanned,
                                     "bytes_dropped": self.recovered_bytes_dropped,
                                     "producers": len(self.producers)})

    def _check_committed_offsets(self, ends: dict[int, int]) -> None:
        """A consumer only reads fsynced records (the high watermark), so a committed offset
        beyond the recovered log end means the log lost records it had served: refuse.
        (Not with --no-fsync: there the ablation's loss is meant to reach the audit.)

        Raises:
            SegmentCorruptError: names the partition's last segment and the offsets file.
        """
        for group, committed in self.offsets.groups(TOPIC).items():
            for p, off in sorted(committed.items()):
                if p in ends and off > ends[p]:
                    plog = self.topic.partitions[p]
                    raise SegmentCorruptError(plog.active.path, plog.active.size, (
                        f"partition {p} ends at offset {ends[p]} but consumer group {group!r} "
                        f"committed offset {off} ({self.offsets.path.name}): records that were "
                        f"served are gone from the log"))

    def start(self) -> None:
        self.commit.start()

    async def close(self) -> None:
        """Graceful stop: stop the flusher, fsync everything, persist the recovery point."""
        await self.commit.stop()
        if self.commit.failed is None and self.recovered:
            for plog in self.topic.partitions:
                plog.write_out()
            if self.fsync:
                for plog in self.topic.partitions:
                    plog.active.fsync()
            self.commit.checkpoint_now()
        self.topic.close()

    async def wait_fatal(self) -> None:
        """Returns only by raising the storage error that makes this broker stop (exit 3, nodes/common/storage_fault.py)."""
        await self.commit.fatal.wait()
        raise RuntimeError(f"storage failure, broker stops: {self.commit.failed}") from self.commit.failed

    # -- high watermark and waiting ---------------------------------------------------
    def high_watermark(self, partition: int) -> int:
        """First offset not yet readable: the durable end, or the appended end without fsync waits."""
        if self.ack_after_fsync:
            return self.durable[partition]
        return self.topic.partitions[partition].end_offset

    # -- requests -----------------------------------------------------------------------
    def _check_partition(self, topic: str, partition: int) -> None:
        if topic != TOPIC:
            raise InvalidRequest(f"unknown topic {short(topic)} (this broker serves {TOPIC!r})")
        if not 0 <= partition < self.partition_count:
            raise InvalidRequest(f"unknown partition {partition} of topic {TOPIC} "
                                 f"(partitions 0..{self.partition_count - 1})")

    async def init_producer(self, producer_id: int) -> tuple[int, int, dict[int, int]]:
        """Kafka's InitProducerId; the new epoch is persisted (producers.json) before returning.

        Raises:
            UnknownProducer: ``producer_id`` >= 0 was never allocated.
            StorageError: producers.json could not be written (nothing changed).
        """
        async with self._init_lock:
            saved = (self.producers.next_producer_id, dict(self.producers.epochs))
            result = self.producers.init_producer(producer_id)
            try:
                await asyncio.to_thread(atomic_write_json, self.data_dir / PRODUCERS_FILE,
                                        self.producers.epochs_json(), fsync=True)  # even with --no-fsync
            except OSError as e:
                self.producers.next_producer_id, self.producers.epochs = saved
                raise StorageError(f"cannot persist producer epoch: {e}") from None
            log.info("init producer", extra={"producer_id": result[0], "epoch": result[1]})
            return result

    async def produce(self, topic: str, partition: int, producer_id: int, epoch: int, base_sequence: int,
                      entries: list[tuple[bytes, bytes]]) -> tuple[int, bool, int]:
        """Append one batch ``[(key, value), ...]``; return (base offset, duplicate, log end offset).

        Raises:
            InvalidRequest, RequestTooLarge: bad input (nothing appended).
            UnknownProducer, StaleEpoch, SequenceGap, SequenceOverlap: idempotence checks.
            StorageError: the write or fsync failed (nothing acknowledged).
        """
        self._check_partition(topic, partition)
        if not entries:
            raise InvalidRequest("empty batch: a Produce request needs at least one record")
        if len(entries) > MAX_BATCH_RECORDS:
            raise RequestTooLarge(f"{len(entries)} records in one batch; at most {MAX_BATCH_RECORDS}")
        total = 0
        for i, (k, v) in enumerate(entries):
            size = len(k) + len(v)
            if size > MAX_RECORD_BYTES:
                raise RequestTooLarge(f"record {i} is {size} bytes; the limit is {MAX_RECORD_BYTES} bytes")
            total += size
        if total > MAX_BATCH_BYTES:
            raise RequestTooLarge(f"batch is {total} bytes; the limit is {MAX_BATCH_BYTES} bytes")
        idempotent = producer_id >= 0
        if idempotent and (base_sequence < 0 or base_sequence + len(entries) - 1 > INT32_MAX):
            raise InvalidRequest(f"base sequence {base_sequence} out of range for {len(entries)} records")
        if self.commit.failed is not None:
            raise StorageError(f"storage failure: {self.commit.failed}")
        plog = self.topic.partitions[partition]
        if FAILPOINTS.armed:  # every mode, idempotent or not: before the critical section
            await _failpoint("broker.before-append", partition)
        if self.commit.failed is not None:
            raise StorageError(f"storage failure: {self.commit.failed}")
        # Critical section: no await from the dedupe check to the state update.
        dup = None
        if idempotent:
            dup = self.producers.check(producer_id, epoch, partition, base_sequence, len(entries),
                                       dedupe=self.dedupe)
            if dup is None and FAILPOINTS.armed:  # sync: inside the critical section
                try:
                    FAILPOINTS.hit_sync("broker.after-dedupe-record-before-append")
                except FailpointError as e:
                    raise StorageError(f"append to partition {partition} failed: {e}") from None
        if dup is not None:
            self.duplicate_batches += 1
            base, duplicate, target = dup.base_offset, True, dup.last_offset + 1
            log.info("duplicate batch", extra={"producer_id": producer_id, "partition": partition,
                                               "base_sequence": base_sequence, "base_offset": base})
        else:
            try:
                base = plog.append(entries, producer_id=producer_id if idempotent else -1,
                                   epoch=epoch if idempotent else -1,
                                   base_sequence=base_sequence if idempotent else -1)
            except OSError as e:
                storage_fault.failed(e)  # ENOSPC / EIO: fail-stop, exit 3 (nodes/common/storage_fault.py)
                raise StorageError(f"append to partition {partition} failed: {e}") from None
            if idempotent:
                self.producers.on_append(producer_id, epoch, partition, base_sequence, base, len(entries))
            self.appended_records += len(entries)
            duplicate, target = False, base + len(entries)
            self.commit.mark_dirty()
            if not self.ack_after_fsync:
                self.commit.wake()
            if FAILPOINTS.armed:
                await _failpoint("broker.after-append-before-fsync", partition)
        if self.ack_after_fsync:
            await self.commit.wait_until(lambda: self.durable[partition] >= target, None)
            if FAILPOINTS.armed and not duplicate:
                await _failpoint("broker.after-fsync-before-ack", partition)
        return base, duplicate, plog.end_offset

    async def fetch(self, topic: str, positions: list[tuple[int, int]], max_records: int,
                    max_wait_ms: int) -> list[tuple[int, list[Record], int]]:
        """Long-poll read: [(partition, records, high watermark)] per requested partition.

        Returns as soon as one partition has records at/after its offset, else
        after ``max_wait_ms`` (capped at 5,000 ms) with none. ``max_records`` per
        partition (0: 500, capped at 10,000); at most 32 MiB of records in all. An offset at or
        beyond the high watermark yields no records (not an error).

        Raises:
            InvalidRequest: unknown topic/partition, negative offset, no partitions, a
                partition listed twice, negative max_records or max_wait_ms.
            RequestTooLarge: more than MAX_FETCH_PARTITIONS partitions.
            CorruptLog: a stored record failed its CRC.
        """
        if not positions:
            raise InvalidRequest("fetch needs at least one partition")
        check_partition_list("fetch", [p for p, _ in positions])
        if max_records < 0 or max_wait_ms < 0:
            raise InvalidRequest(f"max_records ({max_records}) and max_wait_ms ({max_wait_ms}) "
                                 "must be >= 0")
        for p, off in positions:
            self._check_partition(topic, p)
            if off < 0:
                raise InvalidRequest(f"negative offset {off} for partition {p}")
        max_records = DEFAULT_MAX_RECORDS if max_records <= 0 else min(max_records, MAX_FETCH_RECORDS)
        wait_s = min(max(max_wait_ms, 0), MAX_WAIT_MS) / 1000
        await self.commit.wait_until(lambda: any(off < self.high_watermark(p) for p, off in positions), wait_s)
        out, budget = [], MAX_FETCH_BYTES
        for p, off in positions:
            hw = self.high_watermark(p)
            try:
                recs, size = self.topic.partitions[p].read_sized(off, max_records, hw, budget) \
                    if off < hw and budget > 0 else ([], 0)
                budget -= size
            except CorruptRecordError as e:
                raise CorruptLog(str(e)) from None
            out.append((p, recs, hw))
        if FAILPOINTS.armed and any(recs for _, recs, _ in out):
            await _failpoint("broker.before-fetch-reply", -1)
        return out

    async def commit_offsets(self, group: str, topic: str, offsets: list[tuple[int, int]], *,
                             member_id: str = "", generation: int = 0) -> dict[int, int]:
        """Persist committed offsets (fsync) before returning.

        Committed offsets never move backwards (offsets.py): a partition whose
        requested offset is below its committed one keeps the committed one.

        Returns:
            {partition: committed offset kept} for those partitions ({} = all committed).

        Raises:
            InvalidRequest: empty or too long group, unknown topic/partition, negative
                offset, a partition listed twice.
            RequestTooLarge: more than MAX_FETCH_PARTITIONS offsets.
            OffsetOutOfRange: an offset beyond the partition's log end and beyond its
                committed offset (OUT_OF_RANGE; a permanent error: checked before
                anything is stored, so a refused commit never sticks in the monotonic
                committed offsets).
            StorageError: the offsets file could not be written.
            GroupError: a consumer-group member's commit refused (FAILED_PRECONDITION:
                UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, NOT_OWNER; group.py).
        """
        check_group(group)
        check_partition_list("offset commit", [p for p, _ in offsets])
        try:
            self.groups.check_commit(group, member_id, generation, [p for p, _ in offsets])
        except BrokerError as e:
            log.warning("offset commit refused", extra={"group": group, "member_id": member_id,
                                                        "generation": generation, "error": str(e)})
            raise
        committed = self.offsets.fetch(group, topic) if offsets else {}
        for p, off in offsets:
            self._check_partition(topic, p)
            if off < 0:
                raise InvalidRequest(f"negative offset {off} for partition {p}")
            end = self.topic.partitions[p].end_offset
            # An offset already committed is no new claim, even past a log end that shrank
            # (a --no-fsync broker lost its tail): the consumer re-commits where it stands.
            if off > end and off > committed.get(p, -1):
                raise OffsetOutOfRange(
                    f"offset {off} for partition {p} is beyond the log end offset {end}: refused "
                    "(nothing committed); a consumer that read past the log end means the broker "
                    "lost records it had served")
        if FAILPOINTS.armed:
            await _failpoint("broker.before-offset-commit", -1)
        try:
            kept = await self.offsets.commit(group, topic, dict(offsets))
        except OSError as e:
            storage_fault.failed(e)
            raise StorageError(f"cannot persist committed offsets: {e}") from None
        if FAILPOINTS.armed:
            await _failpoint("broker.after-offset-commit-before-reply", -1)
        if kept:
            log.info("offset commit below the committed offset: kept the committed one",
                     extra={"group": group, "requested": {p: o for p, o in offsets if p in kept},
                            "kept": kept})
        return kept

    def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        """Raises InvalidRequest: unknown topic, too long group (an empty one has no offsets)."""
        if too_long(group, MAX_GROUP_BYTES):
            raise InvalidRequest(f"consumer group longer than {MAX_GROUP_BYTES} bytes: {short(group)}")
        if topic != TOPIC:
            raise InvalidRequest(f"unknown topic {short(topic)} (this broker serves {TOPIC!r})")
        return self.offsets.fetch(group, topic)

    def list_offsets(self, topic: str) -> dict[int, int]:
        if topic != TOPIC:
            raise InvalidRequest(f"unknown topic {short(topic)} (this broker serves {TOPIC!r})")
        return {p: self.high_watermark(p) for p in range(self.partition_count)}

    def status(self) -> dict:
        return {"partitions": self.partition_count,
                "high_watermarks": {str(p): self.high_watermark(p) for p in range(self.partition_count)},
                "log_end_offsets": {str(p): e for p, e in self.topic.end_offsets().items()},
                "appended_records": self.appended_records, "duplicate_batches": self.duplicate_batches,
                "fsyncs": self.commit.fsyncs, "producers": len(self.producers),
                "recovered_bytes_dropped": self.recovered_bytes_dropped,
                "dedupe": self.dedupe, "fsync": self.fsync,
                "monotonic_commits": self.offsets.monotonic, "groups": self.groups.status(),
                "generation_fencing": self.groups.fencing, "offset_commits_kept": self.offsets.kept, "failed": str(self.commit.failed) if self.commit.failed else None}
