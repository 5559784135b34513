"""The group coordinator: consumer-group membership, generations and partition assignment.

Kafka's classic (eager) group protocol, reduced to what the testbed needs (KIP-62
session timeouts, the range assignor, ILLEGAL_GENERATION on offset commits):

- A member joins with ``join(member_id="", client_id)``: the coordinator gives it a
  member id (``{client_id}-{n}``) and starts a rebalance (state ``preparing``).
- During a rebalance every heartbeat is answered ``REBALANCE_IN_PROGRESS``: the
  member stops processing, commits / checkpoints what it owns (a commit with the
  current generation is still accepted, as in Kafka's PreparingRebalance) and
  calls ``join`` again with its member id. Join does not block: until every
  member has rejoined it answers ``REBALANCE_IN_PROGRESS`` and the member polls.
- Once every live member has rejoined, the generation id is bumped (1, 2, ...) and
  the partitions are assigned with the range assignor (members sorted by id, each a
  contiguous range, the first ``partitions % members`` one more). Join and
  heartbeat replies then carry status ``OK``, the generation and the member's
  partitions (SyncGroup folded into Join: the coordinator is the assignor).
- A member not heard from (join or heartbeat) for its ``session_timeout_ms`` is
  removed and a rebalance starts (a stalled consumer: incident 11, the zombie).
  A member that has not rejoined ``session_timeout_ms`` after a rebalance began is
  removed too (Kafka's rebalance timeout).
- ``leave`` removes a member at once and starts a rebalance.

Offset commits are checked by :meth:`ConsumerGroup.check_commit`: a commit from a
member unknown to the group (UNKNOWN_MEMBER_ID), from another generation
(ILLEGAL_GENERATION), or for a partition the member does not own in this
generation (NOT_OWNER; Kafka's classic protocol does not check this, KIP-848 does
through the member epoch) is refused. A commit without a generation (id 0, no
member id) is the standalone consumer of the single-processor pipeline: accepted
while the group has no members.

Members and assignments are in memory: a broker restart forgets them, members get
UNKNOWN_MEMBER_ID on their next heartbeat and join again. Two rules keep that rejoin
from depending on which member's heartbeat reached the restarted broker first (issue 15:
the first one alone got generation G+1 and every partition, while the other, not told yet,
kept processing its old partitions; without fencing that window duplicated output):

- a member id is ``{client_id}-{n}`` with ``n`` counted per client id (the Nth join of
  that client in this incarnation), not per group: ``processor`` rejoins as
  ``processor-1`` whether it is first or second;
- the first rebalance of a group restored from a persisted generation (a restarted
  broker) completes no earlier than ``initial_delay_ms`` after it began (Kafka's
  ``group.initial.rebalance.delay.ms``, KIP-134; the coordinator uses the joining
  member's session timeout, at most 3 s), so the members rejoining after the restart
  land in one generation with one assignment. The generation id of each
group is durable (``<data-dir>/group-generations.json``, written atomically at each
completed rebalance), so generations only grow across restarts: the sink's owner
epochs (nodes/sink/partitions.py) are generations, and a generation that restarted at 1
would be refused there as older than the partitions' owners. The committed offsets
themselves are durable (offsets.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from nodes.broker.errors import BrokerError

GENERATIONS_FILE = "group-generations.json"
OK = "OK"
REBALANCE_IN_PROGRESS = "REBALANCE_IN_PROGRESS"
UNKNOWN_MEMBER_ID = "UNKNOWN_MEMBER_ID"
ILLEGAL_GENERATION = "ILLEGAL_GENERATION"
NOT_OWNER = "NOT_OWNER"

MIN_SESSION_TIMEOUT_MS = 100
MAX_SESSION_TIMEOUT_MS = 300_000
MAX_MEMBERS = 1024
MAX_CLIENT_ID_BYTES = 256

log = logging.getLogger("broker.group")


class GroupError(BrokerError):
    """A commit or heartbeat refused by the coordinator (gRPC FAILED_PRECONDITION); the
    message starts with Kafka's error name (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, NOT_OWNER)."""

    code = "FAILED_PRECONDITION"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass
class JoinResult:
    """A join or heartbeat answer: ``status`` (OK / REBALANCE_IN_PROGRESS /
    UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION), the group's generation id, the member's
    id and, with OK, its partitions."""

    status: str
    generation: int
    member_id: str
    partitions: list[int] = field(default_factory=list)
    members: list[str] = field(default_factory=list)


@dataclass
class _Member:
    member_id: str
    session_timeout_ms: int
    last_seen_ms: int


def range_assign(members: list[str], partitions: int) -> dict[str, list[int]]:
    """Kafka's RangeAssignor for one topic: members sorted by id, each gets a contiguous
    range of ``partitions // len(members)`` partitions, the first ``partitions % len(members)``
    one more. {member id: [partition, ...]}; {} with no members."""
    ms = sorted(members)
    if not ms:
        return {}
    per, extra = divmod(partitions, len(ms))
    out, start = {}, 0
    for i, m in enumerate(ms):
        n = per + (1 if i < extra else 0)
        out[m] = list(range(start, start + n))
        start += n
    return out


class ConsumerGroup:
    """One consumer group of topic ``orders``.

    Args:
        name: the group id.
        partitions: the topic's partition count.
        clock_ms: monotonic milliseconds (tests inject a fake clock).
        fencing: False is the ``generation-fencing`` ablation: commits are accepted
            from any member and generation (check_commit never refuses).
    """

    def __init__(self, name: str, partitions: int, *, clock_ms: Callable[[], int] | None = None,
                 fencing: bool = True, generation: int = 0,
                 on_generation: Callable[[str, int], None] | None = None,
                 initial_delay_ms: int = 0) -> None:
        self.name, self.partitions, self.fencing = name, partitions, fencing
        self._on_generation = on_generation
        self._clock = clock_ms or (lambda: int(time.monotonic() * 1000))
        self.state = "empty"            # empty | preparing | stable
        self.generation = generation    # the last one before a restart (persisted)
        self.members: dict[str, _Member] = {}
        self.assignment: dict[str, list[int]] = {}
        self._rejoined: set[str] = set()
        self._rebalance_started_ms = 0
        self._joins_of: dict[str, int] = {}     # client id -> joins in this incarnation
        self.initial_delay_ms = initial_delay_ms
        """> 0: the first rebalance waits this long at most (capped by the joining member's
        session timeout) before it completes (KIP-134; a restarted broker's group)."""
        self._complete_not_before_ms = 0
        self.rebalances = 0
        self.expired: list[str] = []
        self.refused_commits = 0
        self.events: list[dict] = []
        """What happened, in order: {"event": "rebalance"|"member-expired"|..., ...}."""

    # -- membership ----------------------------------------------------------------

    def join(self, member_id: str, client_id: str, session_timeout_ms: int) -> JoinResult:
        """JoinGroup (with SyncGroup folded in). ``member_id`` "" = a new member.

        Returns OK with the partitions once the rebalance completed, REBALANCE_IN_PROGRESS
        while other members still have to rejoin (call again), UNKNOWN_MEMBER_ID for a
        member id the group does not know (expired or left: join again with "").

        Raises:
            ValueError: session timeout outside [MIN_SESSION_TIMEOUT_MS, MAX_SESSION_TIMEOUT_MS],
                too many members (the servicer answers INVALID_ARGUMENT / RESOURCE_EXHAUSTED).
        """
        if not MIN_SESSION_TIMEOUT_MS <= session_timeout_ms <= MAX_SESSION_TIMEOUT_MS:
            raise ValueError(f"session_timeout_ms must be in [{MIN_SESSION_TIMEOUT_MS}, "
                             f"{MAX_SESSION_TIMEOUT_MS}], got {session_timeout_ms}")
        now = self._clock()
        self.expire()
        if member_id and member_id not in self.members:
            return JoinResult(UNKNOWN_MEMBER_ID, self.generation, member_id)
        if not member_id:
            if len(self.members) >= MAX_MEMBERS:
                raise ValueError(f"group {self.name!r} already has {MAX_MEMBERS} members")
            client = client_id or "consumer"
            self._joins_of[client] = n = self._joins_of.get(client, 0) + 1
            member_id = f"{client}-{n}"
            self.members[member_id] = _Member(member_id, session_timeout_ms, now)
            self._event("member-joined", member=member_id)
            if self.initial_delay_ms and self.state == "empty":
                self._complete_not_before_ms = now + min(self.initial_delay_ms, session_timeout_ms)
                self.initial_delay_ms = 0   # the first rebalance only
            self._begin_rebalance(f"member {member_id} joined")
        m = self.members[member_id]
        m.last_seen_ms, m.session_timeout_ms = now, session_timeout_ms
        if self.state == "stable":
            return self._ok(member_id)
        self._rejoined.add(member_id)
        self._maybe_complete()
        return self._ok(member_id) if self.state == "stable" else \
            JoinResult(REBALANCE_IN_PROGRESS, self.generation, member_id)

    def heartbeat(self, member_id: str, generation: int) -> JoinResult:
        """Heartbeat: keeps the member's session alive. OK (with its partitions),
        REBALANCE_IN_PROGRESS (stop, commit, rejoin), UNKNOWN_MEMBER_ID (rejoin with ""),
        or ILLEGAL_GENERATION (its generation is not the group's: rejoin)."""
        self.expire()
        if member_id not in self.members:
            return JoinResult(UNKNOWN_MEMBER_ID, self.generation, member_id)
        self.members[member_id].last_seen_ms = self._clock()
        if self.state == "preparing":
            return JoinResult(REBALANCE_IN_PROGRESS, self.generation, member_id)
        if generation != self.generation:
            return JoinResult(ILLEGAL_GENERATION, self.generation, member_id)
        return self._ok(member_id)

    def leave(self, member_id: str) -> bool:
        """LeaveGroup: remove the member and rebalance. Returns False for an unknown member."""
        self.expire()
        if member_id not in self.members:
            return False
        self._remove(member_id, "member-left")
        return True

    def expire(self) -> list[str]:
        """Remove members whose session timed out, and members that did not rejoin within
        their session timeout after a rebalance began; returns their ids."""
        now = self._clock()
        gone = [m.member_id for m in self.members.values() if now - m.last_seen_ms > m.session_timeout_ms]
        if self.state == "preparing":
            gone += [m.member_id for m in self.members.values()
                     if m.member_id not in gone and m.member_id not in self._rejoined
                     and now - self._rebalance_started_ms > m.session_timeout_ms]
        for member_id in gone:
            self.expired.append(member_id)
            self._remove(member_id, "member-expired")
        return gone

    # -- commits -------------------------------------------------------------------

    def check_commit(self, member_id: str, generation: int, partitions: list[int]) -> None:
        """May ``member_id`` of ``generation`` commit offsets of ``partitions``?

        Raises:
            GroupError: UNKNOWN_MEMBER_ID (not a member, or a standalone commit to a group
                with members), ILLEGAL_GENERATION (another generation), NOT_OWNER (a
                partition assigned to another member). Never with ``fencing=False``.
        """
        self.expire()
        if not self.fencing:
            return
        if not member_id and generation == 0:
            if self.members:
                self._refuse(UNKNOWN_MEMBER_ID, f"a commit without a member id to group {self.name!r}, "
                             f"which has {len(self.members)} member(s) (generation {self.generation})")
            return
        if member_id not in self.members:
            self._refuse(UNKNOWN_MEMBER_ID, f"member {member_id!r} is not in group {self.name!r} "
                         f"(expired or left; generation {self.generation})")
        if generation != self.generation:
            self._refuse(ILLEGAL_GENERATION, f"member {member_id!r} committed with generation "
                         f"{generation}; group {self.name!r} is at generation {self.generation}")
        owned = set(self.assignment.get(member_id, []))
        foreign = sorted(set(partitions) - owned)
        if foreign:
            self._refuse(NOT_OWNER, f"member {member_id!r} of generation {generation} does not own "
                         f"partition(s) {foreign} (owns {sorted(owned)})")

    def status(self) -> dict:
        return {"state": self.state, "generation": self.generation,
                "assignment": {m: list(ps) for m, ps in sorted(self.assignment.items())},
                "members": sorted(self.members), "rebalances": self.rebalances,
                "expired": list(self.expired), "refused_commits": self.refused_commits}

    # -- internals -----------------------------------------------------------------

    def _ok(self, member_id: str) -> JoinResult:
        return JoinResult(OK, self.generation, member_id, list(self.assignment.get(member_id, [])),
                          sorted(self.members))

    def _refuse(self, name: str, message: str) -> None:
        self.refused_commits += 1
        self._event("commit-refused", error=name, detail=message)
        raise GroupError(name, message)

    def _remove(self, member_id: str, why: str) -> None:
        del self.members[member_id]
        self._rejoined.discard(member_id)
        self._event(why, member=member_id)
        self._begin_rebalance(f"{why}: {member_id}")
        self._maybe_complete()

    def _begin_rebalance(self, reason: str) -> None:
        if self.state != "preparing":
            self.state = "preparing"
            self._rebalance_started_ms = self._clock()
            self._rejoined = set()
            self._event("rebalance-started", reason=reason)

    def _maybe_complete(self) -> None:
        if self.state != "preparing" or not set(self.members) <= self._rejoined:
            return
        if self.members and self._clock() < self._complete_not_before_ms:
            return   # KIP-134: wait for the other members of a restarted group (they poll join)
        self.generation += 1
        self.rebalances += 1
        if self._on_generation is not None:
            self._on_generation(self.name, self.generation)
        self.assignment = range_assign(list(self.members), self.partitions)
        self.state = "stable" if self.members else "empty"
        self._rejoined = set()
        self._event("rebalance-completed", generation=self.generation,
                    assignment={m: ps for m, ps in sorted(self.assignment.items())})

    def _event(self, event: str, **fields) -> None:
        rec = {"event": event, "group": self.name, "generation": self.generation,
               "time": time.time(), **fields}
        self.events.append(rec)
        del self.events[:-1000]
        log.info("group %s", event, extra={k: v for k, v in rec.items() if k not in ("event", "time")})
