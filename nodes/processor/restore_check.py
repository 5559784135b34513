"""Exactly-once restore check: is the restored checkpoint the newest one this job completed?

A processor that restarts from a missing, empty or older ``checkpoint.json`` (a
restored backup, a lost disk; incidents-2.md #10) must not silently combine
that state with newer progress. The witness outside the data dir is the
broker: after every completed checkpoint the processor commits the
checkpoint's offsets for its consumer group, so the group's committed offsets
are never ahead of the newest completed checkpoint. Committed offsets ahead of
the restored checkpoint (or any committed offset when there is no checkpoint)
mean the checkpoint was lost or rolled back.

What the processor then does depends on the sink (Flink's rule: a job may be
restored from an older checkpoint only if its sinks tolerate the replay):

- ``transactional``: refuse to start (:class:`RefuseToStart`, exit 2, one line
  naming ``checkpoint.json``). Replaying from an older position would commit
  already-committed orders again under new transaction ids, and transaction
  ids built from a rolled-back incarnation counter can collide with committed
  ones (the sink would answer "already committed" and the batch would be lost).
- ``idempotent``: recover a consistent state: replay from the restored
  checkpoint (its offsets and operator state belong together), or from offset 0
  with empty state when there is none; the Upserts keyed by order id make the
  replay harmless at the sink. Logged as a warning with both positions, and
  reported in Status (``restore_behind``).

Not checked: the ``--no-checkpoint`` ablation and the modes without checkpoints.
The group's committed offsets may lag (the commit after a checkpoint is one
attempt, it can be lost): that only hides a rollback to the checkpoint just
before, never invents one.
"""

from __future__ import annotations

from nodes.common.modes import EXACTLY_ONCE, SINK_TRANSACTIONAL
from nodes.common.runtime import RefuseToStart
from nodes.processor.checkpoint import Checkpoint


async def check_restored(p) -> dict[int, tuple[int, int]]:
    """Compare ``p.restored`` with the group's committed offsets (retried until the broker
    answers); return {partition: (restored offset, committed offset)} where committed is ahead.

    Idempotent sink with no checkpoint but committed offsets: ``p.restored`` becomes an
    empty checkpoint at offset 0 (replay everything).

    Raises:
        RefuseToStart: transactional sink and the checkpoint is missing or older.
    """
    cfg = p.config
    if cfg.mode != EXACTLY_ONCE or cfg.no_checkpoint:
        return {}
    n = await p.consumer.partition_count()
    committed = await p.consumer.committed_offsets(n)
    ck: Checkpoint | None = p.restored
    mine = {q: 0 for q in range(n)}
    if ck is not None:
        mine.update(ck.offsets)
    behind = {q: (mine.get(q, 0), c) for q, c in sorted(committed.items()) if c > mine.get(q, 0)}
    if not behind:
        return {}
    what = (f"{p.store.path} is missing" if ck is None else
            f"{p.store.path} holds checkpoint {ck.checkpoint_id}, older than the newest completed one")
    positions = ", ".join(f"partition {q}: checkpoint {m}, committed {c}" for q, (m, c) in behind.items())
    if cfg.sink_strategy == SINK_TRANSACTIONAL:
        raise RefuseToStart(
            f"{what}: consumer group {cfg.group!r} committed offsets past it ({positions}); "
            f"replaying would re-apply committed transactions. Restore the newest checkpoint, "
            f"or reset the group and the sink")
    if ck is None:
        p.restored = Checkpoint(0, {q: 0 for q in range(n)}, {}, None)
    p.log.warning("restored checkpoint is behind the committed offsets; replaying from it "
                  "(idempotent sink: the replay re-upserts, state and offsets stay consistent)",
                  extra={"file": str(p.store.path), "behind": {str(q): v for q, v in behind.items()},
                         "checkpoint_id": ck.checkpoint_id if ck else None})
    return behind
