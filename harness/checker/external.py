"""What the audit reads for an external node (docs/contract.md, "What the audit reads").

A built-in sink leaves ``sink/sink.db`` (SQLite) that the checker reads offline;
an external sink is read through its ``Sink.Snapshot`` RPC by the harness once
the pipeline has drained, while it still runs (:func:`capture_snapshot`), into
``sink/snapshot.json``: ``{"source": "Snapshot RPC", "orders": {order_id:
applied_count}, "balances": {account: cents}}``.

The processor's operator state (exactly-once's ``state-mismatch``) comes from,
in this order: ``processor/final-status.json`` with a ``state`` object (the
harness writes it from ``NodeControl.Status`` after the drain), then
``processor/checkpoint.json`` with a ``state`` object (the node's own last
checkpoint). A processor that provides neither is not checked for
``state-mismatch``, and the report says so (never a silent "held").
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.checker.inputs import InputError

SNAPSHOT_FILE = "snapshot.json"
SNAPSHOT_PAGE = 5000


def read_sink(sink_dir: Path) -> tuple[dict[str, int], dict[str, int]]:
    """({order_id: applied_count}, {account: balance_cents}) from ``sink.db``, or from
    ``snapshot.json`` when only that exists (an external sink).

    Raises:
        InputError: neither is readable (the message names the file).
    """
    from harness.checker import validate
    db = sink_dir / "sink.db"
    snap = sink_dir / SNAPSHOT_FILE
    if db.exists() or not snap.exists():
        return validate.sink_snapshot(db)
    j = validate.read_json(snap)
    try:
        orders = {str(k): v for k, v in j["orders"].items()}
        balances = {str(k): v for k, v in j["balances"].items()}
    except (KeyError, TypeError, AttributeError) as e:
        raise InputError(f"unreadable sink snapshot {snap}: expected {{\"orders\": {{...}}, \"balances\": "
                         f"{{...}}}} ({type(e).__name__}: {e})") from None
    for k, v in [*orders.items(), *balances.items()]:
        if not isinstance(v, int) or isinstance(v, bool):
            raise InputError(f"unreadable sink snapshot {snap}: {k!r:.40} holds {v!r:.40}, expected an integer")
    return orders, balances


def operator_state(processor_dir: Path, external: bool) -> tuple[dict[str, int] | None, str | None]:
    """(operator state, why it was not checked).

    Built-in processor: ``final-status.json`` if it exists, else ``checkpoint.json``, else
    None; a file without a valid ``state`` is an input error (validate.operator_state).
    External processor: the first of the two files that has a ``state`` object; none
    is not an error but a check not made, with the reason.

    Raises:
        InputError: a file is damaged (or, built-in, lacks its state).
    """
    from harness.checker import validate
    final, ck = processor_dir / "final-status.json", processor_dir / "checkpoint.json"
    if not external:
        for path in (final, ck):
            if path.exists():
                return validate.operator_state(path), None
        return None, None
    for path in (final, ck):
        if path.exists():
            obj = validate.read_json(path)
            if isinstance(obj, dict) and "state" in obj:
                return validate.operator_state(path), None
    return None, ("state-mismatch not checked: the external processor exposes no operator state "
                  "(neither a 'state' in NodeControl.Status nor in checkpoint.json; docs/contract.md)")


async def read_snapshot_rpc(address: str, timeout_s: float = 10.0) -> tuple[dict[str, int], dict[str, int]]:
    """Page through ``Sink.Snapshot`` at ``address`` (direct, never through a proxy):
    ({order_id: applied_count}, {account: balance_cents}).

    Raises:
        grpc.aio.AioRpcError: the sink did not answer a page.
        InputError: the pages do not move forward (a Snapshot that ignores ``after_order_id``).
    """
    from nodes.common.channels import insecure_channel
    from nodes.pb import sink_pb2, sink_pb2_grpc
    orders: dict[str, int] = {}
    balances: dict[str, int] = {}
    after = ""
    async with insecure_channel(address) as ch:
        stub = sink_pb2_grpc.SinkStub(ch)
        while True:
            resp = await stub.Snapshot(sink_pb2.SnapshotRequest(after_order_id=after, limit=SNAPSHOT_PAGE),
                                       timeout=timeout_s)
            for o in resp.orders:
                orders[o.order_id] = o.applied_count
            balances = {b.account: b.balance_cents for b in resp.balances}
            if resp.done or not resp.orders:
                break
            last = resp.orders[-1].order_id
            if last <= after:
                raise InputError(f"Snapshot at {address} returned order ids not after {after!r}: "
                                 "pages must be in order_id order (docs/contract.md)")
            after = last
    return orders, balances


async def capture_snapshot(address: str, sink_dir: Path, timeout_s: float = 10.0) -> Path:
    """:func:`read_snapshot_rpc` into ``sink_dir/snapshot.json``; return its path.

    Raises:
        grpc.aio.AioRpcError, InputError: as :func:`read_snapshot_rpc`.
    """
    orders, balances = await read_snapshot_rpc(address, timeout_s)
    path = sink_dir / SNAPSHOT_FILE
    sink_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"source": "Snapshot RPC", "address": address, "orders": orders,
                                "balances": balances}) + "\n")
    return path
