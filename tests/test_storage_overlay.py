"""FileOverlay: the unsynced data of one file, driven on a plain file (no FUSE)."""

import os

from nodes.storage.overlay import FileOverlay


def _backing(tmp_path, data: bytes) -> int:
    p = tmp_path / "f"
    p.write_bytes(data)
    return os.open(p, os.O_RDWR)


def test_writes_merge_and_reads_overlay_backing(tmp_path):
    fd = _backing(tmp_path, b"0123456789")
    ov = FileOverlay(10)
    ov.write(2, b"ab")
    ov.write(3, b"XYZ")      # overlaps and extends the first extent
    ov.write(12, b"end")     # past the end: a hole of zeros
    assert ov.read(fd, 0, 100) == b"01aXYZ6789\0\0end"
    assert ov.size == 15 and ov.pending_bytes == 4 + 3
    assert os.pread(fd, 100, 0) == b"0123456789"  # nothing reached the backing file
    os.close(fd)


def test_truncate_then_extend_reads_zeros_not_old_bytes(tmp_path):
    fd = _backing(tmp_path, b"0123456789")
    ov = FileOverlay(10)
    ov.write(0, b"abcdef")
    ov.truncate(3)
    ov.write(6, b"Z")
    assert ov.read(fd, 0, 100) == b"abc\0\0\0Z"
    assert ov.dirty
    os.close(fd)


def test_sync_writes_backing_and_clears(tmp_path):
    fd = _backing(tmp_path, b"0123456789")
    ov = FileOverlay(10)
    ov.truncate(4)
    ov.write(2, b"xy")
    ov.write(8, b"!")
    ov.sync_to(fd)
    assert not ov.dirty and ov.pending_bytes == 0
    assert os.pread(fd, 100, 0) == b"01xy\0\0\0\0!"
    os.close(fd)


def test_drop_forgets_everything(tmp_path):
    fd = _backing(tmp_path, b"0123456789")
    ov = FileOverlay(10)
    ov.write(0, b"abc")
    ov.truncate(2)
    assert ov.drop(10) == 2
    assert ov.read(fd, 0, 100) == b"0123456789" and not ov.dirty
    os.close(fd)
