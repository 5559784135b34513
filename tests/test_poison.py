"""Poison messages (issue 11): a record the sink cannot take is dead-lettered, the
pipeline drains, and the audit reports the record by its id.

Real node processes on loopback (no proxies: the faults here are in the data).
Each test fails on the code before issue 11: the processor retried the sink's
INVALID_ARGUMENT forever (empty value), or the sink stored an overflowing
balance as a float.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness.checker import check, load_run
from harness.cluster import Cluster, ClusterConfig
from nodes.common.channels import insecure_channel
from nodes.common.limits import INT64_MAX
from nodes.common.partitioning import partition_for
from nodes.pb import broker_pb2 as bpb
from nodes.pb import broker_pb2_grpc
from nodes.sink.schema import connect

pytestmark = pytest.mark.timeout(90)


def write_workload(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path.write_text("".join(json.dumps({"order_id": o, "account": a, "amount_cents": m}) + "\n"
                            for o, a, m in rows))
    return path


def small_workload(n: int = 60) -> list[tuple[str, str, int]]:
    return [(f"order-{i:04d}", f"acct-{i % 5}", 100 + i) for i in range(n)]


async def run_cluster(tmp_path: Path, mode: str, sink: str | None, workload: Path, *,
                      before_producer=None) -> tuple[Cluster, dict]:
    cluster = Cluster(ClusterConfig(mode=mode, sink_strategy=sink, workload_file=str(workload),
                                    batch_size=20, partitions=2, proxies=False), tmp_path)
    try:
        await cluster.start(start_producer=False)
        if before_producer is not None:
            await before_producer(cluster)
        await cluster.start_producer()
        await cluster.wait_drained(timeout_s=40)
        final = await cluster.status("processor")
        (tmp_path / "processor" / "final-status.json").write_text(json.dumps(final, allow_nan=False))
    finally:
        await cluster.stop()
    return cluster, final


async def produce_raw(address: str, partition: int, values: list[bytes]) -> int:
    async with insecure_channel(address) as ch:
        r = await broker_pb2_grpc.BrokerStub(ch).Produce(bpb.ProduceRequest(
            topic="orders", partition=partition, producer_id=-1,
            records=[bpb.Record(key=b"poison", value=v) for v in values]), timeout=10)
    return r.base_offset


CASES = [("at-most-once", None), ("at-least-once", None), ("exactly-once", "idempotent"),
         ("exactly-once", "transactional")]


@pytest.mark.parametrize("mode,sink", CASES, ids=[f"{m}-{s}" if s else m for m, s in CASES])
async def test_empty_and_garbage_values_are_dead_lettered_and_the_pipeline_drains(tmp_path, mode, sink):
    offsets: dict[str, int] = {}

    async def poison(cluster: Cluster) -> None:
        addr = cluster.nodes["broker"].address
        offsets["empty"] = await produce_raw(addr, 0, [b""])                   # decodes to order_id ""
        offsets["garbage"] = await produce_raw(addr, 1, [b"\xff\xff\xff\x07"])  # does not decode

    workload = write_workload(tmp_path / "w.jsonl", small_workload())
    _, final = await run_cluster(tmp_path / "run", mode, sink, workload, before_producer=poison)
    assert final["dead_lettered"] == 2 and final["dead_letter_pending"] == 0
    report = check(load_run(tmp_path / "run"))
    dead = report.anomalies["dead-lettered"]
    assert dead.count == 2
    assert sorted(dead.examples) == sorted([f"p0@{offsets['empty']}", f"p1@{offsets['garbage']}"])
    assert dead.extra["poison"] == 2 and dead.extra["workload_orders"] == 0
    assert dead.by_hop == {"broker->sink": 2}
    assert report.count("lost") == 0 and report.count("duplicated") == 0
    assert report.verdict == ("held" if mode == "exactly-once" else "not-exercised")
    assert any("2 poison record(s) dead-lettered" in r for r in report.reasons), report.reasons
    with sqlite3.connect(tmp_path / "run" / "sink" / "sink.db") as con:
        reasons = dict(con.execute('SELECT partition, reason FROM dead_letters'))
    assert "empty order_id" in reasons[0] and "undecodable" in reasons[1]


async def test_an_order_overflowing_a_sink_balance_is_dead_lettered_and_snapshots_still_work(tmp_path):
    """The sink already holds INT64_MAX - 1000 for acct-big (the processor's state does not
    know it): the Apply batch holding order-big is refused with INVALID_ARGUMENT; the
    processor splits the batch until order-big is alone and dead-letters it with its
    partition and offset; the rest is applied; the stored balance stays an exact integer."""
    run = tmp_path / "run"
    (run / "sink").mkdir(parents=True)
    con = connect(run / "sink" / "sink.db")
    con.execute("INSERT INTO balances VALUES ('acct-big', ?)", (INT64_MAX - 1000,))
    con.close()
    rows = small_workload(40)
    rows.insert(17, ("order-big", "acct-big", 5000))
    rows.insert(30, ("order-small", "acct-big", 10))
    workload = write_workload(tmp_path / "w.jsonl", rows)
    _, final = await run_cluster(run, "at-least-once", None, workload)
    assert final["dead_lettered"] == 1 and final["sink_refused"] == 1
    report = check(load_run(run))
    dead = report.anomalies["dead-lettered"]
    assert dead.examples == ["order-big"] and dead.extra["workload_orders"] == 1
    # A workload order set aside IS loss: reported as lost, the promise broken.
    assert report.anomalies["lost"].examples == ["order-big"] and report.verdict == "broken"
    with sqlite3.connect(run / "sink" / "sink.db") as c2:
        bal, typ = c2.execute("SELECT balance_cents, typeof(balance_cents) FROM balances "
                              "WHERE account = 'acct-big'").fetchone()
        (part, off), = c2.execute('SELECT partition, "offset" FROM dead_letters').fetchall()
    assert (bal, typ) == (INT64_MAX - 1000 + 10, "integer")
    assert part == partition_for("acct-big", 2) and off >= 0


async def test_an_order_overflowing_the_operator_state_is_dead_lettered(tmp_path):
    """An order of INT64_MAX cents, produced straight to the broker (a workload file may
    not hold it: --workload refuses |amount| > 10^12), then orders of the workload on the
    same account: the one that would overflow the processor's operator state is
    dead-lettered, the state stays an exact integer, the rest is applied."""
    from nodes.pb import events_pb2

    async def big(cluster: Cluster) -> None:
        order = events_pb2.Order(order_id="order-max", account="acct-x", amount_cents=INT64_MAX)
        await produce_raw(cluster.nodes["broker"].address, partition_for("acct-x", 2),
                          [order.SerializeToString()])

    rows = small_workload(30) + [("order-over", "acct-x", 1), ("order-after", "acct-x", -5)]
    workload = write_workload(tmp_path / "w.jsonl", rows)
    _, final = await run_cluster(tmp_path / "run", "exactly-once", "idempotent", workload, before_producer=big)
    assert final["state"]["acct-x"] == INT64_MAX - 5
    report = check(load_run(tmp_path / "run"))
    assert report.anomalies["dead-lettered"].examples == ["order-over"]
    assert report.anomalies["lost"].examples == ["order-over"]
    assert report.anomalies["unexpected"].examples == ["order-max"]  # never produced by the producer
    assert report.verdict == "broken"
