"""The group coordinator (nodes/broker/group.py) driven without gRPC, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from nodes.broker.broker import Broker
from nodes.broker.coordinator import GroupCoordinator
from nodes.broker.group import (ILLEGAL_GENERATION, NOT_OWNER, OK, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
                                ConsumerGroup, GroupError, range_assign)
from nodes.common.modes import AT_LEAST_ONCE, TOPIC


class Clock:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> int:
        return self.ms


def stable_pair(clock: Clock, partitions: int = 4) -> tuple[ConsumerGroup, str, str]:
    g = ConsumerGroup("g", partitions, clock_ms=clock)
    a = g.join("", "processor-1", 1000)
    assert a.status == OK and a.generation == 1 and a.partitions == list(range(partitions))
    b = g.join("", "processor-2", 1000)
    assert b.status == REBALANCE_IN_PROGRESS
    assert g.heartbeat(a.member_id, 1).status == REBALANCE_IN_PROGRESS
    assert g.join(a.member_id, "processor-1", 1000).status == OK
    return g, a.member_id, b.member_id


def test_range_assignor_matches_kafka():
    assert range_assign(["b", "a"], 4) == {"a": [0, 1], "b": [2, 3]}
    assert range_assign(["a", "b", "c"], 4) == {"a": [0, 1], "b": [2], "c": [3]}
    assert range_assign(["a", "b", "c", "d", "e"], 4)["e"] == []
    assert range_assign([], 4) == {}


def test_join_bumps_the_generation_once_every_member_rejoined():
    clock = Clock()
    g, a, b = stable_pair(clock)
    assert g.generation == 2 and g.state == "stable"
    ra, rb = g.heartbeat(a, 2), g.heartbeat(b, 2)
    assert (ra.status, rb.status) == (OK, OK)
    assert sorted(ra.partitions + rb.partitions) == [0, 1, 2, 3]
    assert not set(ra.partitions) & set(rb.partitions)
    assert g.heartbeat(a, 1).status == ILLEGAL_GENERATION


def test_session_timeout_removes_a_silent_member_and_rebalances():
    clock = Clock()
    g, a, b = stable_pair(clock)
    for _ in range(5):            # b heartbeats, a is silent (paused)
        clock.ms += 300
        g.heartbeat(b, 2)
    assert a not in g.members and g.expired == [a]
    assert g.heartbeat(b, 2).status == REBALANCE_IN_PROGRESS
    assert g.join(b, "processor-2", 1000).status == OK
    assert g.generation == 3 and g.heartbeat(b, 3).partitions == [0, 1, 2, 3]
    assert g.heartbeat(a, 2).status == UNKNOWN_MEMBER_ID


def test_a_member_that_does_not_rejoin_is_removed_after_its_session_timeout():
    clock = Clock()
    g, a, b = stable_pair(clock)
    c = g.join("", "processor-3", 1000).member_id
    results = []
    for _ in range(5):            # a and c poll their joins; b never rejoins nor heartbeats
        clock.ms += 300
        results.append((g.join(a, "processor-1", 1000).status, g.join(c, "processor-3", 1000).status))
    assert b not in g.members and b in g.expired
    assert results[0] == (REBALANCE_IN_PROGRESS, REBALANCE_IN_PROGRESS) and results[-1] == (OK, OK)
    assert g.generation == 3 and sorted(g.members) == sorted([a, c])


def test_stale_generation_and_non_owner_commits_are_refused():
    clock = Clock()
    g, a, b = stable_pair(clock)
    mine = g.heartbeat(a, 2).partitions
    g.check_commit(a, 2, mine)
    with pytest.raises(GroupError, match="^ILLEGAL_GENERATION") as e:
        g.check_commit(a, 1, mine)
    assert e.value.code == "FAILED_PRECONDITION"
    with pytest.raises(GroupError, match="^NOT_OWNER"):
        g.check_commit(a, 2, g.heartbeat(b, 2).partitions)
    with pytest.raises(GroupError, match="^UNKNOWN_MEMBER_ID"):
        g.check_commit("", 0, mine)            # a standalone commit while members exist
    g.leave(b)
    with pytest.raises(GroupError, match="^UNKNOWN_MEMBER_ID"):
        g.check_commit(b, 2, [0])
    assert g.join(a, "processor-1", 1000).status == OK and g.generation == 3
    # during the rebalance the current generation may still commit (Kafka's PreparingRebalance)
    g.join("", "processor-9", 1000)
    g.check_commit(a, 3, g.assignment[a])
    assert g.refused_commits == 4


def test_the_ablation_accepts_every_commit():
    g = ConsumerGroup("g", 4, clock_ms=Clock(), fencing=False)
    a = g.join("", "p", 1000).member_id
    g.check_commit(a, 99, [0, 1, 2, 3])
    g.check_commit("zombie", 0, [0])


def test_unknown_member_and_bad_session_timeout():
    g = ConsumerGroup("g", 2, clock_ms=Clock())
    assert g.join("ghost", "p", 1000).status == UNKNOWN_MEMBER_ID
    with pytest.raises(ValueError, match="session_timeout_ms"):
        g.join("", "p", 5)
    co = GroupCoordinator(2)
    co.check_commit("never-joined", "", 0, [0])   # the single processor: accepted
    with pytest.raises(GroupError, match="UNKNOWN_MEMBER_ID"):
        co.check_commit("never-joined", "m-1", 1, [0])


def test_broker_commit_offsets_applies_the_group_check(tmp_path):
    async def go():
        b = Broker(tmp_path, 2, AT_LEAST_ONCE)
        b.recover()
        b.start()
        try:
            await b.produce(TOPIC, 0, -1, 0, -1, [(b"k", b"v")] * 3)
            g = b.groups.group("grp")
            a = g.join("", "p", 10_000).member_id
            await b.commit_offsets("grp", TOPIC, [(0, 2)], member_id=a, generation=1)
            with pytest.raises(GroupError, match="ILLEGAL_GENERATION"):
                await b.commit_offsets("grp", TOPIC, [(0, 3)], member_id=a, generation=0)
            assert b.committed_offsets("grp", TOPIC) == {0: 2}
            assert b.status()["groups"]["grp"]["generation"] == 1
        finally:
            await b.close()
    asyncio.run(go())


def test_generations_survive_a_coordinator_restart(tmp_path):
    co = GroupCoordinator(4, clock_ms=Clock(), data_dir=tmp_path)
    g = co.group("grp")
    a = g.join("", "p", 1000).member_id
    g.join("", "q", 1000)
    g.join(a, "p", 1000)
    assert g.generation == 2
    clock = Clock()
    again = GroupCoordinator(4, clock_ms=clock, data_dir=tmp_path).group("grp")
    assert again.members == {} and again.generation == 2     # members forgotten, generation kept
    r = again.join("", "p", 1000)
    assert r.status == REBALANCE_IN_PROGRESS                 # KIP-134: waits for the others first
    clock.ms += 1000
    r = again.join(r.member_id, "p", 1000)
    assert r.status == OK and r.generation == 3


def test_member_ids_are_counted_per_client_so_the_join_order_does_not_rename_a_member():
    ids = []
    for order in (("processor", "processor-2"), ("processor-2", "processor")):
        g = ConsumerGroup("g", 4, clock_ms=Clock())
        ids.append({client: g.join("", client, 1000).member_id for client in order})
    assert ids[0] == ids[1] == {"processor": "processor-1", "processor-2": "processor-2-1"}


@pytest.mark.parametrize("first", ["p", "q"])
def test_a_restarted_group_waits_for_its_members_before_its_first_rebalance(tmp_path, first):
    """Issue 15: after a broker restart the member whose heartbeat came first got generation
    G+1 and every partition alone; now both land in G+1 with the same ranges, in either order."""
    clock = Clock()
    co = GroupCoordinator(4, clock_ms=clock, data_dir=tmp_path)
    g = co.group("grp")
    a = g.join("", "p", 1000).member_id
    g.join("", "q", 1000)
    g.join(a, "p", 1000)
    assert g.generation == 2 and g.assignment == {"p-1": [0, 1], "q-1": [2, 3]}
    again = GroupCoordinator(4, clock_ms=clock, data_dir=tmp_path).group("grp")   # the broker restarted
    second = "q" if first == "p" else "p"
    r1 = again.join("", first, 1000)
    assert r1.status == REBALANCE_IN_PROGRESS          # was OK, generation 3, all four partitions
    clock.ms += 400                                   # the other member's heartbeat comes later
    r2 = again.join("", second, 1000)
    assert r2.status == REBALANCE_IN_PROGRESS and again.generation == 2
    clock.ms += 599
    assert again.join(r1.member_id, first, 1000).status == REBALANCE_IN_PROGRESS
    clock.ms += 1                                     # the delay (the session timeout, 1000 ms) is over
    ok = again.join(r1.member_id, first, 1000)
    assert ok.status == OK and ok.generation == 3
    assert again.assignment == {"p-1": [0, 1], "q-1": [2, 3]}   # as before the restart
    assert again.join("", "r", 1000).status == REBALANCE_IN_PROGRESS   # later rebalances: no delay
    assert again.join(r2.member_id, second, 1000).status == REBALANCE_IN_PROGRESS
    assert again.join(r1.member_id, first, 1000).status == OK and again.generation == 4
