"""A full disk or an I/O error reaches the harness within seconds (issue 11): the node
fail-stops with exit code 3 and a line naming errno and file; the campaign prints
which node and which file, exits 2 and keeps the partial run readable.

The full disk is a tiny tmpfs (we run as root); the tests skip where mount fails."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import grpc
import pytest

from harness.storage_watch import PROCESSES, StorageFailure, storage_guard
from nodes.common.channels import insecure_channel
from nodes.common.storage_fault import EXIT_STORAGE, describe, find
from nodes.pb import broker_pb2 as pb
from nodes.pb import broker_pb2_grpc
from tests.conftest import pid_alive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_disk(tmp_path):
    """A directory on a tmpfs of the given size; unmounted at teardown."""
    mounted: list[Path] = []

    def make(name: str, size: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        if subprocess.run(["umount", str(d)], capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=10)


def test_find_and_describe_storage_errors():
    enospc = OSError(errno.ENOSPC, "No space left on device")
    enospc.filename = "/d/orders-0/0.log"
    assert find(RuntimeError("x").with_traceback(None)) is None
    wrapped = RuntimeError("append failed")
    wrapped.__cause__ = enospc
    assert find(wrapped) is enospc
    assert find(ExceptionGroup("sends", [ValueError("v"), wrapped])) is enospc
    assert describe(enospc) == ("ENOSPC (No space left on device)", "/d/orders-0/0.log")
    assert find(OSError(errno.ECONNRESET, "reset")) is None  # not a storage error
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13
    assert find(full) is full


async def test_guard_raises_within_a_poll_of_a_storage_exit(tmp_path):
    fake = types.SimpleNamespace(name="broker", data_dir=tmp_path, proc=types.SimpleNamespace(returncode=None),
                                 storage_error=None)
    PROCESSES.add(fake_process := _Weakable(fake))
    t0 = time.monotonic()

    async def body():
        await asyncio.sleep(0.1)
        fake_process.proc.returncode = EXIT_STORAGE
        fake_process.storage_error = {"event": "storage-error", "errno": "ENOSPC (No space left on device)",
                                      "file": "/d/orders-0/0.log"}
        await asyncio.sleep(30)

    with pytest.raises(StorageFailure) as e:
        async with storage_guard(poll_s=0.05):
            await body()
    assert time.monotonic() - t0 < 2
    assert str(e.value) == "broker stopped on a storage error: ENOSPC (No space left on device) on /d/orders-0/0.log"
    fake_process.proc.returncode = None


class _Weakable:
    """A weak-referenceable stand-in for a NodeProcess."""

    def __init__(self, ns) -> None:
        self.__dict__.update(vars(ns))


@pytest.mark.timeout(60)
async def test_broker_on_a_full_disk_exits_3_naming_the_segment(spawn, tiny_disk):
    data = tiny_disk("broker-disk", "256k")
    broker = await spawn("broker", ["--mode", "at-least-once", "--partitions", "1"], data_dir=data / "broker")
    codes = []
    async with insecure_channel(broker.address) as ch:
        stub = broker_pb2_grpc.BrokerStub(ch)
        for b in range(2000):
            recs = [pb.Record(key=f"k{b}-{i}".encode(), value=b"v" * 900) for i in range(10)]
            try:
                await stub.Produce(pb.ProduceRequest(topic="orders", partition=0, producer_id=-1, records=recs),
                                   timeout=5)
            except grpc.aio.AioRpcError as e:
                codes.append(e.code())
                break
    assert codes and codes[0] == grpc.StatusCode.UNAVAILABLE, codes  # nothing acknowledged
    assert await broker.wait(10) == EXIT_STORAGE
    ev = broker.storage_error
    assert ev and ev["node"] == "broker" and ev["errno"].startswith("ENOSPC"), ev
    assert re.search(r"orders-0/\d+\.(log|index\.tmp)$", ev["file"]), ev


@pytest.mark.timeout(90)
def test_campaign_on_a_full_disk_exits_2_naming_node_and_file(tiny_disk):
    out = tiny_disk("runs", "2m")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--mode", "at-least-once",
                        "--events", "200000", "--rate", "0", "--faults", "none", "--quiet", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=80)
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    m = re.search(r"(producer|broker|processor|sink) stopped on a storage error: "
                  r"(ENOSPC|SQLITE_FULL|EDQUOT)\b.* on (\S+)", lines[0])
    assert m, lines[0]
    assert elapsed < 30, f"took {elapsed:.1f} s"
    result = json.loads((out / "latest" / "result.json").read_text())
    assert result["complete"] is False
    manifest = json.loads((out / "latest" / "at-least-once" / "cluster.json").read_text())
    pids = [n["pid"] for n in manifest["nodes"].values()] + [l["pid"] for l in manifest["links"].values()]
    assert pids and not [p for p in pids if pid_alive(p)]
