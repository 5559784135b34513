"""The order table: every per-order figure of a run as one numpy column, indexed by the
order's position in the workload (what the anomaly families compute on).

A 1,000,000-order audit held the same facts as seven Python hash structures keyed by
order id (a dict of (account, amount) tuples, two sets, a Counter, a dict of
(partition, offset) tuples, a dict of counts): about 560 MiB and a pass of dict
look-ups per family. Here each order id is looked up once (``index``) when its file
is read, and the families are array expressions (issue 16, docs/bench.md).

Columns (length = workload size; row i = the i-th workload order):
``account`` (int32 code into ``accounts``), ``amount`` (int64 cents), ``invoked`` and
``acked`` (bool), ``log_count`` (int64 records in the broker log), ``log_partition``
(int64, -1 = not in the log) and ``log_offset`` (int64) of the first record,
``sink_count`` (int64 applied count at the sink, 0 = absent).
Ids outside the workload are kept apart: ``sink_other`` (id -> applied count),
``log_other`` (records of other ids: poison-free records not in the workload),
``invoked_other`` / ``acked_other`` (history ids not in the workload).
"""

from __future__ import annotations

from itertools import repeat
from typing import Iterable, Mapping

import numpy as np


class OrderTable:
    """Build with :meth:`from_rows` (the workload), then :meth:`mark_history`,
    :meth:`add_log_record` / :meth:`set_log`, :meth:`set_sink`; or :meth:`from_dicts`."""

    def __init__(self, ids: list[str], account: np.ndarray, accounts: list[str], amount: np.ndarray,
                 *, generated: bool = False) -> None:
        n = len(ids)
        self.ids = ids
        self.generated = generated and n <= 10 ** 8   # ids are order-%08d: found by parsing them
        self._index: dict[str, int] | None = None
        self.account, self.accounts, self.amount = account, accounts, amount
        self.invoked = np.zeros(n, bool)
        self.acked = np.zeros(n, bool)
        self.log_count = np.zeros(n, np.int64)
        self.log_partition = np.full(n, -1, np.int64)
        self.log_offset = np.zeros(n, np.int64)
        self.sink_count = np.zeros(n, np.int64)
        self.sink_other: dict[str, int] = {}
        self.log_other = 0
        self.invoked_other: set[str] = set()
        self.acked_other: set[str] = set()

    @property
    def index(self) -> dict[str, int]:
        """order id -> row (built on first use: a generated table parses ids instead)."""
        if self._index is None:
            self._index = dict(zip(self.ids, range(len(self.ids))))
        return self._index

    def lookup(self, ids: list[str]) -> np.ndarray:
        """Row of each id (int64), -1 for an id not in the workload."""
        if not ids:
            return np.zeros(0, np.int64)
        if self.generated:
            return _parse_generated(ids, len(self.ids))
        return np.array(list(map(self.index.get, ids, repeat(-1))), np.int64)

    def contains(self, order_id: str) -> bool:
        return bool(self.lookup([order_id])[0] >= 0) if isinstance(order_id, str) else False

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, int]]) -> "OrderTable":
        """From ``(order_id, account, amount_cents)`` rows in workload order."""
        ids: list[str] = []
        codes: dict[str, int] = {}
        acc: list[int] = []
        amounts: list[int] = []
        add_id, add_acc, add_amt, setdefault = ids.append, acc.append, amounts.append, codes.setdefault
        for oid, account, amount in rows:
            add_id(oid)
            add_acc(setdefault(account, len(codes)))
            add_amt(amount)
        return cls(ids, np.array(acc, np.int32), list(codes), np.array(amounts, np.int64))

    def mark_history(self, invoked: list[str], acked: list[str]) -> None:
        """Order ids the producer invoked / got an ``ok`` for (repeats allowed)."""
        for ids, col, other in ((invoked, self.invoked, self.invoked_other),
                                (acked, self.acked, self.acked_other)):
            rows = self.lookup(ids)
            col[rows[rows >= 0]] = True
            other.update(ids[i] for i in np.flatnonzero(rows < 0).tolist())

    def set_log(self, ids: list[str], partitions, offsets) -> None:
        """Every log record that holds an order, in the order the log is read (partition
        by partition, offsets ascending): its order id, partition and offset (``partitions``
        and ``offsets``: int64 sequences, lists or ``array('q')``). The first record of an
        order gives its position; records of ids outside the workload count in ``log_other``."""
        if not len(ids):
            return
        r = self.lookup(ids)
        found = r >= 0
        self.log_other += int(len(r) - found.sum())
        r = r[found]
        self.log_count += np.bincount(r, minlength=len(self))
        uniq, first = np.unique(r, return_index=True)   # first occurrence in read order
        self.log_partition[uniq] = np.asarray(partitions, np.int64)[found][first]
        self.log_offset[uniq] = np.asarray(offsets, np.int64)[found][first]

    def set_sink(self, ids: list[str], counts) -> None:
        """The sink's applied count of each order id (each id once; ``counts``: int64 sequence)."""
        if not len(ids):
            return
        r = self.lookup(ids)
        c = np.asarray(counts, np.int64)
        found = r >= 0
        self.sink_count[r[found]] = c[found]
        self.sink_other.update((ids[i], int(c[i])) for i in np.flatnonzero(~found).tolist())

    def restrict(self, keep: np.ndarray) -> "OrderTable":
        """A table of the rows where ``keep`` (bool) is true; the rest leave the workload
        (their sink counts go to ``sink_other``, their log records to ``log_other``)."""
        t = OrderTable([oid for oid, k in zip(self.ids, keep.tolist()) if k], self.account[keep],
                       self.accounts, self.amount[keep])   # not "generated": rows no longer = numbers
        for name in ("invoked", "acked", "log_count", "log_partition", "log_offset", "sink_count"):
            setattr(t, name, getattr(self, name)[keep])
        gone = ~keep
        t.sink_other = dict(self.sink_other)
        t.sink_other.update((self.ids[i], int(self.sink_count[i])) for i in np.flatnonzero(gone & (self.sink_count != 0)))
        t.log_other = self.log_other + int(self.log_count[gone].sum())
        t.invoked_other = self.invoked_other | {self.ids[i] for i in np.flatnonzero(gone & self.invoked)}
        t.acked_other = self.acked_other | {self.ids[i] for i in np.flatnonzero(gone & self.acked)}
        return t

    @classmethod
    def from_dicts(cls, workload: Mapping[str, tuple[str, int]], invoked: Iterable[str], acked: Iterable[str],
                   log_counts: Mapping[str, int], log_positions: Mapping[str, tuple[int, int]],
                   sink_counts: Mapping[str, int]) -> "OrderTable":
        """From the keyed form of :class:`harness.checker.inputs.RunData` (hand-built data, tests)."""
        t = cls.from_rows((oid, a, amt) for oid, (a, amt) in workload.items())
        t.mark_history(list(invoked), list(acked))
        for oid, n in log_counts.items():
            r = t.index.get(oid)
            if r is None:
                t.log_other += int(n)
            else:
                t.log_count[r] = n
        for oid, (p, off) in log_positions.items():
            r = t.index.get(oid)
            if r is not None:
                t.log_partition[r], t.log_offset[r] = p, off
        t.set_sink(list(sink_counts), list(sink_counts.values()))
        return t

    # ----- the keyed views (RunData's dict-shaped fields, built on demand) -----

    def workload_dict(self) -> dict[str, tuple[str, int]]:
        names = self.accounts
        return {oid: (names[a], amt) for oid, a, amt in zip(self.ids, self.account.tolist(), self.amount.tolist())}

    def id_set(self, col: np.ndarray, other: set[str]) -> set[str]:
        return {self.ids[i] for i in np.flatnonzero(col)} | other

    def counts_dict(self, col: np.ndarray, other: dict[str, int] | None = None) -> dict[str, int]:
        out = {self.ids[i]: int(col[i]) for i in np.flatnonzero(col)}
        out.update(other or {})
        return out

    def positions_dict(self) -> dict[str, tuple[int, int]]:
        return {self.ids[i]: (int(self.log_partition[i]), int(self.log_offset[i]))
                for i in np.flatnonzero(self.log_partition >= 0)}


def first_ids(table: OrderTable, mask: np.ndarray, limit: int) -> list[str]:
    """The ids of the first ``limit`` rows where ``mask`` is true, in workload order."""
    return [table.ids[i] for i in np.flatnonzero(mask)[:limit]]


def hop_counts(mask: np.ndarray, split: np.ndarray, if_true: str, if_false: str) -> dict[str, int]:
    """{hop: count} of the rows in ``mask``, ``if_true`` where ``split``; hops in the order
    of their first row (as a per-row loop would have added them)."""
    out: dict[str, int] = {}
    a, b = mask & split, mask & ~split
    order = sorted(((np.argmax(m) if m.any() else -1, hop, m) for hop, m in ((if_true, a), (if_false, b))),
                   key=lambda x: x[0])
    for first, hop, m in order:
        if first >= 0:
            out[hop] = int(m.sum())
    return out


_PREFIX = np.array([ord(c) for c in "order-"], np.uint32)


_CHUNK = 1 << 16
"""Ids parsed per numpy array: one long id widens its whole chunk's array (256 bytes -> 1 KiB
per id), so the memory of a chunk stays bounded (<= 64 MiB) whatever the ids hold."""


def _parse_generated(ids: list[str], count: int) -> np.ndarray:
    """Rows of generated ids (``order-%08d``; row = the number) without a dict: the ids
    as numpy unicode arrays, prefix and 8 digits checked column by column. Any other
    id (another shape, a number >= count) is -1: generated ids are exactly these."""
    if len(ids) > _CHUNK:
        return np.concatenate([_parse_generated(ids[i:i + _CHUNK], count) for i in range(0, len(ids), _CHUNK)])
    a = np.array(ids)
    width = a.dtype.itemsize // 4
    if a.dtype.kind != "U" or width < 14:
        return _slow(ids, count)
    u = a.view(np.uint32).reshape(len(ids), width)
    ok = (u[:, :6] == _PREFIX).all(axis=1)
    if width > 14:
        ok &= (u[:, 14:] == 0).all(axis=1)
    num = np.zeros(len(ids), np.int64)
    for k in range(6, 14):
        d = u[:, k].astype(np.int64) - 48
        ok &= (d >= 0) & (d <= 9)
        num = num * 10 + d
    ok &= num < count
    return np.where(ok, num, -1)


def _slow(ids: list[str], count: int) -> np.ndarray:
    out = np.full(len(ids), -1, np.int64)
    for i, oid in enumerate(ids):
        if isinstance(oid, str) and len(oid) == 14 and oid.startswith("order-") and oid[6:].isdigit() \
                and oid[6:].isascii() and int(oid[6:]) < count:
            out[i] = int(oid[6:])
    return out
