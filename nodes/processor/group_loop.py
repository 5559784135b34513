"""The processing loop of one consumer-group member (``--member``): join, process the assigned
partitions, hand them back on a rebalance, join again.

Each generation runs a fresh strategy of the mode (delivery.py, exactly_once.py) over the
member's partitions only:

1. ``GroupMember.join`` (polled until the rebalance completes) gives the generation id and
   the partitions; positions and durable positions are reset to them.
2. ``strategy.start`` finds where each partition resumes: the group's committed offsets
   (at-most-once, at-least-once), or the partition's checkpoint (exactly-once,
   nodes/processor/partition_checkpoints.py).
3. Steps run until a heartbeat says the group is rebalancing (``rejoin_needed``). A step
   already commits what it processed (at-most-once / at-least-once), so nothing more is
   owed; an exactly-once strategy completes a checkpoint first (``revoke``).
4. A commit or sink call refused as stale (:class:`~nodes.processor.membership.Fenced`: the
   member was a zombie, its partitions moved while it was stopped) ends the generation at
   once, with nothing of the refused call applied; the member joins again.
"""

from __future__ import annotations

import asyncio

from nodes.processor.membership import Fenced


async def run_in_group(p) -> None:
    """Run ``p`` (a Processor with ``p.member``) as a group member until cancelled.

    Raises:
        TransactionLostError, PermanentRpcError: as the single processor does (it exits 1).
    """
    m = p.member
    p.phase = "starting"
    try:
        while True:
            await m.join()
            p.consumer.positions.clear()
            p.durable_positions = {}
            p.strategy = strategy = p.make_strategy()
            try:
                await strategy.start()
                p.phase = "running"
                p.notify()
                while not m.rejoin_needed:
                    if not p.consumer.positions:    # more members than partitions: idle
                        await asyncio.sleep(m.heartbeat_s)
                        continue
                    await strategy.step()
                    p.notify()
                revoke = getattr(strategy, "revoke", None)
                if revoke is not None:
                    await revoke()
            except Fenced:   # logged and counted by GroupMember.fenced_by; join again, not in a hot loop
                await asyncio.sleep(m.heartbeat_s)
            finally:
                close = getattr(strategy, "close", None)
                if close is not None:
                    close()
    except asyncio.CancelledError:
        p.phase = "stopped"
        raise
    except BaseException:
        p.phase = "failed"
        p.notify()
        raise
