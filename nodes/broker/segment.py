"""One segment file of a partition log, its position index and its recovery scan.

A segment is ``<partition dir>/<base offset:020d>.log``: record frames (record.py)
with dense offsets starting at the base offset. Its position index
(``array('Q')`` of byte positions, one per record) makes a read by offset an
O(1) seek. The index is persisted as ``<base offset:020d>.index`` (a *recovery
point*: "the first ``valid_bytes`` of this file are verified records at these
positions, and their CRC32 is ``crc``") when the segment is rolled, on graceful
stop and periodically, so a restart only scans the bytes after it (Kafka's
recovery point + offset index).

A restart checks the recovered part against the recovery point: one CRC32 over
the covered bytes (zlib, C speed, no per-record loop) finds a flipped bit
anywhere in it, and a file shorter than its recovery point has lost records that
were verified (and acknowledged) before. Both refuse the start
(:class:`SegmentCorruptError`, naming the file): serving a partition whose data
is unreadable, or silently shorter, would answer DATA_LOSS forever or lose
acknowledged records without a word.
"""

from __future__ import annotations

import bisect
import errno
import os
import struct
import zlib
from array import array
from itertools import accumulate
from pathlib import Path

from nodes.broker import record
from nodes.common.durable import atomic_write_bytes
from nodes.common.storage_fault import with_file

INDEX_MAGIC = b"TBIDX002"
_INDEX_HEAD = struct.Struct(">8sQQQI")  # magic, base offset, valid bytes, record count, CRC32 of them
_RESYNC_LOOKAHEAD = 16
_RESYNC_CANDIDATES = 200_000  # bound the search in a long run of zero bytes


class SegmentCorruptError(Exception):
    """Corruption that recovery must not repair: a bad frame followed by valid frames,
    or a bad frame in a non-last segment. Names the file and the byte offset."""

    def __init__(self, path: Path, position: int, reason: str) -> None:
        super().__init__(f"corrupt log segment {path} at byte {position}: {reason}")
        self.path = path
        self.position = position


def segment_path(directory: Path, base_offset: int) -> Path:
    return directory / f"{base_offset:020d}.log"


def index_path(directory: Path, base_offset: int) -> Path:
    return directory / f"{base_offset:020d}.index"


class Segment:
    """An open segment: append-only file descriptor, size in bytes, position index.

    Args:
        path: the ``.log`` file (created if missing).
        base_offset: offset of its first record.
    """

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = Path(path)
        self.base_offset = base_offset
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self.fd).st_size  # logical size, including write-back bytes
        self.written = self.size  # bytes handed to the OS with write()
        self.crc = 0  # CRC32 of the first ``written`` bytes of the file (set by recover())
        self.positions = array("Q")
        self.write_back = False  # True: appends stay in memory until write_out() (--no-fsync)
        self._pending = bytearray()

    @property
    def next_offset(self) -> int:
        return self.base_offset + len(self.positions)

    @property
    def index_file(self) -> Path:
        return index_path(self.path.parent, self.base_offset)

    # -- recovery -----------------------------------------------------------------------
    def recover(self, *, last: bool, use_index: bool = True) -> int:
        """Rebuild the position index; return the number of bytes dropped from a torn tail.

        Loads the persisted index (if valid and ``use_index``) and verifies
        every frame after it. In the last segment (``last=True``) an invalid
        tail with no valid frame after it is truncated; otherwise, or when a
        valid frame follows the bad one, it is an error.

        Raises:
            SegmentCorruptError: middle corruption, any corruption in a non-last segment,
                a file shorter than its recovery point, or covered bytes failing its CRC.
        """
        start = self._load_index() if use_index else 0
        if start == 0:
            self.positions = array("Q")
            self.crc = 0
        with open(self.path, "rb") as f:
            f.seek(start)
            buf = f.read()
        pos, end = 0, len(buf)
        expected = self.next_offset
        positions = self.positions
        unpack, crc32, mv = record.HEADER.unpack_from, zlib.crc32, memoryview(buf)
        lo, hi, hb = record.MIN_FRAME_LENGTH, record.MAX_FRAME_LENGTH, record.HEADER_BYTES
        while pos < end:
            if pos + hb <= end:  # inlined record.frame_at + offset check (the hot loop of a restart)
                length, crc, off, _, _, _, _, key_len = unpack(buf, pos)
                stop = pos + 4 + length
                if (lo <= length <= hi and stop <= end and off == expected and hb + key_len <= 4 + length
                        and crc32(mv[pos + 8:stop]) == crc):
                    positions.append(start + pos)
                    pos = stop
                    expected += 1
                    continue
            where = start + pos
            if not last:
                raise SegmentCorruptError(self.path, where, "invalid frame in a non-last segment")
            follower = find_valid_frame(buf, pos, expected)
            if follower is not None:
                raise SegmentCorruptError(
                    self.path, where, f"invalid frame for offset {expected} followed by a valid "
                    f"frame at byte {start + follower}; refusing to drop later records")
            dropped = end - pos
            os.ftruncate(self.fd, where)
            os.fsync(self.fd)
            self.size = self.written = where
            self.crc = zlib.crc32(mv[:pos], self.crc)
            return dropped
        self.size = self.written = start + end
        self.crc = zlib.crc32(mv, self.crc)
        return 0

    def _load_index(self) -> int:
        """Load a persisted index; return the verified byte count it covers (0: none usable).

        Raises:
            SegmentCorruptError: the file is shorter than the index says was verified, or
                the covered bytes fail the index's CRC32 (names the first bad record).
        """
        try:
            data = self.index_file.read_bytes()
        except FileNotFoundError:
            return 0
        if len(data) < _INDEX_HEAD.size + 4 or zlib.crc32(data[:-4]) != struct.unpack(">I", data[-4:])[0]:
            return 0
        magic, base, valid, count, crc = _INDEX_HEAD.unpack_from(data, 0)
        body = data[_INDEX_HEAD.size:-4]
        if magic != INDEX_MAGIC or base != self.base_offset or len(body) != 8 * count:
            return 0
        positions = array("Q")
        positions.frombytes(body)
        if positions.itemsize != 8 or (count and positions[-1] >= valid):
            return 0
        if valid > self.size:
            raise SegmentCorruptError(self.path, self.size, (
                f"the file is {self.size} bytes but its recovery point {self.index_file.name} "
                f"verified {valid} bytes ({count} records from offset {base}): records that were "
                f"written and acknowledged are gone"))
        with open(self.path, "rb") as f:
            covered = f.read(valid)
        if zlib.crc32(covered) != crc:
            where = _first_bad_frame(covered, positions)
            raise SegmentCorruptError(self.path, where, (
                f"bytes covered by the recovery point {self.index_file.name} fail its CRC32 "
                f"(first bad record at byte {where}): the stored data changed after it was written"))
        self.positions = positions
        self.crc = crc
        return valid

    def index_bytes(self) -> bytes:
        """Serialized recovery point covering every record written to the file so far."""
        count = bisect.bisect_left(self.positions, self.written)
        head = _INDEX_HEAD.pack(INDEX_MAGIC, self.base_offset, self.written, count, self.crc)
        data = head + self.positions[:count].tobytes()
        return data + struct.pack(">I", zlib.crc32(data))

    def write_index(self, data: bytes | None = None, *, fsync: bool = True) -> None:
        """Persist the recovery point atomically (``data`` from :meth:`index_bytes`)."""
        atomic_write_bytes(self.index_file, data if data is not None else self.index_bytes(), fsync=fsync)

    # -- append / read ------------------------------------------------------------------
    def append(self, frames: list[bytes]) -> None:
        """Write ``frames`` (consecutive offsets from ``next_offset``) with one write(),
        or keep them in the write-back buffer when ``write_back`` is set.

        Raises:
            OSError: the write failed; the file is truncated back to its old size first.
        """
        data = b"".join(frames)
        old = self.size
        if self.write_back:
            self._pending += data
        else:
            self._write(data)
        if frames:
            self.positions.extend(accumulate(map(len, frames[:-1]), initial=old))
        self.size = old + len(data)

    def write_out(self) -> None:
        """write() the write-back buffer (no fsync). Raises OSError (the buffer is kept)."""
        if self._pending:
            self._write(bytes(self._pending))
            self._pending.clear()

    def _write(self, data: bytes) -> None:
        old = self.written
        try:
            # POSIX may write part of the buffer (a nearly full disk): write the rest, so
            # that the error, if any, comes with its errno (ENOSPC), not as a silent short write.
            view, done = memoryview(data), 0
            while done < len(data):
                n = os.write(self.fd, view[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, f"write of {len(data) - done} bytes wrote nothing", str(self.path))
                done += n
        except OSError as e:
            with_file(e, self.path)  # os.write names no file; the storage error line does
            os.ftruncate(self.fd, old)
            raise
        self.written = old + len(data)
        self.crc = zlib.crc32(data, self.crc)

    def read_range(self, offset: int, max_records: int, upto: int,
                   max_bytes: int | None = None, at_least_one: bool = True) -> tuple[list[record.Record], int]:
        """(records, their frame bytes): records from ``offset`` up to ``upto`` (exclusive), at
        most ``max_records`` and at most ``max_bytes`` of frames (but one record even if
        larger, if ``at_least_one``). A frame is ``HEADER_BYTES + len(key) + len(value)`` bytes.

        Raises:
            record.CorruptRecordError: a frame fails its CRC (never served).
        """
        first = offset - self.base_offset
        last = min(upto, self.next_offset, offset + max_records) - self.base_offset
        if last <= first:
            return [], 0
        start = self.positions[first]
        stop = self.positions[last] if last < len(self.positions) else self.size
        if max_bytes is not None and stop - start > max_bytes:
            last = bisect.bisect_right(self.positions, start + max_bytes, first + 1, last) - 1
            if last == first:
                if not at_least_one:
                    return [], 0
                last = first + 1
            stop = self.positions[last] if last < len(self.positions) else self.size
        if stop <= self.written:
            buf = os.pread(self.fd, stop - start, start)
        else:  # part (or all) of the range is still in the write-back buffer
            buf = os.pread(self.fd, max(self.written - start, 0), start) + \
                bytes(self._pending[max(start - self.written, 0):stop - self.written])
        return _decode_frames(buf, last - first, self.path, start), stop - start

    def fsync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        """write() any write-back bytes (graceful stop), then close the file."""
        if self.fd >= 0:
            self.write_out()
            os.close(self.fd)
            self.fd = -1


def _decode_frames(buf: bytes, count: int, path: Path, start: int) -> list[record.Record]:
    """The ``count`` consecutive frames at the start of ``buf`` (read from byte ``start`` of
    ``path``), each checked as :func:`record.frame_at` checks it (length bounds, CRC of the
    body, key length), in one inlined loop: the broker's Fetch runs it for every record served.

    Raises:
        record.CorruptRecordError: a frame fails a check (never served).
    """
    out: list[record.Record] = []
    append, unpack, crc32, mv = out.append, record.HEADER.unpack_from, zlib.crc32, memoryview(buf)
    lo, hi, hb, end = record.MIN_FRAME_LENGTH, record.MAX_FRAME_LENGTH, record.HEADER_BYTES, len(buf)
    new = record.Record._make
    pos = 0
    for _ in range(count):
        if pos + hb <= end:
            length, crc, offset, ts, pid, epoch, seq, key_len = unpack(buf, pos)
            stop = pos + 4 + length
            if lo <= length <= hi and stop <= end and hb + key_len <= 4 + length \
                    and crc32(mv[pos + 8:stop]) == crc:
                k = pos + hb + key_len
                append(new((offset, ts, pid, epoch, seq, buf[pos + hb:k], buf[k:stop])))
                pos = stop
                continue
        raise record.CorruptRecordError(f"corrupt record in {path} at byte {start + pos}", path, start + pos)
    return out


def _first_bad_frame(buf: bytes, positions: array) -> int:
    """Byte position of the first frame of ``buf`` (at ``positions``) failing its CRC, or the
    length of ``buf`` if every frame checks (then the bytes between frames changed)."""
    for pos in positions:
        if not record.frame_at(buf, pos):
            return pos
    return len(buf)


def find_valid_frame(buf: bytes, pos: int, expected: int) -> int | None:
    """Position of a valid frame after ``pos`` carrying one of the next offsets, else None.

    A torn tail holds no such frame; a bad frame in the middle of the log does.
    Searches for the 8-byte offset field of ``expected``..``expected + 16``.
    """
    body_at = record.LENGTH_BYTES + record.CRC_BYTES
    budget = _RESYNC_CANDIDATES
    for off in range(expected, expected + _RESYNC_LOOKAHEAD + 1):
        needle = struct.pack(">Q", off)
        i = buf.find(needle, pos + 1 + body_at)
        while i != -1 and budget > 0:
            budget -= 1
            cand = i - body_at
            if record.frame_at(buf, cand):
                return cand
            i = buf.find(needle, i + 1)
    return None
