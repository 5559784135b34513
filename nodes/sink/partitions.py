"""Consumer groups at the sink: partition owner epochs, partition checkpoints, who applied what.

Several processors share the sink (issue 14). Each partition has an *owner epoch*: the
consumer group's generation id of the member that claimed it last (``Fence``, Kafka's
initTransactions fencing for a transactional id, KIP-447's use of the group generation).
A member's pre-commit, commit and checkpoint save carry its epoch; a request whose epoch
is older than a partition's owner epoch comes from a zombie (a member whose partitions
moved while it was stalled) and is refused with :class:`Fenced` (FAILED_PRECONDITION,
"FENCED: ..."). Nothing of a refused call is applied.

Tables (in the sink's database, beside the orders; all empty in single-processor runs)::

    partition_owners(partition PK, epoch, member_id, fenced_at_ms)
    partition_checkpoints(partition PK, "offset", state_json, checkpoint_id, epoch, member_id, saved_ms)
    txn_checkpoints(transaction_id, partition, "offset", state_json, checkpoint_id, epoch, member_id)
        the checkpoints a prepared transaction installs when it commits
    order_applications(order_id, member_id, epoch, applied_ms)   one row per application
        by a group member: which member applied each order (a duplicate shows two rows)
    group_events(seq PK, time_ms, event, partition, epoch, member_id, detail)
        fences, refusals, checkpoint moves: the report's partition lanes

``fencing=False`` is the ``generation-fencing`` ablation: epochs are recorded but never
compared, so a zombie's pre-commit, commit and checkpoint save all go through.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Iterable, Sequence

from nodes.sink.errors import InvalidInput, SinkError

import grpc

SCHEMA = """
CREATE TABLE IF NOT EXISTS partition_owners(
    partition INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, member_id TEXT NOT NULL,
    fenced_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partition_checkpoints(
    partition INTEGER PRIMARY KEY, "offset" INTEGER NOT NULL, state_json TEXT NOT NULL,
    checkpoint_id INTEGER NOT NULL, epoch INTEGER NOT NULL, member_id TEXT NOT NULL,
    saved_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS txn_checkpoints(
    transaction_id TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    state_json TEXT NOT NULL, checkpoint_id INTEGER NOT NULL, epoch INTEGER NOT NULL,
    member_id TEXT NOT NULL, PRIMARY KEY (transaction_id, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS order_applications(
    order_id TEXT NOT NULL, member_id TEXT NOT NULL, epoch INTEGER NOT NULL, applied_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS group_events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, event TEXT NOT NULL,
    partition INTEGER, epoch INTEGER, member_id TEXT, detail TEXT);
"""

MAX_PARTITIONS = 1024
MAX_STATE_ACCOUNTS = 100_000

Checkpoint = tuple[int, int, dict, int]
"""(partition, offset, state {account: cents}, checkpoint_id)."""


class Fenced(SinkError):
    """A request from an older owner epoch of a partition (a zombie): FAILED_PRECONDITION."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        super().__init__(f"FENCED: {message}")


def check_partitions(partitions: Sequence[int]) -> None:
    """Raises InvalidInput: more than MAX_PARTITIONS, a negative one, one listed twice."""
    if len(partitions) > MAX_PARTITIONS:
        raise InvalidInput(f"{len(partitions)} partitions in one call; at most {MAX_PARTITIONS}")
    if any(p < 0 for p in partitions) or len(set(partitions)) != len(partitions):
        raise InvalidInput(f"partitions must be >= 0 and listed once: {sorted(partitions)[:20]}")


def check_checkpoints(cks: Sequence[Checkpoint]) -> None:
    check_partitions([c[0] for c in cks])
    for p, off, state, _ in cks:
        if off < 0 or len(state) > MAX_STATE_ACCOUNTS:
            raise InvalidInput(f"partition {p}: offset must be >= 0 and state at most "
                               f"{MAX_STATE_ACCOUNTS} accounts")


def event(con: sqlite3.Connection, now_ms: int, what: str, *, partition: int | None = None,
          epoch: int | None = None, member: str = "", detail: str = "") -> None:
    con.execute("INSERT INTO group_events(time_ms, event, partition, epoch, member_id, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)", (now_ms, what, partition, epoch, member, detail[:1024]))


def owners(con: sqlite3.Connection, partitions: Iterable[int]) -> dict[int, tuple[int, str]]:
    ps = list(partitions)
    if not ps:
        return {}
    rows = con.execute(f"SELECT partition, epoch, member_id FROM partition_owners WHERE partition IN "
                       f"({','.join('?' * len(ps))})", ps).fetchall()
    return {p: (e, m) for p, e, m in rows}


def check_epoch(con: sqlite3.Connection, what: str, partitions: Iterable[int], epoch: int, member: str,
                now_ms: int, fencing: bool) -> None:
    """Raises Fenced if a partition's owner epoch is newer than ``epoch`` (never with fencing off)."""
    if not fencing:
        return
    for p, (e, m) in sorted(owners(con, partitions).items()):
        if e > epoch:
            detail = (f"{what} from member {member!r} of epoch {epoch}: partition {p} is owned by "
                      f"epoch {e} (member {m!r})")
            raise Fenced(detail)


def record_refusal(con: sqlite3.Connection, now_ms: int, message: str, member: str, epoch: int) -> None:
    """Log a refusal in group_events (in its own transaction: the refused one rolled back)."""
    event(con, now_ms, "refused", epoch=epoch, member=member, detail=message)


def fence(con: sqlite3.Connection, partitions: Sequence[int], epoch: int, member: str, now_ms: int,
          fencing: bool) -> tuple[list[tuple], list[str]]:
    """Claim ``partitions`` for ``epoch`` (see module doc). Returns (checkpoint rows
    [(partition, offset, state_json, checkpoint_id, epoch, member_id)], aborted txn ids).

    Raises:
        Fenced: a partition already has a newer owner (fencing on).
        InvalidInput: bad partition list.
    """
    check_partitions(partitions)
    check_epoch(con, "fence", partitions, epoch, member, now_ms, fencing)
    cur = owners(con, partitions)
    for p in partitions:
        new_epoch = max(epoch, cur.get(p, (0, ""))[0]) if fencing else epoch
        con.execute("INSERT INTO partition_owners(partition, epoch, member_id, fenced_at_ms) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(partition) DO UPDATE SET epoch = excluded.epoch, member_id = excluded.member_id, "
                    "fenced_at_ms = excluded.fenced_at_ms", (p, new_epoch, member, now_ms))
        event(con, now_ms, "fence", partition=p, epoch=epoch, member=member,
              detail=f"previous owner {cur[p][1]!r} epoch {cur[p][0]}" if p in cur else "first owner")
    ph = ",".join("?" * len(partitions))
    aborted = [r[0] for r in con.execute(
        f"SELECT DISTINCT t.transaction_id FROM txn_checkpoints c JOIN transactions t "
        f"ON t.transaction_id = c.transaction_id WHERE t.state = 'prepared' AND c.partition IN ({ph}) "
        f"AND c.epoch < ?", (*partitions, epoch))] if partitions else []
    for txn in aborted:
        con.execute("DELETE FROM prepared WHERE transaction_id = ?", (txn,))
        con.execute("UPDATE transactions SET state = 'aborted', finished_at_ms = ?, abort_reason = 'fenced' "
                    "WHERE transaction_id = ?", (now_ms, txn))
        event(con, now_ms, "aborted-by-fence", epoch=epoch, member=member, detail=txn)
    rows = con.execute(f"SELECT partition, \"offset\", state_json, checkpoint_id, epoch, member_id "
                       f"FROM partition_checkpoints WHERE partition IN ({ph}) ORDER BY partition",
                       list(partitions)).fetchall() if partitions else []
    return rows, aborted


def save(con: sqlite3.Connection, cks: Sequence[Checkpoint], epoch: int, member: str, now_ms: int,
         fencing: bool) -> None:
    """Replace the partitions' checkpoints (after :func:`check_epoch`)."""
    check_checkpoints(cks)
    check_epoch(con, "checkpoint save", [c[0] for c in cks], epoch, member, now_ms, fencing)
    _install(con, [(p, off, json.dumps(st, sort_keys=True), cid, epoch, member) for p, off, st, cid in cks],
             now_ms)


def _install(con: sqlite3.Connection, rows: Sequence[tuple], now_ms: int) -> None:
    for p, off, state_json, cid, epoch, member in rows:
        prev = con.execute("SELECT member_id, epoch FROM partition_checkpoints WHERE partition = ?",
                           (p,)).fetchone()
        con.execute("INSERT INTO partition_checkpoints(partition, \"offset\", state_json, checkpoint_id, epoch, "
                    "member_id, saved_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(partition) DO UPDATE SET "
                    "\"offset\" = excluded.\"offset\", state_json = excluded.state_json, "
                    "checkpoint_id = excluded.checkpoint_id, epoch = excluded.epoch, "
                    "member_id = excluded.member_id, saved_ms = excluded.saved_ms",
                    (p, off, state_json, cid, epoch, member, now_ms))
        if prev is None or prev[0] != member or prev[1] != epoch:
            event(con, now_ms, "checkpoint-owner", partition=p, epoch=epoch, member=member,
                  detail=f"offset {off}")


def stage(con: sqlite3.Connection, txn: str, cks: Sequence[Checkpoint], epoch: int, member: str) -> None:
    """Store the checkpoints a prepared transaction installs at commit."""
    check_checkpoints(cks)
    con.execute("DELETE FROM txn_checkpoints WHERE transaction_id = ?", (txn,))
    con.executemany("INSERT INTO txn_checkpoints(transaction_id, partition, \"offset\", state_json, "
                    "checkpoint_id, epoch, member_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(txn, p, off, json.dumps(st, sort_keys=True), cid, epoch, member)
                     for p, off, st, cid in cks])


def staged(con: sqlite3.Connection, txn: str) -> list[tuple]:
    """[(partition, offset, state_json, checkpoint_id, epoch, member_id)] of ``txn``."""
    return con.execute("SELECT partition, \"offset\", state_json, checkpoint_id, epoch, member_id "
                       "FROM txn_checkpoints WHERE transaction_id = ? ORDER BY partition", (txn,)).fetchall()


def install_staged(con: sqlite3.Connection, txn: str, now_ms: int) -> None:
    _install(con, staged(con, txn), now_ms)


def record_applications(con: sqlite3.Connection, order_ids: Iterable[str], member: str, epoch: int,
                        now_ms: int) -> None:
    if member:
        con.executemany("INSERT INTO order_applications(order_id, member_id, epoch, applied_ms) "
                        "VALUES (?, ?, ?, ?)", [(o, member, epoch, now_ms) for o in order_ids])
