"""A sink written from docs/contract.md alone, that keeps everything in memory (a test fixture).

It serves testbed.v1.Sink with the contract's semantics (Apply, Upsert, PreCommit / Commit /
Abort / ListPrepared, paged Snapshot) and the standard health service, and stops on SIGTERM
with exit 0. Its one bug: nothing is durable, so a restart forgets every order it acknowledged.
``testbed check-node --sink-cmd`` must say so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nodes.pb import sink_pb2, sink_pb2_grpc


class MemorySink(sink_pb2_grpc.SinkServicer):
    def __init__(self) -> None:
        self.orders: dict[str, list] = {}      # order_id -> [account, amount, applied_count]
        self.balances: dict[str, int] = {}
        self.prepared: dict[str, list] = {}
        self.committed: set[str] = set()
        self.aborted: set[str] = set()

    def _apply(self, orders, upsert: bool) -> tuple[int, int]:
        applied = skipped = 0
        for o in orders:
            row = self.orders.get(o.order_id)
            if row and upsert:
                skipped += 1
                continue
            if row is None:
                row = self.orders[o.order_id] = [o.account, o.amount_cents, 0]
            row[2] += 1
            self.balances[o.account] = self.balances.get(o.account, 0) + o.amount_cents
            applied += 1
        return applied, skipped

    async def Apply(self, request, context):
        applied, _ = self._apply(request.orders, upsert=False)
        return sink_pb2.WriteResponse(applied=applied)

    async def Upsert(self, request, context):
        applied, skipped = self._apply(request.orders, upsert=True)
        return sink_pb2.WriteResponse(applied=applied, skipped=skipped)

    async def PreCommit(self, request, context):
        if request.transaction_id in self.committed:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "committed")
        self.aborted.discard(request.transaction_id)
        self.prepared[request.transaction_id] = list(request.orders)
        return sink_pb2.PreCommitResponse()

    async def Commit(self, request, context):
        txn = request.transaction_id
        if txn in self.committed:
            return sink_pb2.CommitResponse(already_committed=True)
        if txn in self.aborted:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "aborted")
        if txn not in self.prepared:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown transaction")
        applied, _ = self._apply(self.prepared.pop(txn), upsert=False)
        self.committed.add(txn)
        return sink_pb2.CommitResponse(applied=applied)

    async def Abort(self, request, context):
        txn = request.transaction_id
        if txn in self.committed:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "committed")
        was = txn in self.aborted
        self.prepared.pop(txn, None)
        self.aborted.add(txn)
        return sink_pb2.AbortResponse(already_aborted=was)

    async def ListPrepared(self, request, context):
        return sink_pb2.ListPreparedResponse(transaction_ids=sorted(self.prepared))

    async def Snapshot(self, request, context):
        limit = request.limit or 1000
        ids = sorted(i for i in self.orders if i > request.after_order_id)
        page = ids[:limit]
        return sink_pb2.SnapshotResponse(
            orders=[sink_pb2.OrderCount(order_id=i, account=self.orders[i][0], amount_cents=self.orders[i][1],
                                        applied_count=self.orders[i][2]) for i in page],
            balances=[sink_pb2.Balance(account=a, balance_cents=c) for a, c in sorted(self.balances.items())],
            done=len(ids) <= limit)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default=os.environ.get("TESTBED_LISTEN"))
    args, _ = ap.parse_known_args()
    if not args.listen:
        print("memory_sink: error: no --listen", file=sys.stderr)
        return 2
    server = grpc.aio.server()
    sink_pb2_grpc.add_SinkServicer_to_server(MemorySink(), server)
    h = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(h, server)
    server.add_insecure_port(args.listen)
    await server.start()
    await h.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
