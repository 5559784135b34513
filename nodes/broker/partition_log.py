"""The log of one partition: an ordered list of segments with dense offsets.

Appends go to the last (active) segment, rolled when it reaches
``segment_bytes``. Reads find the segment by binary search on base offsets,
then seek with its position index. Durability is the caller's business
(:meth:`sync` is what the group-commit flusher calls), as in Kafka's
``Log`` / ``LogSegment`` split.
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
import time
from pathlib import Path
from typing import Iterator

from nodes.broker import record
from nodes.broker.segment import Segment, SegmentCorruptError, segment_path

log = logging.getLogger("broker.log")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
_PRODUCER_FIELDS = struct.Struct(">8xQ8xqii")  # offset, producer_id, epoch, sequence


class PartitionLog:
    """Segments of ``<data-dir>/orders-<p>/``.

    Args:
        directory: the partition directory (created if missing).
        partition: partition number (for messages).
        segment_bytes: roll the active segment once it holds at least this many bytes.
        fsync_on_roll: fsync a segment when it is sealed (off only with --no-fsync).
        write_back: keep appends in a user-space buffer until :meth:`write_out` (--no-fsync:
            ACKed records a kill -9 loses, as a power loss loses unflushed page cache).
    """

    def __init__(self, directory: Path, partition: int, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 fsync_on_roll: bool = True, write_back: bool = False) -> None:
        self.directory = Path(directory)
        self.partition = partition
        self.segment_bytes = segment_bytes
        self.fsync_on_roll = fsync_on_roll
        self.write_back = write_back
        self.segments: list[Segment] = []
        self._bases: list[int] = []

    # -- lifecycle ----------------------------------------------------------------------
    def open(self, *, use_index: bool = True) -> int:
        """Open and recover every segment; return the bytes dropped from a torn tail.

        Raises:
            SegmentCorruptError: corruption that must not be repaired, or a gap
                between segments (names the file and byte offset).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        files = sorted(self.directory.glob("*.log"))
        dropped = 0
        for i, f in enumerate(files):
            try:
                base = int(f.stem)
            except ValueError:
                continue
            seg = Segment(f, base)
            if self.segments and base != self.segments[-1].next_offset:
                prev = self.segments[-1]
                seg.close()
                raise SegmentCorruptError(prev.path, prev.size,
                                          f"ends at offset {prev.next_offset} but the next segment "
                                          f"{f.name} starts at offset {base}")
            self.segments.append(seg)
            dropped += seg.recover(last=(i == len(files) - 1), use_index=use_index)
        if not self.segments:
            self.segments.append(Segment(segment_path(self.directory, 0), 0))
        self._bases = [s.base_offset for s in self.segments]
        self.active.write_back = self.write_back
        if dropped:
            log.warning("partition %d: truncated a torn or corrupt tail of %s: %d bytes dropped",
                        self.partition, self.active.path.name, dropped,
                        extra={"partition": self.partition, "bytes_dropped": dropped})
        return dropped

    def close(self) -> None:
        for s in self.segments:
            s.close()

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def end_offset(self) -> int:
        """The next offset to be assigned (= number of records, offsets start at 0)."""
        return self.active.next_offset

    # -- append -------------------------------------------------------------------------
    def append(self, entries: list[tuple[bytes, bytes]], *, producer_id: int = -1, epoch: int = -1,
               base_sequence: int = -1, timestamp_ms: int | None = None) -> int:
        """Append records ``(key, value)`` with one write(); return the base offset.

        Record ``i`` gets sequence ``base_sequence + i`` (or -1 when ``base_sequence`` is -1).

        Raises:
            OSError: the write failed; nothing was appended.
        """
        if self.active.size >= self.segment_bytes and self.active.positions:
            self.roll()
        ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        base = self.end_offset
        self.active.append(record.encode_many(base, ts, producer_id, epoch, base_sequence, entries))
        return base

    def roll(self) -> None:
        """Seal the active segment (fsync, persist its index) and start a new one."""
        old = self.active
        old.write_out()
        if self.fsync_on_roll:
            old.fsync()
        old.write_index(fsync=self.fsync_on_roll)
        seg = Segment(segment_path(self.directory, old.next_offset), old.next_offset)
        seg.write_back = self.write_back
        self.segments.append(seg)
        self._bases.append(seg.base_offset)
        log.info("partition %d: rolled to segment %s", self.partition, seg.path.name)

    def write_out(self) -> None:
        """write() the active segment's write-back buffer (sealed ones were written at roll)."""
        self.active.write_out()

    def sync_targets(self) -> list[Segment]:
        """Segments whose data may not be fsynced yet (the active one; sealed ones were at roll)."""
        return [self.active]

    def checkpoint(self, *, fsync: bool = True) -> None:
        """Persist the recovery point of the active segment (its index up to its current size)."""
        self.active.write_index(fsync=fsync)

    # -- read ---------------------------------------------------------------------------
    def read(self, offset: int, max_records: int, upto: int,
             max_bytes: int | None = None) -> list[record.Record]:
        """Records at offsets ``offset`` .. ``min(upto, offset + max_records)`` (exclusive),
        stopping once ``max_bytes`` of frames are read (at least one record).

        Raises:
            record.CorruptRecordError: a frame failed its CRC check.
        """
        return self.read_sized(offset, max_records, upto, max_bytes)[0]

    def read_sized(self, offset: int, max_records: int, upto: int,
                   max_bytes: int | None = None) -> tuple[list[record.Record], int]:
        """:meth:`read`, and the bytes of the frames read (``HEADER_BYTES + len(key) +
        len(value)`` per record). Raises: record.CorruptRecordError."""
        out: list[record.Record] = []
        size = 0
        upto = min(upto, self.end_offset)
        while offset < upto and len(out) < max_records:
            i = bisect.bisect_right(self._bases, offset) - 1
            got, n = self.segments[i].read_range(offset, max_records - len(out), upto, max_bytes,
                                                 at_least_one=not out)
            if not got:
                break
            out.extend(got)
            size += n
            offset += len(got)
            if max_bytes is not None:
                max_bytes -= n
                if max_bytes <= 0:
                    break
        return out, size

    def producer_runs(self, start: int = 0) -> Iterator[tuple[int, int, int, int, int]]:
        """Runs ``(producer_id, epoch, first_sequence, first_offset, count)`` of idempotent records
        from offset ``start`` (consecutive sequences at consecutive offsets coalesced).

        Reads only the record headers: this is how producer state is rebuilt after a crash.
        """
        unpack = _PRODUCER_FIELDS.unpack_from
        for seg in self.segments:
            first = max(start - seg.base_offset, 0)
            if first >= len(seg.positions):
                continue
            base_pos = seg.positions[first]
            buf = os.pread(seg.fd, seg.size - base_pos, base_pos)
            run: list[int] | None = None
            for i in range(first, len(seg.positions)):
                off, pid, epoch, seq = unpack(buf, seg.positions[i] - base_pos)
                if pid < 0 or seq < 0:
                    continue
                if run and run[0] == pid and run[1] == epoch and run[2] + run[4] == seq and run[3] + run[4] == off:
                    run[4] += 1
                    continue
                if run:
                    yield tuple(run)  # type: ignore[misc]
                run = [pid, epoch, seq, off, 1]
            if run:
                yield tuple(run)  # type: ignore[misc]

    def iter_records(self, start: int = 0, batch: int = 4096) -> Iterator[record.Record]:
        """Every record from ``start`` to the appended end, in offset order."""
        end = self.end_offset
        while start < end:
            got = self.read(start, batch, end)
            if not got:
                return
            yield from got
            start += len(got)
