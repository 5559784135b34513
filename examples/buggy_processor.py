"""A processor with the classic at-least-once bug: offsets committed BEFORE the sink's ACK.

Written against the contract alone (docs/contract.md), with only the generated
stubs (``nodes.pb``) and the gRPC library. It is examples/alo_processor.py with
two steps swapped, the way Kafka's ``enable.auto.commit=true`` (commit on the
next poll, whatever became of the records) or a hand-written "commit, then
process" loop does it::

    records = Fetch(from my positions)
    CommitOffset(next offsets), retried until OK   # BUG: before the sink has the orders
    Apply(orders) to the sink, retried until OK

Without a crash it looks correct: every Apply is retried until the sink
acknowledges it, so a lost request or a lost ACK only makes a duplicate. The
bug shows under a crash between the two steps: the broker already holds the
new offsets, the sink never got the orders, and the restarted processor starts
from the committed offsets, past them. Those orders are ``lost`` at the
broker->sink hop: at-least-once broken. The testbed catches it with a kill -9
while its Apply requests are being dropped (examples/kill-during-sink-write.json),
and ``./run.sh check-node --processor-cmd ...`` in its kill -9 step::

    ./run.sh campaign --mode at-least-once --events 2000 --schedule examples/kill-during-sink-write.json \
        --processor-cmd ".venv/bin/python examples/buggy_processor.py"

What it serves: the standard gRPC health service; no NodeControl. SIGTERM:
stop after the current batch, exit 0. Exit 2: a missing setting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nodes.pb import broker_pb2, broker_pb2_grpc, sink_pb2, sink_pb2_grpc
from nodes.pb.events_pb2 import Order

TOPIC = "orders"
RPC_TIMEOUT_S = 2.0      # broker calls
SINK_TIMEOUT_S = 1.0     # each Apply attempt
FETCH_WAIT_MS = 500      # Fetch long-poll
NO_RETRIES = [("grpc.enable_retries", 0)]   # every retry is ours, explicit


def settings(argv: list[str]) -> argparse.Namespace:
    """Flags, each defaulting to its TESTBED_* environment variable (the contract gives both)."""
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default=env("TESTBED_LISTEN"))
    ap.add_argument("--data-dir", default=env("TESTBED_DATA_DIR"))
    ap.add_argument("--mode", default=env("TESTBED_MODE", "at-least-once"))
    ap.add_argument("--broker", default=env("TESTBED_BROKER"))
    ap.add_argument("--sink", default=env("TESTBED_SINK"))
    ap.add_argument("--group", default=env("TESTBED_GROUP", "processor"))
    args, _unknown = ap.parse_known_args(argv)   # ignore settings this node does not use
    missing = [k for k in ("listen", "broker", "sink") if not getattr(args, k)]
    if missing:
        print(f"buggy_processor: error: missing --{', --'.join(missing)}", file=sys.stderr)
        sys.exit(2)
    return args


async def retry(call, what: str):
    """Await ``call()`` until it succeeds; back off 50 ms .. 1 s between attempts."""
    attempt = 0
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            attempt += 1
            print(f"buggy_processor: {what} failed ({e.code().name}), retry {attempt}", file=sys.stderr)
            await asyncio.sleep(min(0.05 * 2 ** min(attempt - 1, 5), 1.0))


async def consume(args: argparse.Namespace, ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with grpc.aio.insecure_channel(args.broker, options=NO_RETRIES) as bch, \
            grpc.aio.insecure_channel(args.sink, options=NO_RETRIES) as sch:
        broker, sink = broker_pb2_grpc.BrokerStub(bch), sink_pb2_grpc.SinkStub(sch)
        listing = await retry(lambda: broker.ListOffsets(broker_pb2.ListOffsetsRequest(topic=TOPIC),
                                                         timeout=RPC_TIMEOUT_S), "ListOffsets")
        committed = await retry(lambda: broker.FetchCommittedOffset(
            broker_pb2.FetchCommittedOffsetRequest(group=args.group, topic=TOPIC), timeout=RPC_TIMEOUT_S),
            "FetchCommittedOffset")
        positions = {p: 0 for p in range(listing.partition_count)}
        positions.update({po.partition: po.offset for po in committed.offsets})
        ready.set()
        while not stop.is_set():
            req = broker_pb2.FetchRequest(topic=TOPIC, max_records=500, max_wait_ms=FETCH_WAIT_MS, partitions=[
                broker_pb2.PartitionOffset(partition=p, offset=o) for p, o in sorted(positions.items())])
            try:
                resp = await broker.Fetch(req, timeout=RPC_TIMEOUT_S + FETCH_WAIT_MS / 1000)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)   # positions unchanged: the same records come again
                continue
            orders, nxt = [], dict(positions)
            for pr in resp.partitions:
                for rec in pr.records:
                    if rec.offset < nxt[pr.partition]:
                        continue
                    orders.append(Order.FromString(rec.value))
                    nxt[pr.partition] = rec.offset + 1
            if not orders:
                continue
            # THE BUG: the offsets first ("we got them, they are as good as processed") ...
            commit = broker_pb2.CommitOffsetRequest(group=args.group, topic=TOPIC, offsets=[
                broker_pb2.PartitionOffset(partition=p, offset=o) for p, o in sorted(nxt.items())])
            await retry(lambda: broker.CommitOffset(commit, timeout=RPC_TIMEOUT_S), "CommitOffset")
            # ... then the sink. A crash here: the broker says done, the sink never saw them.
            write = sink_pb2.WriteRequest(orders=orders)
            await retry(lambda: sink.Apply(write, timeout=SINK_TIMEOUT_S), "Apply")
            positions = nxt


async def watch_parent(stop: asyncio.Event) -> None:
    """Stop when the harness that started us is gone (TESTBED_PARENT_PID no longer exists;
    not "is no longer my parent": a wrapper script may sit between us)."""
    parent = int(os.environ.get("TESTBED_PARENT_PID", "0") or 0)
    while parent and not stop.is_set():
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            stop.set()
        except PermissionError:
            pass   # it exists
        await asyncio.sleep(0.5)


async def main(argv: list[str]) -> int:
    args = settings(argv)
    stop, ready = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    server.add_insecure_port(args.listen)
    await server.start()
    work = asyncio.ensure_future(consume(args, ready, stop))
    watcher = asyncio.ensure_future(watch_parent(stop))
    stopper = asyncio.ensure_future(stop.wait())
    readied = asyncio.ensure_future(ready.wait())
    await asyncio.wait({readied, work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if ready.is_set():   # SERVING only once the positions are known (the contract's readiness)
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await asyncio.wait({work}, timeout=3)   # finish the batch in hand
    for t in (work, watcher, stopper, readied):
        t.cancel()
    await server.stop(1)
    if work.done() and not work.cancelled() and work.exception() is not None:
        print(f"buggy_processor: failed: {work.exception()!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
