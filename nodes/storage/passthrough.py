"""The pass-through half of the lazy file system: metadata operations applied to the
backing directory at once (durable at once in the lazy model, see nodes.storage.fs)."""

from __future__ import annotations

import errno
import os

import mfusepy as fuse


class PassThroughOps(fuse.Operations):
    """mfusepy operations that map a mount-relative path onto ``backing``.

    Args:
        backing: the backing directory.
    """

    use_ns = True

    def __init__(self, backing: str) -> None:
        self.root = os.path.realpath(backing)

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._full(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._full(path))
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._full(source), self._full(target))
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._full(target))
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._full(path))

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._full(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._full(path), uid, gid)
        return 0

    def utimens(self, path: str, times=None) -> int:
        if times is None:
            os.utime(self._full(path))
        else:
            os.utime(self._full(path), ns=(int(times[0]), int(times[1])))
        return 0

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._full(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def statfs(self, path: str) -> dict:
        sv = os.statvfs(self._full(path))
        return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                            "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # metadata is applied to the backing dir at once

