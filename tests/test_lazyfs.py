"""The lazy filesystem through a real FUSE mount: unsynced writes are lost on power
loss, synced ones kept; fsync-error, disk-full and the control channel fire as told."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys

import pytest

from harness.storage import ControlError, is_mounted
from nodes.common.durable import atomic_write_bytes
from nodes.storage.faults import read_faults
from tests.lazyfs_support import lazy, needs_fuse  # noqa: F401

pytestmark = needs_fuse


def _write(path, data: bytes, *, fsync: bool, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


async def test_power_loss_keeps_synced_drops_unsynced(lazy):
    m = lazy.mount
    _write(m / "a", b"synced\n", fsync=True)
    _write(m / "a", b"unsynced\n", fsync=False, mode="ab")
    _write(m / "b", b"never synced", fsync=False)
    assert (m / "a").read_bytes() == b"synced\nunsynced\n"   # served from memory before the loss
    assert (lazy.backing / "a").read_bytes() == b"synced\n"  # the disk has only the synced part
    stats = await lazy.control("stats")
    assert stats["pending_files"] == 2 and stats["pending_bytes"] == 9 + 12
    dropped = await lazy.power_loss()
    assert dropped == {"files": 2, "dropped_bytes": 21, "paths": ["/a", "/b"]}
    assert (m / "a").read_bytes() == b"synced\n"
    assert (m / "b").read_bytes() == b""  # created (metadata is durable), contents lost
    assert [f["fault"] for f in read_faults(lazy.state_dir)] == ["clear-cache"]


async def test_sync_of_a_glob_keeps_only_the_matching_files(lazy):
    """``sync GLOB``: the writeback of some files (n01: JetStream's meta layer) before a cut."""
    m = lazy.mount
    (m / "meta").mkdir()
    _write(m / "meta" / "1.blk", b"assignments", fsync=False)
    _write(m / "msgs.blk", b"messages", fsync=False)
    assert await lazy.control("sync */meta/*") == {"ok": True, "files": 1, "synced_bytes": 11}
    dropped = await lazy.power_loss()
    assert dropped["paths"] == ["/msgs.blk"]
    assert (m / "meta" / "1.blk").read_bytes() == b"assignments" and (m / "msgs.blk").read_bytes() == b""


async def test_sync_reaches_an_open_file_whose_directory_was_renamed(lazy):
    """JetStream's purge/compact (filestore.go) moves the last block into a new dir and renames
    the dirs over each other while the block stays open for writing. A ``sync`` (and a
    ``sync GLOB`` on the new path) must still write that block back: it used to be skipped
    by its old path and its unsynced bytes forgotten (issue 15: the meta layer's stream
    assignments became zeros on two of the three servers, at random)."""
    m = lazy.mount
    (m / "store" / "msgs").mkdir(parents=True)
    (m / "store" / "new").mkdir()
    with open(m / "store" / "new" / "3.blk", "wb") as f:
        f.write(b"assignments")
        f.flush()
        os.rename(m / "store" / "msgs", m / "store" / "purged")
        os.rename(m / "store" / "new", m / "store" / "msgs")
        f.write(b"+consumer")
        f.flush()
        assert await lazy.control("sync") == {"ok": True, "files": 1, "synced_bytes": 20}
        f.write(b"+later")
        f.flush()
        assert await lazy.control("sync */msgs/*") == {"ok": True, "files": 1, "synced_bytes": 6}
        f.write(b"+lost")
        f.flush()
    dropped = await lazy.power_loss()
    assert dropped["paths"] == ["/store/msgs/3.blk"]
    assert (m / "store" / "msgs" / "3.blk").read_bytes() == b"assignments+consumer+later"


async def test_glob_sync_finds_an_open_file_by_its_name_after_a_rename(lazy):
    """A file renamed while open, written after a sync: its new unsynced bytes are known
    by the new name (``sync GLOB`` matches it)."""
    m = lazy.mount
    with open(m / "tmp", "wb") as f:
        f.write(b"a")
        f.flush()
        assert (await lazy.control("sync"))["files"] == 1
        os.rename(m / "tmp", m / "kept.blk")
        f.write(b"b")
        f.flush()
        assert (await lazy.control("sync *.blk"))["files"] == 1
    assert (await lazy.power_loss())["files"] == 0
    assert (m / "kept.blk").read_bytes() == b"ab"

async def test_rename_without_fsync_leaves_an_empty_file(lazy):
    """The classic: temp file, rename over the real one, no fsync of the data."""
    m = lazy.mount
    atomic_write_bytes(m / "kept.json", b'{"v": 1}', fsync=True)
    atomic_write_bytes(m / "lost.json", b'{"v": 2}', fsync=False)
    await lazy.power_loss()
    assert (m / "kept.json").read_bytes() == b'{"v": 1}'
    assert (m / "lost.json").exists() and (m / "lost.json").read_bytes() == b""


async def test_write_through_files_survive(lazy):
    _write(lazy.mount / "stderr.log", b"a log line\n", fsync=False)
    await lazy.power_loss()
    assert (lazy.mount / "stderr.log").read_bytes() == b"a log line\n"


async def test_truncate_is_lazy_too(lazy):
    m = lazy.mount
    _write(m / "f", b"0123456789", fsync=True)
    os.truncate(m / "f", 3)
    _write(m / "f", b"Z", fsync=False, mode="ab")
    assert (m / "f").read_bytes() == b"012Z"
    await lazy.power_loss()
    assert (m / "f").read_bytes() == b"0123456789"


async def test_fsync_error_fires_once_on_a_matching_file_and_drops_its_data(lazy):
    m = lazy.mount
    _write(m / "seg.log", b"old", fsync=True)
    await lazy.control("fsync-error *.log")
    _write(m / "other.dat", b"x", fsync=True)  # does not match: not the one
    fd = os.open(m / "seg.log", os.O_RDWR)
    try:
        os.pwrite(fd, b"NEW", 0)
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
        os.fsync(fd)  # fsyncgate: a second fsync "succeeds", the data is gone all the same
    finally:
        os.close(fd)
    assert (lazy.backing / "seg.log").read_bytes() == b"old"  # the new write never reached the disk
    assert (lazy.backing / "other.dat").read_bytes() == b"x"
    fired = [f for f in read_faults(lazy.state_dir) if f["fault"] == "fsync-error"]
    assert len(fired) == 1 and fired[0]["path"] == "/seg.log" and fired[0]["dropped_bytes"] > 0


async def test_disk_full_after_n_bytes_then_lifted(lazy):
    m = lazy.mount
    await lazy.control("disk-full 100")
    fd = os.open(m / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"a" * 60)
        with pytest.raises(OSError) as e:
            os.write(fd, b"b" * 60)
        assert e.value.errno == errno.ENOSPC
        await lazy.control("disk-full off")
        assert os.write(fd, b"c" * 60) == 60
    finally:
        os.close(fd)
    fired = [f for f in read_faults(lazy.state_dir) if f["fault"] == "disk-full"]
    assert len(fired) == 1 and fired[0]["requested_bytes"] == 60
    assert (await lazy.control("stats"))["faults_fired"] == {"disk-full": 1}


def _sqlite(path, synchronous: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    con.execute(f"PRAGMA synchronous={synchronous}")
    return con


@pytest.mark.parametrize("synchronous, survives", [("FULL", True), ("OFF", False)])
async def test_sqlite_wal_commit_survives_power_loss_only_when_fsynced(lazy, synchronous, survives):
    """The sink's SQLite (WAL, its -shm file mmapped) works on the mount as is."""
    db = lazy.mount / "db.sqlite"
    con = _sqlite(db, "FULL")
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    con = _sqlite(db, synchronous)
    for i in range(20):
        con.execute("INSERT INTO t VALUES (?)", (i,))
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 20
    await lazy.power_loss()  # the process "dies" with the connection open: no checkpoint at close
    try:
        con.close()
    except sqlite3.Error:
        pass
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == (20 if survives else 0)
    con.close()


async def test_bad_command_is_refused(lazy):
    with pytest.raises(ControlError, match="unknown command"):
        await lazy.control("format-disk")
    with pytest.raises(ControlError, match="byte count"):
        await lazy.control("disk-full lots")
    r = subprocess.run([sys.executable, "-m", "nodes.storage.lazyfs", "ctl", "--mount", str(lazy.mount), "nope"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown command" in r.stderr


async def test_stop_unmounts(tmp_path):
    from harness.storage import LazyMount
    m = LazyMount(tmp_path, "n")
    await m.start()
    assert is_mounted(m.mount)
    _write(m.mount / "f", b"clean shutdown writes back", fsync=False)
    await m.stop()
    assert not is_mounted(m.mount) and not m.running
    assert (m.backing / "f").read_bytes() == b"clean shutdown writes back"


async def test_a_relative_run_dir_mounts_and_loses_power(tmp_path, monkeypatch):
    """`--out runs` is relative: lazyfs and the node resolve paths from their own cwd, so the
    mount is made on absolute paths (a relative one left the node a dead mount point)."""
    from harness.storage import LazyMount
    monkeypatch.chdir(tmp_path)
    m = LazyMount("rel", "n")
    assert m.mount.is_absolute() and m.mount == tmp_path / "rel" / "n.mnt"
    await m.start()
    try:
        assert is_mounted(m.mount)
        _write(m.mount / "kept", b"synced", fsync=True)
        _write(m.mount / "dropped", b"not synced", fsync=False)
        await m.power_loss()
        assert (m.mount / "kept").read_bytes() == b"synced"
        assert (m.mount / "dropped").read_bytes() == b""   # created, contents lost
    finally:
        await m.stop()
