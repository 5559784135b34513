"""The producer node as a real process against an in-process fake broker (loopback gRPC).

Each test injects one fault (a lost ACK, kill -9 with a batch in flight, fencing)
and checks the mode's producer-side promise in the broker's log and in the
history. Waits are on conditions: the fake broker's request condition or a
Status poll with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nodes.common.channels import insecure_channel
from nodes.pb import node_pb2, node_pb2_grpc
from nodes.producer.history import read_history
from nodes.producer.workload import generate
from producer_fake_broker import FakeBroker

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def broker():
    b = FakeBroker(partitions=4)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def status(address: str) -> dict:
    async with insecure_channel(address) as ch:
        resp = await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=5)
    return json.loads(resp.status_json)


async def wait_status(address: str, predicate, timeout: float = 30.0) -> dict:
    """Poll the Status RPC until ``predicate(status)``; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        st = await status(address)
        if predicate(st):
            return st
        assert loop.time() < deadline, f"status never satisfied the condition: {st}"
        await asyncio.sleep(0.02)   # poll interval, not synchronisation


def args(broker: FakeBroker, mode: str, *extra: str) -> list[str]:
    return ["--mode", mode, "--broker", broker.address, *extra]


async def test_at_least_once_retries_after_lost_ack(spawn, broker):
    orders = generate(7, 1000)
    target = orders[300].order_id
    broker.drop_reply_once = {target}
    p = await spawn("producer", args(broker, "at-least-once", "--seed", "7", "--count", "1000",
                                     "--ack-timeout-ms", "1000", "--retry-backoff-ms", "10"))
    st = await wait_status(p.address, lambda s: s["done"])
    assert st["position"] == 1000 and st["retries"] == 1 and st["given_up"] == 0
    assert st["producer_id"] is None
    # Every order reached the log; the lost-ACK batch was appended twice (at-least-once).
    counts = Counter(broker.all_orders())
    assert set(counts) == {o.order_id for o in orders}
    dup = set(broker.dropped[0].orders)
    assert {o for o, n in counts.items() if n > 1} == dup
    assert all(counts[o] == 2 for o in dup)
    hist = read_history(p.data_dir / "history.jsonl")
    ops = [(h["type"], h["value"]["attempt"]) for h in hist if target in h["value"]["orders"]]
    assert ops == [("invoke", 1), ("info", 1), ("invoke", 2), ("ok", 2)]
    info = next(h for h in hist if h["type"] == "info")
    assert info["error"].startswith("DEADLINE_EXCEEDED: ")
    assert [h["index"] for h in hist] == list(range(len(hist)))


async def test_exactly_once_retry_is_answered_as_duplicate(spawn, broker):
    orders = generate(3, 800)
    broker.drop_reply_once = {orders[450].order_id}
    p = await spawn("producer", args(broker, "exactly-once", "--seed", "3", "--count", "800",
                                     "--ack-timeout-ms", "1000", "--retry-backoff-ms", "10"))
    st = await wait_status(p.address, lambda s: s["done"])
    assert st["retries"] == 1 and st["producer_id"] == 0 and st["epoch"] == 0
    assert sorted(broker.all_orders()) == sorted(o.order_id for o in orders)   # each exactly once
    dropped = broker.dropped[0]
    resend = [r for r in broker.received if r.orders == dropped.orders]
    assert len(resend) == 2 and resend[1].duplicate
    assert resend[1].base_sequence == dropped.base_sequence
    assert resend[1].base_offset == dropped.base_offset
    # Sequences per partition are consecutive: base = sum of earlier batch sizes.
    for part in range(4):
        firsts = [r for r in broker.received if r.partition == part and not r.duplicate]
        expect = 0
        for r in firsts:
            assert r.base_sequence == expect
            expect += len(r.orders)
    state = json.loads((p.data_dir / "producer-state.json").read_text())
    assert state["position"] == 800
    assert sum(state["next_sequences"].values()) == 800


async def test_exactly_once_restart_resends_unacked_batch_with_same_sequences(spawn, broker):
    orders = generate(5, 1000)
    target = orders[520].order_id
    broker.drop_reply_once = {target}
    a = args(broker, "exactly-once", "--seed", "5", "--count", "1000", "--ack-timeout-ms", "60000")
    p = await spawn("producer", a)
    await broker.wait_for(lambda: broker.dropped)          # appended, ACK lost, producer waiting
    dropped = broker.dropped[0]
    p.kill()
    assert await p.wait(10) == -9
    first_hist = read_history(p.data_dir / "history.jsonl")
    await p.restart()
    st = await wait_status(p.address, lambda s: s["done"])
    assert st["incarnation"] == 2 and st["epoch"] == 1 and st["producer_id"] == 0
    assert sorted(broker.all_orders()) == sorted(o.order_id for o in orders)   # nothing twice
    again = [r for r in broker.received if r.orders == dropped.orders]
    assert len(again) == 2
    assert (again[1].base_sequence, again[1].duplicate, again[1].epoch) == (dropped.base_sequence, True, 1)
    hist = read_history(p.data_dir / "history.jsonl")
    assert hist[: len(first_hist)] == first_hist
    assert [h["index"] for h in hist] == list(range(len(hist)))
    oks = [h for h in hist if h["incarnation"] == 2 and h["type"] == "ok" and target in h["value"]["orders"]]
    assert len(oks) == 1 and oks[0]["duplicate"] is True
    assert oks[0]["offset"] == dropped.base_offset
    assert oks[0]["value"]["base_sequence"] == dropped.base_sequence


async def test_exactly_once_rebases_after_a_sequence_gap(spawn, broker):
    """The broker lost an ACKed batch: OUT_OF_RANGE, InitProducer (epoch bump), rebase, go on."""
    orders = generate(13, 1000)
    broker.lose_previous_at = {orders[600].order_id}
    p = await spawn("producer", args(broker, "exactly-once", "--seed", "13", "--count", "1000",
                                     "--retry-backoff-ms", "10"))
    st = await wait_status(p.address, lambda s: s["done"])
    assert st["epoch"] == 1 and st["position"] == 1000
    lost = set(broker.lost[0].orders)
    counts = Counter(broker.all_orders())
    assert set(counts) == {o.order_id for o in orders} - lost   # only the broker's loss is missing
    assert max(counts.values()) == 1
    hist = read_history(p.data_dir / "history.jsonl")
    gap = [h for h in hist if h["type"] == "fail"]
    assert len(gap) == 1 and gap[0]["error"].startswith("OUT_OF_RANGE: sequence gap")
    rebased = [h for h in hist if h["type"] == "ok" and h["value"]["orders"] == gap[0]["value"]["orders"]]
    assert rebased[-1]["value"]["base_sequence"] == broker.lost[0].base_sequence


async def test_at_most_once_never_resends_in_flight_batch_after_kill(spawn, broker):
    orders = generate(11, 2000)
    broker.drop_reply_once = {orders[0].order_id}   # the first batch's reply never arrives
    a = args(broker, "at-most-once", "--seed", "11", "--count", "2000", "--ack-timeout-ms", "60000",
             "--rate", "1000")
    p = await spawn("producer", a)
    await broker.wait_for(lambda: broker.dropped and len(broker.received) >= 12)
    assert all(not r.duplicate for r in broker.received)
    p.kill()
    assert await p.wait(10) == -9
    in_flight = broker.dropped[0].orders
    persisted = json.loads((p.data_dir / "producer-state.json").read_text())["position"]
    assert persisted >= 100                                  # the position passed the in-flight batch
    await p.restart()
    st = await wait_status(p.address, lambda s: s["done"])
    assert st["position"] == 2000 and st["retries"] == 0 and st["incarnation"] == 2
    counts = Counter(broker.all_orders())
    assert max(counts.values()) == 1                         # never twice
    assert all(counts[o] == 1 for o in in_flight)            # the in-flight batch was not re-sent
    # Orders of the incarnation-2 sends all start at the persisted position.
    hist = read_history(p.data_dir / "history.jsonl")
    ids2 = [o for h in hist if h["incarnation"] == 2 and h["type"] == "invoke" for o in h["value"]["orders"]]
    assert ids2 and min(ids2) == orders[persisted].order_id
    assert not any(h["value"]["attempt"] > 1 for h in hist)
    # The in-flight send of incarnation 1 has an invoke and no completion (killed).
    first = [h for h in hist if h["incarnation"] == 1 and in_flight[0] in h["value"]["orders"]]
    assert [h["type"] for h in first] == ["invoke"]


async def test_fenced_producer_exits_1(spawn, broker):
    broker.fence_all = True
    p = await spawn("producer", args(broker, "exactly-once", "--count", "100"))
    assert await p.wait(20) == 1
    hist = read_history(p.data_dir / "history.jsonl")
    # One batch, split over 4 partitions: 4 invokes, then stale-epoch fails; a partition
    # batch still waiting when the first failure stopped the producer is "info" (cancelled).
    assert [h["type"] for h in hist[:4]] == ["invoke"] * 4
    done = hist[4:]
    assert len(done) == 4 and {h["type"] for h in done} <= {"fail", "info"}
    assert done[0]["type"] == "fail" and done[0]["error"].startswith("FAILED_PRECONDITION: stale epoch")
    assert all(h["error"].startswith(("FAILED_PRECONDITION: stale epoch", "CANCELLED"))
               for h in done)
    assert not any(h["value"]["attempt"] > 1 for h in hist)   # never retried
    assert "stale epoch" in p.stderr_tail()


async def test_restart_with_another_workload_exits_2(spawn, broker):
    p = await spawn("producer", args(broker, "at-least-once", "--seed", "1", "--count", "200"))
    await wait_status(p.address, lambda s: s["done"])
    assert await p.stop() == 0
    q = await spawn("producer", args(broker, "at-least-once", "--seed", "2", "--count", "200"),
                    data_dir=p.data_dir, name="producer-2", start=False)
    r = subprocess.run(q.command(), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "belongs to workload" in r.stderr and "seed=1" in r.stderr and "seed=2" in r.stderr


@pytest.mark.parametrize("bad", [["--batch-size", "0"], ["--mode", "twice"], ["--rate", "-1"],
                                 ["--frobnicate"]])
def test_bad_flag_exits_2(tmp_path, bad):
    cmd = [sys.executable, "-m", "nodes.producer", "--data-dir", str(tmp_path),
           "--broker", "127.0.0.1:1", *bad]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""


def test_missing_broker_flag_exits_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nodes.producer", "--data-dir", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--broker" in r.stderr
