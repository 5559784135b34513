"""The workload: every order that should exist, as a pure function of (seed, count).

The checker imports this module to know every event without trusting any node
(Jepsen's generator/checker split). Two sources:

* :func:`generate` - ``order-00000000``, ``order-00000001``, ... with an account
  ``acct-00`` .. ``acct-15`` and an amount in cents drawn from
  ``random.Random(seed)``; prefix-stable: ``generate(s, n)[:k] == generate(s, k)``.
  :func:`generate_rows` yields the same orders as plain tuples, lazily (the checker's
  cheap path), and :class:`GeneratedWorkload` hands them out slice by slice (the
  producer's: memory O(batch), not O(count)).
* :func:`load_jsonl` - a file of ``{"order_id": str, "account": str,
  "amount_cents": int}`` lines (``--workload FILE.jsonl``).

:func:`identity` names a workload so a restarted producer can refuse to resume
a different one.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterator

from nodes.common.limits import short
from nodes.pb.events_pb2 import Order

MIN_AMOUNT_CENTS = 100
MAX_AMOUNT_CENTS = 99_999
_FIELDS = (("order_id", str), ("account", str), ("amount_cents", int))


FILE_MAX_LINE_BYTES = 64 * 1024
"""Longest line of a workload file (bytes): an order is ~80 bytes; a longer line is damage."""
FILE_MAX_ID_BYTES = 256
"""Longest order_id / account of a workload file (UTF-8 bytes; the broker's and sink's limit)."""
FILE_MAX_AMOUNT_CENTS = 10**12
"""Largest |amount_cents| of a workload file (negative = a refund): 5,000,000 orders (--events'
bound) of this size sum to 5e18 cents, within int64 (9.2e18), so no balance can overflow."""


class WorkloadError(ValueError):
    """A workload file is unusable. The message is one line: ``FILE:LINE: what is wrong``."""


def account_name(i: int, accounts: int = 16) -> str:
    """``acct-07``: the i-th account, zero-padded to at least 2 digits."""
    return f"acct-{i:0{max(2, len(str(accounts - 1)))}d}"


def generate(seed: int, count: int, accounts: int = 16) -> list[Order]:
    """``count`` orders drawn from ``random.Random(seed)``.

    Order i has order_id ``order-%08d`` % i, an account chosen uniformly among
    ``accounts`` and amount_cents uniform in [100, 99_999]. Each order consumes
    the same two draws, so the list is prefix-stable.

    Raises:
        ValueError: count < 0 or accounts < 1.
    """
    orders = []
    append = orders.append
    for oid, a, amount in generate_rows(seed, count, accounts):
        o = Order()  # attribute stores are ~2x faster than keyword construction in upb
        o.order_id = oid
        o.account = a
        o.amount_cents = amount
        append(o)
    return orders


def generate_rows(seed: int, count: int, accounts: int = 16, start: int = 0) -> Iterator[tuple[str, str, int]]:
    """The orders of :func:`generate` as ``(order_id, account, amount_cents)`` tuples, lazily,
    from index ``start`` (the draws of the first ``start`` orders are made and dropped).

    Raises:
        ValueError: count < 0, accounts < 1 or start outside 0..count.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if accounts < 1:
        raise ValueError(f"accounts must be >= 1, got {accounts}")
    if not 0 <= start <= count:
        raise ValueError(f"start must be in 0..{count}, got {start}")
    rng = random.Random(seed)
    names = [account_name(i, accounts) for i in range(accounts)]
    rand = rng.random
    for _ in range(2 * start):
        rand()
    span = MAX_AMOUNT_CENTS - MIN_AMOUNT_CENTS + 1
    for i in range(start, count):
        # Two draws per order, in this order: account, then amount.
        a = names[int(rand() * accounts)]
        yield f"order-{i:08d}", a, MIN_AMOUNT_CENTS + int(rand() * span)


class GeneratedWorkload:
    """The orders of :func:`generate` made on demand: ``len()`` and slices ``w[start:end]``
    (a list of Orders), in O(batch) memory instead of O(count) (the producer's node memory
    stays flat as the workload grows). Slices read forward from a cursor; a slice that
    does not start at the cursor restarts the generator at its start (draws skipped).

    Raises:
        ValueError: as :func:`generate`; TypeError: an index that is not a slice.
    """

    def __init__(self, seed: int, count: int, accounts: int = 16) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if accounts < 1:
            raise ValueError(f"accounts must be >= 1, got {accounts}")
        self.seed, self.count, self.accounts = seed, count, accounts
        self._cursor = 0
        self._rows = generate_rows(seed, count, accounts)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: slice) -> list[Order]:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("GeneratedWorkload supports only contiguous slices")
        start, stop, _ = index.indices(self.count)
        if stop <= start:
            return []
        if start != self._cursor:
            self._rows = generate_rows(self.seed, self.count, self.accounts, start)
            self._cursor = start
        out = []
        for _ in range(stop - start):
            oid, a, amount = next(self._rows)
            o = Order()
            o.order_id = oid
            o.account = a
            o.amount_cents = amount
            out.append(o)
        self._cursor = stop
        return out


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def load_jsonl(path: Path | str) -> list[Order]:
    """Read a JSONL workload file; line numbers start at 1.

    Raises:
        WorkloadError: unreadable file, empty file, bad JSON, a line that is not
            an object, a missing field, a field of the wrong type, or a duplicate
            order_id; e.g. ``w.jsonl:3: field 'amount_cents' must be an integer``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise WorkloadError(f"{path}: cannot read workload file: {e}") from None
    orders: list[Order] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > FILE_MAX_LINE_BYTES // 4 and len(line.encode()) > FILE_MAX_LINE_BYTES:
            raise WorkloadError(f"{path}:{n}: line is {len(line.encode()):,} bytes, more than "
                                f"{FILE_MAX_LINE_BYTES:,}")
        try:
            obj = json.loads(line, parse_constant=_not_json)
        except ValueError as e:
            raise WorkloadError(f"{path}:{n}: invalid JSON: {getattr(e, 'msg', e)}") from None
        if not isinstance(obj, dict):
            raise WorkloadError(f"{path}:{n}: line must be a JSON object")
        for name, typ in _FIELDS:
            if name not in obj:
                raise WorkloadError(f"{path}:{n}: missing field '{name}'")
            v = obj[name]
            if typ is int and (not isinstance(v, int) or isinstance(v, bool)):
                raise WorkloadError(f"{path}:{n}: field '{name}' must be an integer")
            if typ is str and (not isinstance(v, str) or not v):
                raise WorkloadError(f"{path}:{n}: field '{name}' must be a non-empty string")
            if typ is str and not v.isprintable():
                raise WorkloadError(f"{path}:{n}: field '{name}' holds a control or unpaired surrogate character")
            if typ is str and len(v.encode("utf-8")) > FILE_MAX_ID_BYTES:
                raise WorkloadError(f"{path}:{n}: field '{name}' is longer than {FILE_MAX_ID_BYTES} bytes")
        if not -FILE_MAX_AMOUNT_CENTS <= obj["amount_cents"] <= FILE_MAX_AMOUNT_CENTS:
            raise WorkloadError(f"{path}:{n}: field 'amount_cents' must be within +-{FILE_MAX_AMOUNT_CENTS:,} "
                                f"(cents; negative = a refund), got {obj['amount_cents']}")
        if not -(2**63) <= obj["amount_cents"] < 2**63:
            raise WorkloadError(f"{path}:{n}: field 'amount_cents' is out of the int64 range")
        oid = obj["order_id"]
        if oid in seen:
            raise WorkloadError(f"{path}:{n}: field 'order_id' duplicates line {seen[oid]} ({short(oid)})")
        seen[oid] = n
        orders.append(Order(order_id=oid, account=obj["account"], amount_cents=obj["amount_cents"]))
    if not orders:
        raise WorkloadError(f"{path}:1: workload file is empty")
    return orders


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a workload file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def identity(*, seed: int | None = None, count: int | None = None, accounts: int | None = None,
             workload_file: Path | str | None = None) -> dict:
    """The JSON-able name of a workload, persisted with the producer's state.

    ``{"source": "generated", "seed": s, "count": n, "accounts": a}`` or
    ``{"source": "file", "sha256": hex}``.
    """
    if workload_file is not None:
        return {"source": "file", "sha256": file_sha256(workload_file)}
    return {"source": "generated", "seed": seed, "count": count, "accounts": accounts}
