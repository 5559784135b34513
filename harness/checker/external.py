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
    """({order_id: applied_count}, {account: balance_cents}) from ``sink.db`` or ``snapshot.json``.

    Raises:
        InputError: neither file exists, or the snapshot is unreadable.
    """
    db = sink_dir / "sink.db"
    snap = sink_dir / SNAPSHOT_FILE
    if db.exists():
        from harness.checker import validate
        return validate.sink_snapshot(db)
    if not snap.exists():
        raise InputError(f"missing sink database {db} (and no {SNAPSHOT_FILE} of an external sink)")
    try:
        j = json.loads(snap.read_text())
        return ({str(k): int(v) for k, v in j["orders"].items()},
                {str(k): int(v) for k, v in j["balances"].items()})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"unreadable sink snapshot {snap}: {type(e).__name__}: {e}") from None


def _state_of(path: Path) -> dict[str, int] | None:
    try:
        j = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise InputError(f"unreadable {path}: {e}") from None
    state = j.get("state") if isinstance(j, dict) else None
    if not isinstance(state, dict):
        return None
    try:
        return {str(k): int(v) for k, v in state.items()}
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: 'state' must map account -> integer cents ({e})") from None


def operator_state(processor_dir: Path, external: bool) -> tuple[dict[str, int] | None, str | None]:
    """(operator state, why it was not checked). For a built-in processor the result is
    what the checker always read; for an external one a missing state comes with a reason.

    Raises:
        InputError: a present file is unreadable.
    """
    for name in ("final-status.json", "checkpoint.json"):
        state = _state_of(processor_dir / name)
        if state is not None:
            return state, None
    if external:
        return None, ("state-mismatch not checked: the external processor exposes no operator state "
                      "(neither a 'state' in NodeControl.Status nor in checkpoint.json; docs/contract.md)")
    return None, None


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
