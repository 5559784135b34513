"""Hypothesis strategies for any protobuf request, and real node processes for the wire fuzz.

``request_strategy(descriptor)`` draws messages field by field from the descriptor:
integers at and around the type's extremes, floats including NaN and infinities,
strings empty, short, random, past the documented limits (300 bytes, 1 MiB),
binary values, nested messages, maps, and repeated fields short or huge (past the
1,024-entry limits, built by repetition so drawing stays cheap).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf.descriptor import FieldDescriptor as FD
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent

_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1), FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1), FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1), FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1), FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1), FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_WORDS = ["", "orders", "processor", "a", "order-1", "Produce", "/testbed.v1.Sink/Apply", "Apply",
          "UNAVAILABLE", "INTERNAL", "\x00", "é" * 10, "processor-sink", "request", "response",
          "processor.before-checkpoint", "partition", "order_id",
          # every proxy fault kind, so the other fields of a FaultSpec get validated too
          "drop-request", "drop-response", "delay", "duplicate", "error", "partition", "late", "reorder"]


def _scalar(f, small: bool = False) -> st.SearchStrategy:
    if f.type in _INT_RANGES:
        lo, hi = _INT_RANGES[f.type]
        return st.one_of(st.sampled_from([0, 1, -1 if lo < 0 else 2, lo, hi, lo + 1, hi - 1]),
                         st.integers(lo, hi), st.integers(-5, 5).map(lambda v: max(lo, v)))
    if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64 if f.type == FD.TYPE_DOUBLE
                                   else 32), st.sampled_from([0.0, 0.5, 1.0, -1.0]))
    if f.type == FD.TYPE_BOOL:
        return st.booleans()
    if f.type == FD.TYPE_STRING:
        if small:   # elements of huge lists: a 20,000-entry list of 1 MiB strings is 20 GB
            return st.one_of(st.sampled_from(_WORDS), st.text(max_size=8))
        return st.one_of(st.sampled_from(_WORDS), st.text(max_size=24),
                         st.sampled_from([300, 1 << 20]).map(lambda n: "x" * n))
    if f.type == FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=48), st.just(b""))
    if f.type == FD.TYPE_ENUM:
        return st.integers(0, 3)
    raise TypeError(f"unsupported field type {f.type}")


def _repeated(f) -> bool:
    rep = getattr(f, "is_repeated", None)
    return rep if rep is not None else f.label == FD.LABEL_REPEATED


def _field(f, depth: int, small: bool = False) -> st.SearchStrategy:
    if f.type == FD.TYPE_MESSAGE:
        if f.message_type.GetOptions().map_entry:
            k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            return st.dictionaries(_scalar(k, small), _scalar(v, small), max_size=3)
        one = request_strategy(f.message_type, depth + 1, small)
        tiny = request_strategy(f.message_type, depth + 1, True)
    else:
        one, tiny = _scalar(f, small), _scalar(f, True)
    if not _repeated(f):
        return one
    huge = st.tuples(tiny, st.sampled_from([1025, 20_000])).map(lambda t: [t[0]] * t[1])
    return st.one_of(st.lists(one, max_size=4), huge) if depth == 0 else st.lists(one, max_size=3)


def request_strategy(desc, depth: int = 0, small: bool = False) -> st.SearchStrategy:
    """Messages of type ``desc`` (a protobuf Descriptor), each field set or left unset."""
    from google.protobuf import message_factory
    cls = message_factory.GetMessageClass(desc)
    if depth > 2:
        return st.just(cls())
    fields = {f.name: st.one_of(st.none(), _field(f, depth, small)) for f in desc.fields}

    def build(values: dict):
        msg = cls()
        for name, v in values.items():
            if v is None:
                continue
            f = desc.fields_by_name[name]
            target = getattr(msg, name) if (_repeated(f) or f.type == FD.TYPE_MESSAGE) else None
            if f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
                target.update(v)
            elif _repeated(f) and f.type == FD.TYPE_MESSAGE:
                target.extend(v)
            elif _repeated(f):
                target.extend(v)
            elif f.type == FD.TYPE_MESSAGE:
                target.CopyFrom(v)
            else:
                setattr(msg, name, v)
        return msg

    return st.fixed_dictionaries(fields).map(build)


class Node:
    """One node process started with ``python -m nodes.<module>``; ended by pid."""

    def __init__(self, module: str, data_dir: Path, args: list[str]) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr = open(data_dir / "stderr.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", f"nodes.{module}", "--listen", "127.0.0.1:0",
                                      "--data-dir", str(data_dir), *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=self.stderr,
                                     env={**os.environ, "TESTBED_PARENT_PID": str(os.getpid())})
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{module} did not start: {(data_dir / 'stderr.log').read_text()[-500:]}")
        self.address = json.loads(line)["address"]
        self.channel = grpc.insecure_channel(self.address)
        self.wait_serving()

    def health(self) -> int:
        try:
            return health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return -1

    def wait_serving(self, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while self.health() != health_pb2.HealthCheckResponse.SERVING:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node at {self.address} never SERVING (exit {self.proc.poll()})")
            time.sleep(0.05)

    def stop(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc.stdout.close()
        self.stderr.close()
