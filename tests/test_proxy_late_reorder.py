"""late, reorder, delayed duplicate and match: a real proxy process in front of a fake upstream.

The fake upstream (an in-process grpc.aio server) answers every method with an
empty message and records what it received and when (time.monotonic(), the
same clock as the test's callers), so a test can tell what the upstream saw,
in which order, relative to what the caller saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from harness.cli_fault import fault
from harness.proxy_client import ProxyControlClient
from nodes.common.channels import insecure_channel
from nodes.pb import broker_pb2, broker_pb2_grpc, sink_pb2
from nodes.proxy.history import read_history
from tests.proxy_support import apply, order

pytestmark = pytest.mark.timeout(60)
WAIT_S = 10.0


class FakeUpstream(grpc.GenericRpcHandler):
    """Any ``/testbed.v1.*`` unary method: records (method, request, time), answers b""."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, float]] = []
        self.changed = asyncio.Event()
        self.server: grpc.aio.Server | None = None
        self.address = ""

    def service(self, details):
        method = details.method

        async def handle(request: bytes, context) -> bytes:
            self.seen.append((method, request, time.monotonic()))
            self.changed.set()
            return b""
        return grpc.unary_unary_rpc_method_handler(handle)

    async def start(self) -> "FakeUpstream":
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((self,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        return self

    async def wait_for(self, n: int) -> None:
        """Until at least ``n`` requests arrived (bounded by WAIT_S)."""
        async def loop():
            while len(self.seen) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), WAIT_S)

    def order_ids(self) -> list[str]:
        return [sink_pb2.WriteRequest.FromString(r).orders[0].order_id for _, r, _ in self.seen]


@pytest.fixture
async def upstream():
    up = await FakeUpstream().start()
    try:
        yield up
    finally:
        await up.server.stop(None)


async def proxy_for(spawn, upstream: FakeUpstream, link: str = "processor-sink"):
    return await spawn("proxy", ["--link", link, "--upstream", upstream.address, "--seed", "3"])


def records(proxy, action: str | None = None) -> list[dict]:
    out = [r for r in read_history(Path(proxy.data_dir) / "faults.jsonl") if r["type"] == "fault"]
    return [r for r in out if action is None or r["action"] == action]


async def wait_record(proxy, action: str) -> dict:
    """The first faults.jsonl record with ``action`` (polls the file, bounded by WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = records(proxy, action)
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {action!r} record in faults.jsonl: {records(proxy)}")


async def code_of(coro) -> tuple[grpc.StatusCode, float]:
    """(status code, time.monotonic() when the caller got it)."""
    try:
        await coro
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as e:
        code = e.code()
    return code, time.monotonic()


async def test_late_caller_times_out_then_upstream_executes_it(spawn, upstream):
    proxy = await proxy_for(spawn, upstream)
    async with ProxyControlClient(proxy.address) as px:
        fid = await px.add("late", method="Apply", hold_ms=400, count=1)
    code, t_err = await code_of(apply(proxy.address, 1, timeout_s=0.5))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert upstream.seen == []  # the caller has moved on; the request is still held
    await upstream.wait_for(1)
    (_, _, t_up), = upstream.seen
    assert t_up - t_err >= 0.3, (t_up, t_err)  # delivered hold_ms after the caller's deadline
    delivered = await wait_record(proxy, "late-delivered")
    [fired] = records(proxy, "held-late")
    assert (fired["fault_id"], fired["call"], fired["hold_ms"]) == (fid, 1, 400)
    assert (delivered["call"], delivered["outcome"], delivered["released_by"]) == (1, "OK", "hold")
    assert delivered["held_ms"] >= 850
    # count=1: the next call goes straight through.
    assert (await code_of(apply(proxy.address, 2)))[0] == grpc.StatusCode.OK
    assert upstream.order_ids() == [order(1).order_id, order(2).order_id]


async def test_late_hold_ends_on_remove_with_delivery(spawn, upstream):
    proxy = await proxy_for(spawn, upstream)
    async with ProxyControlClient(proxy.address) as px:
        fid = await px.add("late", method="Apply", hold_ms=60_000)
        code, _ = await code_of(apply(proxy.address, 1, timeout_s=0.3))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and upstream.seen == []
        await px.remove(fid)  # answers once the held request came back from upstream
        assert upstream.order_ids() == [order(1).order_id]
        assert (await px.stats())["methods"]["/testbed.v1.Sink/Apply"]["held"] == 1
    [rec] = records(proxy, "late-delivered")
    assert (rec["released_by"], rec["outcome"]) == ("release", "OK")


async def test_late_without_deadline_answers_after_hold(spawn, upstream):
    proxy = await proxy_for(spawn, upstream)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("late", method="Apply", hold_ms=300)
    t0 = time.monotonic()
    async with insecure_channel(proxy.address) as ch:
        code, t_err = await code_of(ch.unary_unary("/testbed.v1.Sink/Apply")(
            sink_pb2.WriteRequest(orders=[order(1)]).SerializeToString()))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and t_err - t0 >= 0.25
    await upstream.wait_for(1)
    assert upstream.seen[0][2] - t_err >= 0.25


async def test_reorder_upstream_sees_next_call_first(spawn, upstream):
    proxy = await proxy_for(spawn, upstream)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("reorder", method="Apply", hold_ms=5000, count=1)
    first = asyncio.ensure_future(code_of(apply(proxy.address, 1, timeout_s=8)))
    held = await wait_record(proxy, "held-for-reorder")  # call 1 is at the proxy, held
    assert held["call"] == 1 and upstream.seen == []
    code2, _ = await code_of(apply(proxy.address, 2, timeout_s=8))
    code1, _ = await first
    assert (code1, code2) == (grpc.StatusCode.OK, grpc.StatusCode.OK)
    assert upstream.order_ids() == [order(2).order_id, order(1).order_id]
    rec = await wait_record(proxy, "reordered")
    assert (rec["call"], rec["after_call"]) == (1, 2) and rec["held_ms"] < 5000


async def test_reorder_without_next_call_forwards_after_max_hold(spawn, upstream):
    proxy = await proxy_for(spawn, upstream)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("reorder", method="Apply", hold_ms=200, count=1)
    code, _ = await code_of(apply(proxy.address, 1, timeout_s=5))
    assert code == grpc.StatusCode.OK and upstream.order_ids() == [order(1).order_id]
    rec = await wait_record(proxy, "reorder-timeout")
    assert rec["call"] == 1 and rec["held_ms"] >= 200


async def test_duplicate_with_delay_copy_arrives_after_the_answer(spawn, upstream):
    proxy = await proxy_for(spawn, upstream)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("duplicate", method="Apply", delay_ms=300, count=1)
    t0 = time.monotonic()
    code, t_ans = await code_of(apply(proxy.address, 1, timeout_s=5))
    assert code == grpc.StatusCode.OK and t_ans - t0 < 0.3  # the answer was not delayed
    assert len(upstream.seen) == 1
    await upstream.wait_for(2)
    assert upstream.order_ids() == [order(1).order_id] * 2
    assert upstream.seen[1][2] - t_ans >= 0.25
    rec = await wait_record(proxy, "duplicate-delivered")
    assert rec["outcome"] == "OK" and rec["delay_ms"] >= 300


async def produce(address: str, partition: int) -> grpc.StatusCode:
    async with insecure_channel(address) as ch:
        code, _ = await code_of(broker_pb2_grpc.BrokerStub(ch).Produce(
            broker_pb2.ProduceRequest(topic="orders", partition=partition), timeout=0.5))
    return code


async def commit(address: str, offsets: dict[int, int]) -> grpc.StatusCode:
    async with insecure_channel(address) as ch:
        code, _ = await code_of(broker_pb2_grpc.BrokerStub(ch).CommitOffset(
            broker_pb2.CommitOffsetRequest(group="g", topic="orders", offsets=[
                broker_pb2.PartitionOffset(partition=p, offset=o) for p, o in offsets.items()]),
            timeout=2))
    return code


async def test_match_hits_only_one_partition(spawn, upstream):
    proxy = await proxy_for(spawn, upstream, link="producer-broker")
    async with ProxyControlClient(proxy.address) as px:
        await px.add("drop-request", method="Produce", match={"partition": 2})
        await px.add("error", method="CommitOffset", match={"partition": "2", "group": "g"})
        codes = [await produce(proxy.address, p) for p in range(4)]
        commits = [await commit(proxy.address, {0: 5, 1: 5}), await commit(proxy.address, {1: 6, 2: 7})]
        faults = {f["fault_id"]: f for f in await px.list()}
    assert codes == [grpc.StatusCode.OK] * 2 + [grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.OK]
    assert commits == [grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE]
    produced = [broker_pb2.ProduceRequest.FromString(r).partition
                for m, r, _ in upstream.seen if m.endswith("/Produce")]
    assert produced == [0, 1, 3]
    assert [(r["method"].rsplit("/", 1)[1], r["call"]) for r in records(proxy)] == \
        [("Produce", 3), ("CommitOffset", 6)]
    assert (faults["f1"]["matched"], faults["f2"]["matched"]) == (1, 1)
    assert faults["f1"]["spec"]["match"] == {"partition": "2"}


async def test_unknown_match_field_is_refused_naming_the_valid_ones(spawn, upstream, tmp_path):
    proxy = await proxy_for(spawn, upstream, link="processor-broker")
    async with ProxyControlClient(proxy.address) as px:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await px.add("drop-request", method="CommitOffset", match={"partitoin": 2})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("match: unknown field 'partitoin'")
        assert "generation_id, group, member_id, offset, partition, topic" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await px.add("drop-request", method="Fetch", match={"partition": "two"})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await px.add("late", method="CommitOffset")
        assert err.value.details().startswith("hold_ms:")
        assert await px.list() == []
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"links": {"processor-broker": {
        "proxy": proxy.address, "upstream": upstream.address, "pid": proxy.pid}}}))
    runner = CliRunner()
    for args, text in ((["--match", "partitoin=2"], "valid fields: generation_id, group, member_id, offset, partition, topic"),
                       (["--match", "partition"], "expected FIELD=VALUE")):
        r = await asyncio.to_thread(runner.invoke, fault, [
            "--cluster", str(cluster), "add", "late", "--link", "processor-broker",
            "--method", "CommitOffset", "--hold-ms", "800", *args])
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.output.strip().splitlines() if not ln.startswith("cluster: ")]
        assert len(lines) == 1 and text in r.output, r.output  # "cluster: PATH" says which cluster
    r = await asyncio.to_thread(runner.invoke, fault, [
        "--cluster", str(cluster), "add", "late", "--link", "processor-broker",
        "--method", "CommitOffset", "--hold-ms", "800", "--match", "partition=2"])
    assert r.exit_code == 0 and r.output.strip().splitlines()[-1] == "f1 late on processor-broker", r.output
    r = await asyncio.to_thread(runner.invoke, fault, ["--cluster", str(cluster), "list"])
    assert "hold 800 ms partition=2" in r.output, r.output


def test_requests_are_decoded_only_for_a_match_fault_on_the_method(tmp_path, monkeypatch):
    from nodes.proxy import match
    from nodes.proxy.history import FaultHistory
    from nodes.proxy.table import FaultTable, make_spec

    decoded: list[str] = []
    real = match._MethodMatcher.matches
    monkeypatch.setattr(match._MethodMatcher, "matches",
                        lambda self, request: decoded.append(request) or real(self, request))
    link = "producer-broker"
    table = FaultTable(link, 1, FaultHistory(tmp_path, link))
    table.add(make_spec(link, kind="drop-request", method="Produce", after_calls=100))
    table.add(make_spec(link, kind="error", method="CommitOffset", match={"partition": "2"}))
    produce = broker_pb2.ProduceRequest(partition=2).SerializeToString()
    assert table.select("/testbed.v1.Broker/Produce", 1, produce) == [] and decoded == []
    hit = broker_pb2.CommitOffsetRequest(offsets=[broker_pb2.PartitionOffset(partition=2)])
    [(af, _)] = table.select("/testbed.v1.Broker/CommitOffset", 2, hit.SerializeToString())
    assert af.fault_id == "f2" and len(decoded) == 1
    assert table.select("/testbed.v1.Broker/CommitOffset", 3, b"\xff\xff") == []  # undecodable


def test_match_rules_on_sink_requests():
    from nodes.proxy.fault import InvalidFault
    from nodes.proxy.match import Matcher

    link = "processor-sink"
    txn = Matcher(link, "/testbed.v1.Sink/Commit", [("transaction_id", "proc-i1-c3")])
    req = sink_pb2.TransactionRequest(transaction_id="proc-i1-c3").SerializeToString()
    assert txn.matches("/testbed.v1.Sink/Commit", req)
    assert not txn.matches("/testbed.v1.Sink/Commit", sink_pb2.TransactionRequest(
        transaction_id="proc-i1-c4").SerializeToString())
    # "" = every method: only the methods whose request has the field can match.
    acct = Matcher(link, "", [("account", "acct-3")])
    write = sink_pb2.WriteRequest(orders=[order(1), order(3)]).SerializeToString()  # acct-1, acct-3
    assert acct.matches("/testbed.v1.Sink/Apply", write) and acct.matches("/testbed.v1.Sink/Upsert", write)
    assert not acct.matches("/testbed.v1.Sink/Commit", req)
    assert not acct.matches("/testbed.v1.Sink/Apply", sink_pb2.WriteRequest(orders=[order(1)]).SerializeToString())
    with pytest.raises(InvalidFault, match="valid fields: account, amount_cents, epoch, member_id, order_id"):
        Matcher(link, "/testbed.v1.Sink/Apply", [("acount", "x")])


async def test_schedule_step_passes_hold_and_match_through(spawn, upstream):
    """A schedule step ``{"f": "link", "fault": {"kind": "late", "hold_ms", "match"}}``
    reaches the proxy through LinkNemesis; removing it at ``for_ms`` delivers the held call."""
    from types import SimpleNamespace

    from harness.nemesis.link import LinkNemesis

    proxy = await proxy_for(spawn, upstream)
    px = SimpleNamespace(address=proxy.address, running=True)
    proxies = {"processor-sink": px}
    nemesis = LinkNemesis(SimpleNamespace(cluster=SimpleNamespace(
        proxies=proxies, link_proxies=lambda link: {link: proxies[link]} if link in proxies else {})))
    step = {"at": 0, "f": "link", "link": "processor-sink", "for_ms": 3000,
            "fault": {"kind": "late", "method": "Apply", "hold_ms": 60_000, "after_calls": 1,
                      "match": {"account": order(2).account}}}
    armed = asyncio.ensure_future(nemesis.invoke(step))
    await wait_control(proxy, "add")
    codes = [(await code_of(apply(proxy.address, i, timeout_s=0.5)))[0] for i in (1, 2)]
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED]
    assert upstream.order_ids() == [order(1).order_id]
    result = await armed
    assert (result["matched"], result["fired"]) == (1, 1)
    assert upstream.order_ids() == [order(1).order_id, order(2).order_id]  # delivered on removal
    [rec] = records(proxy, "late-delivered")
    assert rec["call"] == 2 and rec["released_by"] == "release"


async def wait_control(proxy, event: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if any(r["type"] == "control" and r["event"] == event
               for r in read_history(Path(proxy.data_dir) / "faults.jsonl")):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no control {event!r} in faults.jsonl")


async def test_proxy_stop_cancels_a_held_late_request_and_records_it(spawn, upstream):
    proxy = await proxy_for(spawn, upstream)
    async with ProxyControlClient(proxy.address) as px:
        await px.add("late", method="Apply", hold_ms=60_000)
    assert (await code_of(apply(proxy.address, 1, timeout_s=0.3)))[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await proxy.stop() == 0
    assert upstream.seen == []
    [rec] = records(proxy, "late-cancelled")
    assert rec["call"] == 1 and rec["follow_up"] is True
