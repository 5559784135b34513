"""A member expired by the coordinator still names itself as its generation's member when it
writes that generation's output (nodes/processor/membership.py ``generation_member``): a
zombie's pre-commit went to the sink with member "" (its heartbeat had cleared member_id) and
the audit could not say who applied its duplicates (duplicated_across_owners 0)."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace

from nodes.processor.membership import GroupMember


class FakeCoordinator:
    """JoinGroup answers OK (member processor-1, generation 2); every Heartbeat UNKNOWN_MEMBER_ID."""

    heartbeats = 0

    async def JoinGroup(self, req, timeout=None):
        return SimpleNamespace(status="OK", member_id="processor-1", generation_id=2, partitions=[1, 0],
                               members=["processor-1"])

    async def Heartbeat(self, req, timeout=None):
        self.heartbeats += 1
        return SimpleNamespace(status="UNKNOWN_MEMBER_ID", generation_id=3)


async def test_an_expired_member_keeps_the_id_of_its_generation():
    stub = FakeCoordinator()
    m = GroupMember(stub, group="g", client_id="processor", log=logging.getLogger("t"), heartbeat_ms=10)
    assert await m.join() == [0, 1]
    assert m.generation_member == m.member_id == "processor-1"
    deadline = time.monotonic() + 5
    while m.member_id:                      # poll the condition, bounded by the deadline
        assert time.monotonic() < deadline, "the heartbeat never heard UNKNOWN_MEMBER_ID"
        await asyncio.sleep(0.01)
    m._task.cancel()
    assert stub.heartbeats >= 1 and m.rejoin_needed
    assert (m.generation_member, m.generation) == ("processor-1", 2)   # its output's writer, not ""
