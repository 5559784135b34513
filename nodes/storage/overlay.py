"""The unsynced data of one file: what a page cache holds between write() and fsync().

A :class:`FileOverlay` keeps the bytes written to a file since its last fsync
as sorted, non-overlapping extents, plus the file's logical size and the
lowest size it was truncated to (``cut``). Reads merge the backing file (what
is on "disk") with the extents; :meth:`sync_to` writes them to the backing
file and fsyncs it; :meth:`drop` forgets them (power loss, or a failed fsync
whose dirty pages the kernel marked clean). This is the model of Jepsen's
LazyFS (dsrhaslab/lazyfs), which keeps unsynced writes in its own cache.

Pure Python, no FUSE: tests drive it on a plain file.
"""

from __future__ import annotations

import bisect
import os


class FileOverlay:
    """Unsynced writes and truncates of one file (all offsets and sizes in bytes).

    Args:
        backing_size: the backing file's size when the overlay was created.
    """

    def __init__(self, backing_size: int) -> None:
        self.size = backing_size          # logical size, as readers see it
        self.cut: int | None = None       # backing bytes at >= cut are gone (a truncate)
        self._starts: list[int] = []      # extent start offsets, sorted
        self._data: list[bytearray] = []  # extent bytes, parallel to _starts
        self._size_changed = False
        self.path = ""                    # last known mount-relative path (set by the fs)

    @property
    def dirty(self) -> bool:
        """Anything (bytes, a truncate, a size change) not yet synced."""
        return bool(self._starts) or self.cut is not None or self._size_changed

    @property
    def pending_bytes(self) -> int:
        """Bytes written and not yet synced."""
        return sum(len(d) for d in self._data)

    def write(self, offset: int, data: bytes) -> int:
        """Record ``data`` at ``offset``; return ``len(data)``."""
        if not data:
            return 0
        end = offset + len(data)
        new = bytearray(data)
        # Merge with every extent that overlaps or touches [offset, end).
        i = bisect.bisect_left(self._starts, offset)
        if i > 0 and self._starts[i - 1] + len(self._data[i - 1]) >= offset:
            i -= 1
        j = i
        start = offset
        while j < len(self._starts) and self._starts[j] <= end:
            s, d = self._starts[j], self._data[j]
            if s < start:
                new = d[: start - s] + new
                start = s
            if s + len(d) > end:
                new = new + d[end - s:]
            j += 1
        self._starts[i:j] = [start]
        self._data[i:j] = [new]
        if end > self.size:
            self.size = end
            self._size_changed = True
        return len(data)

    def truncate(self, length: int) -> None:
        """Set the logical size to ``length`` (bytes beyond it are gone, a later
        extension reads zeros)."""
        if length < self.size:
            self.cut = length if self.cut is None else min(self.cut, length)
            i = bisect.bisect_left(self._starts, length)
            if i > 0 and self._starts[i - 1] + len(self._data[i - 1]) > length:
                s = self._starts[i - 1]
                del self._data[i - 1][length - s:]
            del self._starts[i:]
            del self._data[i:]
        self.size = length
        self._size_changed = True

    def read(self, fd: int, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of the logical file (short at its end);
        ``fd`` is the backing file, read with pread."""
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        limit = end if self.cut is None else min(end, self.cut)
        base = os.pread(fd, limit - offset, offset) if limit > offset else b""
        buf = bytearray(base) + bytes(end - offset - len(base))
        i = bisect.bisect_right(self._starts, offset) - 1
        i = max(i, 0)
        while i < len(self._starts) and self._starts[i] < end:
            s, d = self._starts[i], self._data[i]
            lo, hi = max(s, offset), min(s + len(d), end)
            if lo < hi:
                buf[lo - offset: hi - offset] = d[lo - s: hi - s]
            i += 1
        return bytes(buf)

    def sync_to(self, fd: int) -> int:
        """Write the overlay into the backing file ``fd``, fsync it, and clear
        the overlay; return the bytes written.

        Raises:
            OSError: the backing write or fsync failed (the overlay is kept).
        """
        written = 0
        if self.cut is not None:
            os.ftruncate(fd, self.cut)
        for s, d in zip(self._starts, self._data):
            view = memoryview(d)
            while view:
                n = os.pwrite(fd, view, s)
                view, s, written = view[n:], s + n, written + n
        if os.fstat(fd).st_size != self.size:
            os.ftruncate(fd, self.size)
        os.fsync(fd)
        self.drop(self.size)
        return written

    def drop(self, backing_size: int) -> int:
        """Forget every unsynced write; the file is what the backing file holds
        (``backing_size``). Return the bytes dropped."""
        n = self.pending_bytes
        self._starts, self._data = [], []
        self.cut = None
        self.size = backing_size
        self._size_changed = False
        return n
