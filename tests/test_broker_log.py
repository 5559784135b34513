"""Plain-class tests of the broker's log storage and idempotent-producer state (no processes)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from nodes.broker import record
from nodes.broker.broker import Broker
from nodes.broker.errors import (InvalidRequest, RequestTooLarge, SequenceGap, SequenceOverlap, StorageError,
                                 StaleEpoch, UnknownProducer)
from nodes.broker.log import partition_count, read_partition, fix_partition_count
from nodes.broker.partition_log import PartitionLog
from nodes.broker.producer_state import ProducerStateTable
from nodes.broker.segment import SegmentCorruptError


def _fill(d: Path, n: int, *, segment_bytes: int = 1 << 20, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    plog = PartitionLog(d / "orders-0", 0, segment_bytes=segment_bytes)
    plog.open()
    entries = [(f"k{i}".encode(), rng.randbytes(rng.randint(0, 200))) for i in range(n)]
    for i in range(0, n, 10):
        plog.append(entries[i:i + 10], producer_id=3, epoch=1, base_sequence=i)
    plog.close()  # a crash-like close: no recovery point written
    return entries


def _reopen(d: Path, **kw) -> tuple[PartitionLog, int]:
    plog = PartitionLog(d / "orders-0", 0, **kw)
    dropped = plog.open()
    return plog, dropped


def test_append_read_round_trip(tmp_path: Path) -> None:
    entries = _fill(tmp_path, 1000)
    plog, dropped = _reopen(tmp_path)
    assert dropped == 0 and plog.end_offset == 1000
    recs = list(plog.iter_records())
    assert [(r.key, r.value) for r in recs] == entries
    assert [r.offset for r in recs] == list(range(1000))
    assert recs[15].sequence == 15 and recs[15].producer_id == 3 and recs[15].epoch == 1
    mid = plog.read(500, 7, 1000)
    assert [r.offset for r in mid] == list(range(500, 507))
    assert plog.read(995, 100, 998)[-1].offset == 997  # bounded by the high watermark
    sized = plog.read(0, 1000, 1000, max_bytes=1000)  # bounded by bytes, at least one record
    assert 0 < len(sized) < 1000 and sum(record.HEADER_BYTES + len(r.key) + len(r.value) for r in sized) <= 1000
    assert len(plog.read(0, 1000, 1000, max_bytes=1)) == 1
    plog.close()


def test_segment_roll_and_recovery_point(tmp_path: Path) -> None:
    entries = _fill(tmp_path, 2000, segment_bytes=16 * 1024)
    files = sorted((tmp_path / "orders-0").glob("*.log"))
    assert len(files) > 5, files
    assert int(files[1].stem) > 0
    assert all(f.with_suffix(".index").exists() for f in files[:-1])  # sealed segments are indexed
    plog, _ = _reopen(tmp_path, segment_bytes=16 * 1024)
    plog.checkpoint()  # the graceful-stop recovery point of the active segment
    plog.append([(b"x", b"after")])
    plog.close()
    plog, dropped = _reopen(tmp_path, segment_bytes=16 * 1024)
    got = [(r.key, r.value) for r in plog.iter_records()]
    assert got == entries + [(b"x", b"after")] and dropped == 0
    plog.close()
    assert [r.offset for r in read_partition(tmp_path, 0)] == list(range(2001))


def test_torn_tail_truncated_with_dropped_bytes(tmp_path: Path) -> None:
    _fill(tmp_path, 100)
    seg = sorted((tmp_path / "orders-0").glob("*.log"))[-1]
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 5)  # cut the last record mid-frame
    # The offline reader stops before the torn record and does not modify the file.
    assert [r.offset for r in read_partition(tmp_path, 0)] == list(range(99))
    assert seg.stat().st_size == size - 5
    plog, dropped = _reopen(tmp_path)
    assert dropped > 0 and plog.end_offset == 99 and seg.stat().st_size == plog.active.size
    plog.close()
    plog, dropped = _reopen(tmp_path)
    assert dropped == 0 and plog.end_offset == 99  # already truncated by the first reopen
    plog.close()


def test_torn_tail_reports_byte_count(tmp_path: Path, caplog) -> None:
    _fill(tmp_path, 100)
    seg = sorted((tmp_path / "orders-0").glob("*.log"))[-1]
    plog, _ = _reopen(tmp_path)
    last_pos, size = plog.active.positions[-1], plog.active.size
    plog.close()
    with open(seg, "r+b") as f:
        f.truncate(size - 3)
    with caplog.at_level("WARNING"):
        plog, dropped = _reopen(tmp_path)
    assert dropped == size - 3 - last_pos
    assert plog.end_offset == 99 and seg.stat().st_size == last_pos
    assert any("bytes dropped" in r.getMessage() for r in caplog.records)
    plog.append([(b"k", b"v")])  # appends continue at the truncated end
    assert plog.end_offset == 100
    plog.close()


def test_flipped_byte_in_last_record_is_truncated(tmp_path: Path) -> None:
    entries = _fill(tmp_path, 50)
    seg = sorted((tmp_path / "orders-0").glob("*.log"))[-1]
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.seek(size - 1)
        b = f.read(1)
        f.seek(size - 1)
        f.write(bytes([b[0] ^ 0xFF]))
    plog, dropped = _reopen(tmp_path)
    assert plog.end_offset == 49 and dropped > 0
    assert [(r.key, r.value) for r in plog.iter_records()] == entries[:49]
    plog.close()


def test_flipped_byte_in_middle_record_is_an_error(tmp_path: Path) -> None:
    _fill(tmp_path, 50)
    plog, _ = _reopen(tmp_path)
    pos = plog.active.positions[20]
    plog.close()
    seg = sorted((tmp_path / "orders-0").glob("*.log"))[-1]
    size_before = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.seek(pos + record.HEADER_BYTES + 1)  # inside the key of record 20
        b = f.read(1)
        f.seek(pos + record.HEADER_BYTES + 1)
        f.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(SegmentCorruptError) as ei:
        _reopen(tmp_path)
    assert str(seg) in str(ei.value) and f"at byte {pos}" in str(ei.value)
    assert seg.stat().st_size == size_before  # nothing dropped
    with pytest.raises(record.CorruptRecordError, match=f"at byte {pos}"):
        list(read_partition(tmp_path, 0))


def test_corrupt_non_last_segment_is_an_error(tmp_path: Path) -> None:
    _fill(tmp_path, 600, segment_bytes=8 * 1024)
    files = sorted((tmp_path / "orders-0").glob("*.log"))
    assert len(files) >= 3
    files[0].with_suffix(".index").unlink()  # force a full scan of the sealed segment
    size = files[0].stat().st_size
    with open(files[0], "r+b") as f:
        f.truncate(size - 2)  # a torn tail in a NON-last segment is not repairable
    with pytest.raises(SegmentCorruptError, match=str(files[0])):
        _reopen(tmp_path, segment_bytes=8 * 1024)


def test_partition_count_is_fixed(tmp_path: Path) -> None:
    assert fix_partition_count(tmp_path, 3) == 3
    assert fix_partition_count(tmp_path, 3) == 3
    assert partition_count(tmp_path) == 3
    with pytest.raises(ValueError, match="3 partitions"):
        fix_partition_count(tmp_path, 4)


def test_producer_state_dedupe_gap_fencing() -> None:
    t = ProducerStateTable()
    pid, epoch, seqs = t.init_producer(-1)
    assert (pid, epoch, seqs) == (0, 0, {})
    assert t.check(pid, 0, 1, 0, 10) is None
    t.on_append(pid, 0, 1, 0, 100, 10)
    t.on_append(pid, 0, 1, 10, 200, 10)
    dup = t.check(pid, 0, 1, 10, 10)
    assert dup is not None and (dup.base_offset, dup.last_offset) == (200, 209)
    assert t.check(pid, 0, 1, 0, 10).base_offset == 100
    with pytest.raises(SequenceGap, match="expected sequence 20, got 25"):
        t.check(pid, 0, 1, 25, 5)
    with pytest.raises(SequenceOverlap, match="overlap"):
        t.check(pid, 0, 1, 15, 10)
    with pytest.raises(UnknownProducer, match="unknown producer id"):
        t.check(99, 0, 1, 0, 1)
    assert t.init_producer(pid) == (pid, 1, {1: 20})
    with pytest.raises(StaleEpoch, match="stale epoch: producer 0 epoch 0 is fenced by epoch 1"):
        t.check(pid, 0, 1, 20, 1)
    assert t.check(pid, 1, 1, 20, 1) is None
    assert t.check(pid, 1, 1, 10, 10).base_offset == 200  # duplicates survive an epoch bump


def test_producer_state_rebuilt_from_records_and_snapshot() -> None:
    t = ProducerStateTable()
    t.load_epochs({"next_producer_id": 1, "epochs": {"0": 0}})
    for off in range(30):
        t.observe(2, 1000 + off, 0, 0, off)
    assert t.next_sequence(0, 2) == 30 and t.check(0, 0, 2, 20, 10).base_offset == 1020
    t2 = ProducerStateTable()
    assert t2.load_snapshot(t.snapshot({2: 1030})) == {2: 1030}
    assert t2.check(0, 0, 2, 10, 5).base_offset == 1010 and t2.next_sequence(0, 2) == 30


async def test_broker_group_commit_and_retry_race(tmp_path: Path) -> None:
    fix_partition_count(tmp_path, 2)
    b = Broker(tmp_path, 2, "exactly-once")
    b.recover()
    b.start()
    pid, epoch, _ = await b.init_producer(-1)
    batches = [[(f"k{i}-{j}".encode(), b"v") for j in range(5)] for i in range(40)]
    # 40 concurrent batches from 40 plain producers: fewer fsyncs than batches (group commit).
    res = await asyncio.gather(*[b.produce("orders", 0, -1, 0, 0, bt) for bt in batches])
    assert sorted(r[0] for r in res) == list(range(0, 200, 5))
    assert b.commit.fsyncs < 40 and b.high_watermark(0) == 200
    # A retry racing its own original: exactly one append, the other is a duplicate.
    orig, retry = await asyncio.gather(b.produce("orders", 1, pid, epoch, 0, batches[0]),
                                       b.produce("orders", 1, pid, epoch, 0, batches[0]))
    assert orig[0] == retry[0] == 0 and sorted([orig[1], retry[1]]) == [False, True]
    assert b.topic.partitions[1].end_offset == 5 and b.duplicate_batches == 1
    for bad, exc in [(lambda: b.produce("orders", 9, -1, 0, 0, batches[0]), InvalidRequest),
                     (lambda: b.produce("nope", 0, -1, 0, 0, batches[0]), InvalidRequest),
                     (lambda: b.produce("orders", 0, -1, 0, 0, []), InvalidRequest),
                     (lambda: b.produce("orders", 0, -1, 0, 0, [(b"", b"x" * (1 << 20 + 1))]), RequestTooLarge),
                     (lambda: b.fetch("orders", [(0, -1)], 10, 0), InvalidRequest)]:
        with pytest.raises(exc):
            await bad()
    got = await b.fetch("orders", [(0, 195), (1, 5)], 0, 1000)
    assert [r.offset for r in got[0][1]] == list(range(195, 200)) and got[1][1] == []
    # Long poll: a waiting fetch is woken by an append.
    waiter = asyncio.ensure_future(b.fetch("orders", [(1, 5)], 10, 5000))
    await b.produce("orders", 1, pid, epoch, 5, [(b"a", b"b")])
    got = await asyncio.wait_for(waiter, 5)
    assert [r.offset for r in got[0][1]] == [5]
    await b.close()
    # Restart (graceful: recovery point + snapshot): producer state and offsets intact.
    b2 = Broker(tmp_path, 2, "exactly-once")
    b2.recover()
    assert b2.producers.next_sequence(pid, 1) == 6
    assert b2.producers.check(pid, epoch, 1, 0, 5).base_offset == 0
    b2.topic.close()


async def _broker(d: Path, mode: str = "exactly-once", partitions: int = 1, **kw) -> Broker:
    d.mkdir(parents=True, exist_ok=True)
    fix_partition_count(d, partitions)
    b = Broker(d, partitions, mode, **kw)
    b.recover()
    b.start()
    return b


async def test_failed_append_does_not_advance_producer_state(tmp_path: Path, monkeypatch) -> None:
    """Scenario 3: the append fails after the dedupe check; the retry must be appended, not a duplicate."""
    b = await _broker(tmp_path)
    pid, epoch, _ = await b.init_producer(-1)
    await b.produce("orders", 0, pid, epoch, 0, [(b"r39", b"v")])
    import nodes.broker.segment as segment_mod
    real_write = segment_mod.os.write

    def failing_write(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segment_mod.os, "write", failing_write)
    with pytest.raises(StorageError, match="No space left"):
        await b.produce("orders", 0, pid, epoch, 1, [(b"r40", b"v")])
    monkeypatch.setattr(segment_mod.os, "write", real_write)
    base, dup, _ = await b.produce("orders", 0, pid, epoch, 1, [(b"r40", b"v")])
    assert (base, dup) == (1, False)
    assert [r.key for r in b.topic.partitions[0].iter_records()] == [b"r39", b"r40"]
    await b.close()


async def test_ablations_and_at_most_once_high_watermark(tmp_path: Path) -> None:
    nofsync = await _broker(tmp_path / "a", fsync=False, writeback_ms=60_000)
    pid, epoch, _ = await nofsync.init_producer(-1)
    await nofsync.produce("orders", 0, pid, epoch, 0, [(b"k", b"v")] * 3)
    assert nofsync.commit.fsyncs == 0 and nofsync.high_watermark(0) == 3  # served without fsync
    got = await nofsync.fetch("orders", [(0, 1)], 10, 0)  # from the write-back buffer
    assert [r.offset for r in got[0][1]] == [1, 2]
    seg = nofsync.topic.partitions[0].active
    assert seg.path.stat().st_size == 0  # ACKed, not even written: a crash now loses them
    await nofsync.close()  # a graceful stop writes them out
    assert seg.path.stat().st_size > 0
    nodedupe = await _broker(tmp_path / "b", dedupe=False)
    pid, epoch, _ = await nodedupe.init_producer(-1)
    for _ in range(2):  # a retry of the same batch becomes new records
        assert (await nodedupe.produce("orders", 0, pid, epoch, 0, [(b"k", b"v")] * 2))[1] is False
    assert nodedupe.topic.partitions[0].end_offset == 4 and nodedupe.duplicate_batches == 0
    await nodedupe.close()
    amo = await _broker(tmp_path / "c", mode="at-most-once")
    await amo.produce("orders", 0, -1, 0, 0, [(b"k", b"v")])
    assert amo.high_watermark(0) == 1  # appended end, not the durable end
    await amo.close()


async def test_crash_restart_scans_only_after_the_recovery_point(tmp_path: Path, caplog) -> None:
    b = await _broker(tmp_path, checkpoint_interval_s=0)
    pid, epoch, _ = await b.init_producer(-1)
    for s in range(0, 300, 10):
        await b.produce("orders", 0, pid, epoch, s, [(b"k%d" % i, b"v") for i in range(10)])
    b.commit.checkpoint_now()  # what the periodic checkpoint does
    for s in range(300, 320, 10):
        await b.produce("orders", 0, pid, epoch, s, [(b"k%d" % i, b"v") for i in range(10)])
    await b.commit.stop()
    b.topic.close()  # a crash: nothing else persisted
    with caplog.at_level("INFO", logger="broker"):
        b2 = Broker(tmp_path, 1, "exactly-once")
        b2.recover()
    scanned = [r.records_scanned_for_producer_state for r in caplog.records if r.getMessage() == "recovered"]
    assert scanned == [20]
    assert b2.topic.partitions[0].end_offset == 320 and b2.producers.next_sequence(pid, 0) == 320
    assert b2.producers.check(pid, epoch, 0, 300, 10).base_offset == 300
    assert b2.producers.check(pid, epoch, 0, 0, 10).base_offset == 0
    b2.topic.close()


@pytest.mark.slow
async def test_million_record_log_restarts_fast_after_graceful_stop(tmp_path: Path) -> None:
    import time
    b = await _broker(tmp_path, partitions=4, checkpoint_interval_s=0)
    pid, epoch, _ = await b.init_producer(-1)
    for i in range(2500):  # 1,000,000 records, written directly through the partition logs
        p, seq = i % 4, (i // 4) * 400
        base = b.topic.partitions[p].append([(b"acct-%d" % j, b"x" * 60) for j in range(400)],
                                            producer_id=pid, epoch=epoch, base_sequence=seq)
        b.producers.on_append(pid, epoch, p, seq, base, 400)
    await b.close()
    t0 = time.monotonic()
    b2 = Broker(tmp_path, 4, "exactly-once")
    b2.recover()
    elapsed = time.monotonic() - t0
    assert sum(b2.topic.end_offsets().values()) == 1_000_000 and b2.producers.next_sequence(pid, 3) == 250_000
    assert elapsed < 1.0, elapsed
    b2.topic.close()


def test_encode_many_gives_the_frames_of_encode():
    """The Produce path's one-loop encoder writes exactly record.encode's frames (issue 16)."""
    entries = [(b"k%d" % i, b"v" * i) for i in range(40)] + [(b"", b"")]
    for producer_id, epoch, base_sequence in ((-1, -1, -1), (7, 2, 0), (7, 2, 2**31 - 41)):
        assert record.encode_many(1000, 123, producer_id, epoch, base_sequence, entries) == [
            record.encode(1000 + i, 123, producer_id, epoch, base_sequence + i if base_sequence >= 0 else -1, k, v)
            for i, (k, v) in enumerate(entries)]
