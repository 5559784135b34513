"""The topic log on disk: ``<data-dir>/orders-<p>/`` per partition, plus the offline reader.

``broker-meta.json`` fixes the partition count at first start. The offline
reader (:func:`read_partition`, :func:`partition_count`) reads the segment
files directly, never modifies them, and is what the checker uses to audit the
log while the broker is stopped (or running: it reads only complete frames).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterator

from nodes.broker import record
from nodes.broker.partition_log import DEFAULT_SEGMENT_BYTES, PartitionLog
from nodes.broker.record import CorruptRecordError, Record
from nodes.broker.segment import find_valid_frame
from nodes.common.durable import atomic_write_json, read_json
from nodes.common.modes import TOPIC

META_FILE = "broker-meta.json"

__all__ = ["Record", "CorruptRecordError", "partition_dir", "partition_count", "read_partition", "read_values",
           "fix_partition_count", "TopicLog"]


def partition_dir(data_dir: Path, partition: int) -> Path:
    return Path(data_dir) / f"{TOPIC}-{partition}"


def fix_partition_count(data_dir: Path, partitions: int) -> int:
    """Record the partition count at first start; on later starts require the same value.

    Raises:
        ValueError: the data dir already holds a topic with another partition count.
    """
    meta = read_json(Path(data_dir) / META_FILE)
    if meta is None:
        existing = sorted(Path(data_dir).glob(f"{TOPIC}-*"))
        if existing:
            raise ValueError(f"{data_dir} holds partition directories but no {META_FILE}")
        atomic_write_json(Path(data_dir) / META_FILE, {"topic": TOPIC, "partitions": partitions})
        return partitions
    if int(meta["partitions"]) != partitions:
        raise ValueError(f"topic {TOPIC} in {data_dir} has {meta['partitions']} partitions; "
                         f"--partitions {partitions} differs (the partition count is fixed at first start)")
    return partitions


def partition_count(data_dir: Path) -> int:
    """Partition count of the topic stored in ``data_dir``.

    Raises:
        FileNotFoundError: no broker data there.
    """
    meta = read_json(Path(data_dir) / META_FILE)
    if meta is None:
        raise FileNotFoundError(f"no {META_FILE} in {data_dir}")
    return int(meta["partitions"])


def read_partition(data_dir: Path, partition: int) -> Iterator[Record]:
    """Every complete, CRC-valid record of a partition in offset order (offline, read-only).

    Yields :class:`nodes.broker.record.Record` (offset, key, value, producer_id,
    epoch, sequence, timestamp_ms). A torn tail of the last segment ends the
    iteration (what the broker would truncate on start).

    Raises:
        CorruptRecordError: a bad frame in a non-last segment, a bad frame that
            is followed by more data in the last one (message names file and
            byte offset), or offsets that are not dense.
    """
    for offset, ts, pid, epoch, seq, key, value in _frames(data_dir, partition):
        yield Record(offset, ts, pid, epoch, seq, key, value)


def read_values(data_dir: Path, partition: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, value)`` of every record of a partition: :func:`read_partition` without
    building a Record per record (the checker's fast path over big logs). Same checks, same errors."""
    # _frames' loop without the key slice and the 7-tuple (the audit reads 1M values: -25%)
    files = sorted(partition_dir(data_dir, partition).glob("*.log"))
    expected = None
    unpack, crc32 = record.HEADER.unpack_from, zlib.crc32
    lo, hi, hb = record.MIN_FRAME_LENGTH, record.MAX_FRAME_LENGTH, record.HEADER_BYTES
    for i, path in enumerate(files):
        data = path.read_bytes()
        mv = memoryview(data)
        pos, end = 0, len(data)
        if expected is None:
            expected = int(path.stem)
        while pos < end:
            if pos + hb <= end:
                length, crc, off, _, _, _, _, key_len = unpack(data, pos)
                stop = pos + 4 + length
                if (lo <= length <= hi and stop <= end and off == expected and hb + key_len <= 4 + length
                        and crc32(mv[pos + 8:stop]) == crc):
                    yield off, data[pos + hb + key_len:stop]
                    pos = stop
                    expected += 1
                    continue
            if i == len(files) - 1 and find_valid_frame(data, pos, expected) is None:
                return
            raise CorruptRecordError(f"corrupt log segment {path} at byte {pos}", path, pos)


def _frames(data_dir: Path, partition: int) -> Iterator[tuple[int, int, int, int, int, bytes, bytes]]:
    """(offset, timestamp_ms, producer_id, epoch, sequence, key, value) per valid frame.

    The frame check of :func:`record.frame_at` and the offset check, inlined into
    one loop (the same checks, about 3x faster than a call per frame).
    """
    files = sorted(partition_dir(data_dir, partition).glob("*.log"))
    expected = None
    unpack, crc32 = record.HEADER.unpack_from, zlib.crc32
    lo, hi, hb = record.MIN_FRAME_LENGTH, record.MAX_FRAME_LENGTH, record.HEADER_BYTES
    for i, path in enumerate(files):
        data = path.read_bytes()
        mv = memoryview(data)
        pos, end = 0, len(data)
        if expected is None:
            expected = int(path.stem)
        while pos < end:
            if pos + hb <= end:
                length, crc, off, ts, pid, epoch, seq, key_len = unpack(data, pos)
                stop = pos + 4 + length
                if (lo <= length <= hi and stop <= end and off == expected and hb + key_len <= 4 + length
                        and crc32(mv[pos + 8:stop]) == crc):
                    k0 = pos + hb
                    yield off, ts, pid, epoch, seq, data[k0:k0 + key_len], data[k0 + key_len:stop]
                    pos = stop
                    expected += 1
                    continue
            if i == len(files) - 1 and find_valid_frame(data, pos, expected) is None:
                return
            raise CorruptRecordError(f"corrupt log segment {path} at byte {pos}", path, pos)


class TopicLog:
    """All partitions of the topic, opened for the running broker.

    Args:
        data_dir: the broker's data dir.
        partitions: partition count (already fixed by :func:`fix_partition_count`).
        segment_bytes: segment roll size in bytes.
        fsync: fsync sealed segments and recovery points; False (--no-fsync) also
            turns on the segments' write-back buffer.
    """

    def __init__(self, data_dir: Path, partitions: int, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 fsync: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.fsync = fsync
        self.partitions = [PartitionLog(partition_dir(data_dir, p), p, segment_bytes=segment_bytes,
                                        fsync_on_roll=fsync, write_back=not fsync)
                           for p in range(partitions)]

    def open(self, *, use_index: bool = True) -> int:
        """Recover every partition; return the total bytes dropped from torn tails.

        Raises:
            nodes.broker.segment.SegmentCorruptError: unrepairable corruption.
        """
        return sum(p.open(use_index=use_index) for p in self.partitions)

    def end_offsets(self) -> dict[int, int]:
        return {p.partition: p.end_offset for p in self.partitions}

    def close(self) -> None:
        for p in self.partitions:
            p.close()
