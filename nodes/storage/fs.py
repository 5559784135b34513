"""The lazy filesystem's operations: a pass-through over a backing directory that
keeps file data in memory until fsync (the model of Jepsen's LazyFS).

What is lazy and what is not (the honest, simplest model):

- **File data is lazy.** write() and truncate() go to a per-file
  :class:`~nodes.storage.overlay.FileOverlay` in this process's memory; reads
  merge the backing file with it. fsync() / fdatasync() of a file writes that
  file's overlay to the backing file and fsyncs it. A power loss (the
  ``clear-cache`` command, or kill -9 of this process) drops every overlay.
- **Metadata is applied to the backing dir at once and is durable**: create,
  mkdir, rename, unlink, link, chmod. So a node that writes a temp file,
  renames it over the real one and loses power before fsyncing the data finds
  the real file *present but empty or short*: the classic "renamed file with
  lost contents" of ext4 before auto_da_alloc. fsync of a directory is a no-op
  (its metadata is already durable).
- **Observer files are written through**: the testbed's own records, not the
  node's durable state (names given by ``--write-through``, at the mount root:
  the node's log, its stderr, the producer's history), go straight to the
  backing file, and do not count against ``disk-full``. In Jepsen the history
  lives outside the system under test; here it shares the data dir.

After an injected fsync error the file's overlay is dropped, but pages the
kernel cached for this mount may still show the dropped bytes to a reader until
the next mount, as Linux's page cache does after a failed write-back
(fsyncgate); the backing file, and every later mount, hold only what was synced.

Overlays are keyed by the backing file's inode, so a rename keeps a file's
unsynced data with it; the backing fd a handle holds keeps the inode alive. A
rename of a file or of a directory updates the path of every overlay and open
handle under it (``sync GLOB`` matches the current path; JetStream's filestore
renames its ``msgs`` directories over open blocks when it compacts).
A clean unmount (``destroy``) writes every overlay back, as an OS does at a
clean shutdown.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import logging
import os
import stat
import threading
from dataclasses import dataclass

import mfusepy as fuse

from nodes.storage.faults import FaultState
from nodes.storage.overlay import FileOverlay
from nodes.storage.passthrough import PassThroughOps

log = logging.getLogger("lazyfs")

STAT_KEYS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
             "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blocks", "st_blksize")


@dataclass
class Handle:
    fd: int
    key: tuple[int, int]   # (st_dev, st_ino) of the backing file
    path: str              # mount-relative path at open time
    write_through: bool


class LazyOps(PassThroughOps):
    """mfusepy operations over ``backing`` (a directory path).

    Args:
        backing: the backing directory (what is "on disk").
        faults: the armed faults and their record.
        write_through: basenames at the mount root written straight through.
    """

    use_ns = True

    def __init__(self, backing: str, faults: FaultState, write_through: frozenset[str] = frozenset()) -> None:
        super().__init__(backing)
        self.faults = faults
        self.write_through = write_through
        self._mutex = threading.RLock()
        self.overlays: dict[tuple[int, int], FileOverlay] = {}
        self.handles: dict[int, Handle] = {}
        self.open_count: dict[tuple[int, int], int] = {}
        self.next_fh = 1
        self.fsyncs = 0
        self.fsynced_bytes = 0

    # ----- helpers ------------------------------------------------------------------------

    def _overlay(self, h: Handle) -> FileOverlay:
        ov = self.overlays.get(h.key)
        if ov is None:
            ov = self.overlays[h.key] = FileOverlay(os.fstat(h.fd).st_size)
            ov.path = h.path  # last known path, for reports and the write-back at unmount
        return ov

    def _is_write_through(self, path: str) -> bool:
        return path.count("/") == 1 and path[1:] in self.write_through

    def _forget_if_gone(self, key: tuple[int, int], nlink: int) -> None:
        if nlink == 0 and not self.open_count.get(key):
            self.overlays.pop(key, None)

    # ----- power loss and statistics (called from the control channel) -------------------

    def clear_cache(self) -> dict:
        """Drop every unsynced write (power loss); return {files, dropped_bytes, paths}."""
        with self._mutex:
            paths = sorted(ov.path for ov in self.overlays.values() if ov.dirty)
            dropped = sum(ov.drop(0) for ov in self.overlays.values())
            self.overlays.clear()
            return {"files": len(paths), "dropped_bytes": dropped, "paths": paths}

    def stats(self) -> dict:
        with self._mutex:
            dirty = [ov for ov in self.overlays.values() if ov.dirty]
            return {"pending_bytes": sum(ov.pending_bytes for ov in dirty), "pending_files": len(dirty),
                    "fsyncs": self.fsyncs, "fsynced_bytes": self.fsynced_bytes,
                    "faults_fired": dict(self.faults.fired), "fsync_error_armed": self.faults.fsync_error,
                    "disk_budget_bytes": self.faults.disk_budget, "open_files": len(self.handles)}

    # ----- files --------------------------------------------------------------------------

    def _open_handle(self, path: str, fd: int) -> int:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = Handle(fd, key, path, self._is_write_through(path))
        self.open_count[key] = self.open_count.get(key, 0) + 1
        return fh

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            try:
                fd = os.open(self._full(path), os.O_RDWR)
            except PermissionError:
                fd = os.open(self._full(path), os.O_RDONLY)
            fh = self._open_handle(path, fd)
            if flags & os.O_TRUNC:
                self.truncate(path, 0, fh)
            return fh

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self._mutex:
            fd = os.open(self._full(path), os.O_RDWR | os.O_CREAT | (flags & os.O_EXCL), mode & 0o7777)
            fh = self._open_handle(path, fd)
            if os.fstat(fd).st_size and flags & os.O_TRUNC:
                self.truncate(path, 0, fh)
            return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            h = self.handles[fh]
            ov = self.overlays.get(h.key)
            if ov is None:
                return os.pread(h.fd, size, offset)
            return ov.read(h.fd, offset, size)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            h = self.handles[fh]
            if h.write_through:
                return os.pwrite(h.fd, data, offset)
            if not self.faults.charge(len(data)):
                self.faults.record("disk-full", path=path or h.path, requested_bytes=len(data))
                raise fuse.FuseOSError(errno.ENOSPC)
            return self._overlay(h).write(offset, data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._mutex:
            if fh is not None and fh in self.handles:
                return self._truncate(self.handles[fh], length)
            tmp = self._open_handle(path, os.open(self._full(path), os.O_RDWR))
            try:
                return self._truncate(self.handles[tmp], length)
            finally:
                self.release(path, tmp)

    def _truncate(self, h: Handle, length: int) -> int:
        if h.write_through:
            os.ftruncate(h.fd, length)
        else:
            self._overlay(h).truncate(length)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            h = self.handles[fh]
            name = path or h.path
            ov = self.overlays.get(h.key)
            if self.faults.take_fsync_error(name):
                dropped = ov.drop(os.fstat(h.fd).st_size) if ov is not None else 0
                self.faults.record("fsync-error", path=name, dropped_bytes=dropped)
                raise fuse.FuseOSError(errno.EIO)
            self.fsyncs += 1
            if ov is not None and ov.dirty:
                self.fsynced_bytes += ov.sync_to(h.fd)
            else:
                os.fsync(h.fd)
            return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._mutex:
            h = self.handles.pop(fh)
            self.open_count[h.key] -= 1
            nlink = os.fstat(h.fd).st_nlink
            if not self.open_count[h.key]:
                del self.open_count[h.key]
            self._forget_if_gone(h.key, nlink)
            os.close(h.fd)
            return 0

    def getattr(self, path: str, fh: int | None = None) -> dict:
        with self._mutex:
            if fh is not None and fh in self.handles:
                st = os.fstat(self.handles[fh].fd)
            else:
                st = os.lstat(self._full(path))
            attrs = {k: getattr(st, k) for k in STAT_KEYS}
            attrs["st_atime"], attrs["st_mtime"], attrs["st_ctime"] = (
                attrs.pop("st_atime_ns"), attrs.pop("st_mtime_ns"), attrs.pop("st_ctime_ns"))
            ov = self.overlays.get((st.st_dev, st.st_ino))
            if ov is not None:
                attrs["st_size"] = ov.size
                attrs["st_blocks"] = (ov.size + 511) // 512
            return attrs

    # ----- metadata that touches an overlay (the rest: nodes.storage.passthrough) ----------

    def unlink(self, path: str) -> int:
        with self._mutex:
            full = self._full(path)
            st = os.lstat(full)
            os.unlink(full)
            self._forget_if_gone((st.st_dev, st.st_ino), st.st_nlink - 1)
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            target = self._full(new)
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                st = None
            src = os.lstat(self._full(old))
            os.rename(self._full(old), target)
            ov = self.overlays.get((src.st_dev, src.st_ino))
            if ov is not None:
                ov.path = new
            for h in self.handles.values():   # an overlay made later names the file by its handle
                if h.key == (src.st_dev, src.st_ino):
                    h.path = new
            if stat.S_ISDIR(src.st_mode):   # the files under it moved too (JetStream's purge and
                self._moved_dir(old, new)     # compact rename msgs/ dirs with open blocks inside)
            if st is not None and (st.st_dev, st.st_ino) != (src.st_dev, src.st_ino):
                self._forget_if_gone((st.st_dev, st.st_ino), st.st_nlink - 1)
            return 0

    def _moved_dir(self, old: str, new: str) -> None:
        """Rewrite the known paths (overlays, open handles) under directory ``old`` to ``new``."""
        prefix = old.rstrip("/") + "/"
        def moved(p: str) -> str:
            return new.rstrip("/") + "/" + p[len(prefix):] if p.startswith(prefix) else p
        for ov in self.overlays.values():
            ov.path = moved(ov.path)
        for h in self.handles.values():
            h.path = moved(h.path)

    def destroy(self, path: str) -> None:
        """Clean unmount: write every overlay back and fsync it (a clean shutdown)."""
        self.sync_all()

    def sync_all(self, pattern: str | None = None) -> dict:
        """Write every overlay back and fsync it (``sync(1)``, or the kernel's periodic
        writeback); with ``pattern`` (an fnmatch glob on the path inside the mount, ``*``
        crossing ``/``) only the matching files, the others stay unsynced. A file is written
        through a handle that has it open, else reopened by its last known path; an overlay
        neither way reaches (its file is gone) is dropped, as the kernel drops the pages of
        a deleted file. Returns {files, synced_bytes}."""
        files = synced = 0
        with self._mutex:
            open_fd = {h.key: h.fd for h in self.handles.values()
                       if fcntl.fcntl(h.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR}
            for key, ov in list(self.overlays.items()):
                if pattern is not None and not fnmatch.fnmatchcase(ov.path, pattern):
                    continue
                if not ov.dirty:
                    del self.overlays[key]
                    continue
                try:
                    if key in open_fd:
                        synced += ov.sync_to(open_fd[key])
                    else:
                        synced += self._sync_by_path(key, ov)
                    files += 1
                    del self.overlays[key]
                except FileNotFoundError:
                    log.error("write-back of %s: the file is gone, its unsynced writes dropped", ov.path)
                    del self.overlays[key]
                except OSError as e:   # the backing write or fsync failed: the overlay is kept
                    log.error("write-back of %s failed: %s", ov.path, e)
        return {"files": files, "synced_bytes": synced}

    def _sync_by_path(self, key: tuple[int, int], ov: FileOverlay) -> int:
        """Write ``ov`` back through its last known path; FileNotFoundError if that path
        is gone or names another file now."""
        fd = os.open(self._full(ov.path), os.O_RDWR)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != key:
                raise FileNotFoundError(f"{ov.path} names another file now")
            return ov.sync_to(fd)
        finally:
            os.close(fd)
