"""The broker as a real process on loopback: crashes, dedupe across SIGKILL, fencing, bad input."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

import grpc
import pytest

from harness.process import ROOT, NodeStartError
from nodes.broker.log import read_partition
from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2 as pb
from nodes.pb import broker_pb2_grpc, node_pb2, node_pb2_grpc

T = 10.0  # deadline of every RPC (s)


def _batch(prefix: str, n: int) -> list[pb.Record]:
    return [pb.Record(key=f"{prefix}-{i}".encode(), value=f"value-{prefix}-{i}".encode()) for i in range(n)]


async def _status(ch) -> dict:
    r = await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=T)
    return json.loads(r.status_json)


async def _fetch_all(stub, partitions: int) -> dict[int, list[pb.Record]]:
    lo = await stub.ListOffsets(pb.ListOffsetsRequest(topic="orders"), timeout=T)
    out: dict[int, list[pb.Record]] = {}
    for po in lo.high_watermarks:
        recs: list[pb.Record] = []
        while len(recs) < po.offset:
            r = await stub.Fetch(pb.FetchRequest(topic="orders", partitions=[
                pb.PartitionOffset(partition=po.partition, offset=len(recs))], max_records=1000,
                max_wait_ms=0), timeout=T)
            assert r.partitions[0].records, "fetch below the high watermark returned nothing"
            recs.extend(r.partitions[0].records)
        out[po.partition] = recs
    assert sorted(out) == list(range(partitions))
    return out


async def test_sigkill_during_concurrent_produce_keeps_every_acked_record(spawn, tmp_path: Path) -> None:
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "2",
                                    "--segment-bytes", "65536", "--checkpoint-interval-ms", "200"])
    acked: list[tuple[int, int, list[bytes]]] = []  # (partition, base offset, keys)
    enough = asyncio.Event()

    async def client(cid: int) -> None:
        rng = random.Random(cid)
        async with insecure_channel(broker.address) as ch:
            stub = broker_pb2_grpc.BrokerStub(ch)
            for b in range(1000):
                p = rng.randrange(2)
                recs = _batch(f"c{cid}-b{b}", rng.randint(1, 10))
                try:
                    r = await stub.Produce(pb.ProduceRequest(topic="orders", partition=p, producer_id=-1,
                                                             records=recs), timeout=T)
                except grpc.aio.AioRpcError:
                    return  # the broker was killed: outcome unknown, not counted as ACKed
                acked.append((p, r.base_offset, [x.key for x in recs]))
                if sum(len(k) for _, _, k in acked) >= 1500:
                    enough.set()

    clients = [asyncio.ensure_future(client(c)) for c in range(4)]
    await asyncio.wait_for(enough.wait(), 60)
    broker.kill()  # while the clients are still producing
    assert await broker.wait(10) == -9
    await asyncio.wait_for(asyncio.gather(*clients), 30)
    await broker.restart()
    async with insecure_channel(broker.address) as ch:
        logs = await _fetch_all(broker_pb2_grpc.BrokerStub(ch), 2)
        status = await _status(ch)
    for p, recs in logs.items():
        assert [r.offset for r in recs] == list(range(len(recs)))  # dense, CRC-checked on read
    for p, base, keys in acked:
        assert [r.key for r in logs[p][base:base + len(keys)]] == keys, (p, base)
    assert sum(len(k) for _, _, k in acked) >= 1500
    assert status["partitions"] == 2 and status["recovered_bytes_dropped"] >= 0
    assert await broker.stop() == 0
    for p, recs in logs.items():  # the offline reader sees the same log
        assert [(r.offset, r.key) for r in read_partition(broker.data_dir, p)] == [(r.offset, r.key) for r in recs]


async def test_dedupe_and_epochs_survive_sigkill(spawn) -> None:
    broker = await spawn("broker", ["--mode", "exactly-once", "--partitions", "3",
                                    "--checkpoint-interval-ms", "0"])

    async def produce(stub, pid, epoch, seq, prefix, n=10, partition=1):
        return await stub.Produce(pb.ProduceRequest(topic="orders", partition=partition, producer_id=pid,
                                                    producer_epoch=epoch, base_sequence=seq,
                                                    records=_batch(prefix, n)), timeout=T)

    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        await produce(stub, -1, 0, 0, "plain", 3)  # a non-idempotent batch first: offsets 0..2
        init = await stub.InitProducer(pb.InitProducerRequest(producer_id=-1), timeout=T)
        pid = init.producer_id
        assert init.producer_epoch == 0 and not init.next_sequences
        bases = [(await produce(stub, pid, 0, s, f"b{s}")).base_offset for s in range(0, 50, 10)]
        assert bases == [3, 13, 23, 33, 43]
    broker.kill()
    await broker.wait(10)
    await broker.restart()
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        retry = await produce(stub, pid, 0, 40, "b40")  # the last ACKed batch, retried
        assert retry.duplicate and retry.base_offset == 43
        older = await produce(stub, pid, 0, 10, "b10")
        assert older.duplicate and older.base_offset == 13
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await produce(stub, pid, 0, 60, "b60")
        assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert f"sequence gap: producer {pid} partition 1 expected sequence 50, got 60" in ei.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await produce(stub, pid, 0, 45, "b45")
        assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "overlap" in ei.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await produce(stub, 12345, 0, 0, "x")
        assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "unknown producer id" in ei.value.details()
        nxt = await produce(stub, pid, 0, 50, "b50")
        assert not nxt.duplicate and nxt.base_offset == 53
        init = await stub.InitProducer(pb.InitProducerRequest(producer_id=pid), timeout=T)
        assert init.producer_epoch == 1
        assert {po.partition: po.offset for po in init.next_sequences} == {1: 60}
        status = await _status(ch)
        assert status["duplicate_batches"] == 2 and status["producers"] == 1
    broker.kill()  # the epoch bump must be durable too
    await broker.wait(10)
    await broker.restart()
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await produce(stub, pid, 0, 60, "zombie")
        assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"stale epoch: producer {pid} epoch 0 is fenced by epoch 1" in ei.value.details()
        ok = await produce(stub, pid, 1, 60, "b60")
        assert ok.base_offset == 63 and not ok.duplicate
        logs = await _fetch_all(stub, 3)
    keys = [r.key for r in logs[1]]
    assert len(keys) == len(set(keys)) == 73  # every batch exactly once
    assert await broker.stop() == 0


async def test_bad_input_offsets_and_long_poll(spawn) -> None:
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "2"])
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        bad = [
            (stub.Produce, pb.ProduceRequest(topic="nope", partition=0, producer_id=-1, records=_batch("a", 1)),
             grpc.StatusCode.INVALID_ARGUMENT, "unknown topic"),
            (stub.Produce, pb.ProduceRequest(topic="orders", partition=7, producer_id=-1, records=_batch("a", 1)),
             grpc.StatusCode.INVALID_ARGUMENT, "unknown partition 7"),
            (stub.Produce, pb.ProduceRequest(topic="orders", partition=0, producer_id=-1),
             grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
            (stub.Produce, pb.ProduceRequest(topic="orders", partition=0, producer_id=-1,
                                             records=[pb.Record(key=b"k", value=b"x" * (2 << 20))]),
             grpc.StatusCode.RESOURCE_EXHAUSTED, "limit"),
            (stub.Fetch, pb.FetchRequest(topic="orders", partitions=[pb.PartitionOffset(partition=0, offset=-1)]),
             grpc.StatusCode.INVALID_ARGUMENT, "negative offset"),
            (stub.Fetch, pb.FetchRequest(topic="orders", partitions=[pb.PartitionOffset(partition=5, offset=0)]),
             grpc.StatusCode.INVALID_ARGUMENT, "unknown partition"),
            (stub.CommitOffset, pb.CommitOffsetRequest(group="g", topic="orders",
                                                       offsets=[pb.PartitionOffset(partition=9, offset=1)]),
             grpc.StatusCode.INVALID_ARGUMENT, "unknown partition"),
        ]
        for method, req, code, text in bad:
            with pytest.raises(grpc.aio.AioRpcError) as ei:
                await method(req, timeout=T)
            assert ei.value.code() == code and text in ei.value.details(), (code, ei.value.details())
        r = await stub.Produce(pb.ProduceRequest(topic="orders", partition=0, producer_id=-1,
                                                 records=_batch("ok", 4)), timeout=T)
        assert r.base_offset == 0 and r.log_end_offset == 4
        # Long poll: beyond the high watermark is empty (not an error), after max_wait_ms.
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        f = await stub.Fetch(pb.FetchRequest(topic="orders", max_wait_ms=300, partitions=[
            pb.PartitionOffset(partition=0, offset=4), pb.PartitionOffset(partition=1, offset=100)]), timeout=T)
        assert loop.time() - t0 >= 0.25
        assert [len(p.records) for p in f.partitions] == [0, 0]
        assert [p.high_watermark for p in f.partitions] == [4, 0]
        # ... and returns as soon as a record arrives.
        waiting = asyncio.ensure_future(stub.Fetch(pb.FetchRequest(topic="orders", max_wait_ms=5000, partitions=[
            pb.PartitionOffset(partition=1, offset=0)]), timeout=T))
        await stub.Produce(pb.ProduceRequest(topic="orders", partition=1, producer_id=-1,
                                             records=_batch("late", 1)), timeout=T)
        f = await asyncio.wait_for(waiting, 5)
        assert [r.key for r in f.partitions[0].records] == [b"late-0"]
        await stub.CommitOffset(pb.CommitOffsetRequest(group="proc", topic="orders", offsets=[
            pb.PartitionOffset(partition=0, offset=3)]), timeout=T)
        status = await _status(ch)
        assert status["high_watermarks"] == {"0": 4, "1": 1} and status["appended_records"] == 5
        assert status["fsyncs"] >= 1 and set(status) >= {"partitions", "duplicate_batches", "producers",
                                                         "recovered_bytes_dropped"}
    broker.kill()
    await broker.wait(10)
    await broker.restart()
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        c = await stub.FetchCommittedOffset(pb.FetchCommittedOffsetRequest(group="proc", topic="orders"), timeout=T)
        assert [(po.partition, po.offset) for po in c.offsets] == [(0, 3)]
        c = await stub.FetchCommittedOffset(pb.FetchCommittedOffsetRequest(group="other", topic="orders"), timeout=T)
        assert list(c.offsets) == []
        lo = await stub.ListOffsets(pb.ListOffsetsRequest(topic="orders"), timeout=T)
        assert lo.partition_count == 2 and [po.offset for po in lo.high_watermarks] == [4, 1]
    assert await broker.stop() == 0


async def _run_exit(args: list[str], timeout_s: float = 30) -> tuple[int, str]:
    """Run ``python -m nodes.broker ARGS`` that must exit by itself; return (code, stderr)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "nodes.broker", *args, cwd=str(ROOT),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()  # by pid
        await proc.wait()
        raise
    return proc.returncode, err.decode()


async def test_bad_flags_and_partition_mismatch_exit_2(spawn, tmp_path: Path) -> None:
    code, err = await _run_exit(["--data-dir", str(tmp_path / "a"), "--partitions", "0"])
    assert code == 2 and "--partitions" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = await _run_exit(["--data-dir", str(blocker / "sub")])
    assert code == 2 and "not writable" in err
    broker = await spawn("broker", ["--partitions", "3"])
    assert await broker.stop() == 0
    code, err = await _run_exit(["--data-dir", str(broker.data_dir), "--partitions", "4"])
    assert code == 2 and "has 3 partitions" in err and len(err.strip().splitlines()) == 1


async def test_torn_tail_dropped_then_middle_corruption_is_a_startup_error(spawn) -> None:
    broker = await spawn("broker", ["--partitions", "1", "--checkpoint-interval-ms", "0"])
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        for i in range(5):
            await stub.Produce(pb.ProduceRequest(topic="orders", partition=0, producer_id=-1,
                                                 records=_batch(f"b{i}", 10)), timeout=T)
    broker.kill()  # crash: no recovery point, the restart scans every byte
    await broker.wait(10)
    seg = broker.data_dir / "orders-0" / f"{0:020d}.log"
    size = seg.stat().st_size
    with open(seg, "r+b") as f:
        f.truncate(size - 3)  # a torn last record
    await broker.restart()
    async with insecure_channel(broker.address) as ch:
        status = await _status(ch)
    assert status["high_watermarks"] == {"0": 49} and 0 < status["recovered_bytes_dropped"] < size
    log_lines = [json.loads(x) for x in (broker.data_dir / "broker.log").read_text().splitlines()]
    assert any(x["level"] == "WARNING" and "bytes dropped" in x["msg"] for x in log_lines)
    broker.kill()
    await broker.wait(10)
    data = bytearray(seg.read_bytes())
    data[200] ^= 0x40
    seg.write_bytes(bytes(data))
    with pytest.raises(NodeStartError, match="exited with code 2"):
        await broker.start()
    err = (broker.data_dir / "stderr.log").read_text()
    assert f"broker: error: corrupt log segment {seg} at byte " in err
    assert not list((broker.data_dir / "orders-0").glob("*.index"))  # no recovery point was written
    assert seg.stat().st_size == len(data)  # nothing was dropped


async def test_graceful_stop_writes_recovery_point(spawn) -> None:
    broker = await spawn("broker", ["--mode", "exactly-once", "--partitions", "2",
                                    "--checkpoint-interval-ms", "0"])
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        init = await stub.InitProducer(pb.InitProducerRequest(producer_id=-1), timeout=T)
        for s in range(0, 100, 10):
            await stub.Produce(pb.ProduceRequest(topic="orders", partition=0, producer_id=init.producer_id,
                                                 base_sequence=s, records=_batch(f"s{s}", 10)), timeout=T)
    assert await broker.stop() == 0  # SIGTERM
    assert (broker.data_dir / "orders-0" / f"{0:020d}.index").exists()
    assert (broker.data_dir / "producer-snapshot.json").exists()
    await broker.restart()
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        r = await stub.Produce(pb.ProduceRequest(topic="orders", partition=0, producer_id=init.producer_id,
                                                 base_sequence=90, records=_batch("s90", 10)), timeout=T)
        assert r.duplicate and r.base_offset == 90
    log_lines = [json.loads(x) for x in (broker.data_dir / "broker.log").read_text().splitlines()]
    recovered = [x for x in log_lines if x["msg"] == "recovered"]
    assert recovered[-1]["records_scanned_for_producer_state"] == 0  # nothing re-scanned
    assert await broker.stop() == 0


async def test_no_fsync_ablation_loses_acked_records_on_sigkill(spawn) -> None:
    """Scenario 2's ablation: ACK before the data is durable; kill -9 right after the ACK."""
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "1", "--no-fsync",
                                    "--writeback-ms", "60000"])
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        r = await stub.Produce(pb.ProduceRequest(topic="orders", partition=0, producer_id=-1,
                                                 records=_batch("acked", 10)), timeout=T)
        assert r.log_end_offset == 10
        f = await stub.Fetch(pb.FetchRequest(topic="orders", partitions=[pb.PartitionOffset(partition=0)],
                                             max_wait_ms=0), timeout=T)
        assert len(f.partitions[0].records) == 10  # served, so the pipeline keeps moving
        assert (await _status(ch))["fsyncs"] == 0
    broker.kill()
    await broker.wait(10)
    await broker.restart()
    async with insecure_channel(broker.address) as ch:
        assert (await _status(ch))["high_watermarks"] == {"0": 0}  # lost-acknowledged
    assert await broker.stop() == 0
