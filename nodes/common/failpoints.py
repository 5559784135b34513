"""Failpoints: named points in protocol code where a fault can be armed at run time.

The idea is TiKV's fail-rs and FreeBSD's fail(9): a call site names a step of
the protocol, and a test arms an action there without rebuilding the node::

    if FAILPOINTS.armed:                       # one attribute read when nothing is armed
        await FAILPOINTS.hit("processor.before-checkpoint")

Actions (:data:`ACTIONS`):

- ``crash``: log the firing (flushed), then SIGKILL the own process at once: no
  cleanup, no flush of the node's buffers, exactly what ``kill -9`` leaves
  (exit status -9 as seen by the parent).
- ``error``: raise :class:`FailpointError`; the call site maps it to the
  operation failing (a storage write error, an INTERNAL/UNAVAILABLE status)
  while the node keeps answering.
- ``delay``: sleep ``delay_ms`` ms, then continue.
- ``pause``: block until the failpoint is disarmed, or ``timeout_ms`` passed (0 = no limit).
  A pause arming whose ``count`` is used up stays listed (spent: later hits pass)
  while it holds a caller, so that ``DisarmFailpoint`` (by name or all, as the
  harness's final heal does) always releases it; its arming ends there.
- ``count``: only count hits (used by the sweep to learn how often a point is reached).

Each arming has ``nth`` (fire first on the Nth hit after arming, 1 = the next
hit) and ``count`` (fire this many times, then disarm itself; 0 = forever).
Hit counting starts at arming, so "crash on the 3rd checkpoint" replays the
same way from a seed: the trigger is logical, not a wall-clock time.

Armed at run time with the NodeControl RPCs ``ArmFailpoint`` /
``DisarmFailpoint`` / ``ListFailpoints`` (served by nodes.common.runtime on
every node), or at start with ``--failpoint SPEC`` (repeatable) or the
``TESTBED_FAILPOINTS`` environment variable (``;``-separated specs). A crash
failpoint kills the process; after a restart it is gone unless armed again.

Spec syntax (:func:`parse_spec`)::

    NAME=ACTION[(MS)][@N][xCOUNT]
    processor.before-checkpoint=crash@3        crash on the 3rd hit
    sink.after-commit-before-reply=error x2    fail the next two hits
    broker.after-fsync-before-ack=delay(200)@1x0   delay every hit by 200 ms

Every firing is logged (``msg`` "failpoint fired", field ``failpoint``) to the
node's JSON log, so a report can show when it fired.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
from dataclasses import dataclass, field

log = logging.getLogger("failpoints")

ENV_VAR = "TESTBED_FAILPOINTS"
ACTIONS = ("crash", "error", "delay", "pause", "count")

REGISTRY: dict[str, str] = {
    # producer (nodes/producer/): the order of persist, send and ACK per mode
    "producer.after-persist-before-send":
        "producer (at-most-once): the source position is persisted, the batch not yet sent "
        "(a crash here loses the batch: at-most-once's order)",
    "producer.after-send-before-ack":
        "producer (every mode): a Produce call returned OK (the broker appended the batch), "
        "the ACK not yet recorded in the history nor acted on (a crash: outcome unknown)",
    "producer.after-ack-before-persist":
        "producer (at-least-once, exactly-once): every partition ACKed the batch, the position "
        "and sequence numbers not yet persisted (a crash re-sends it: duplicated in "
        "at-least-once, deduplicated by the persisted sequences in exactly-once)",
    # broker (nodes/broker/broker.py): produce in every mode, offsets, fetch
    "broker.before-append":
        "broker (every mode): a Produce passed its checks, nothing appended yet "
        "(`error` = a storage error with nothing written)",
    "broker.after-dedupe-record-before-append":
        "broker: the sequence check of an idempotent batch passed, the append not yet done "
        "(scenario 3; `error` = a storage error at that point)",
    "broker.after-append-before-fsync":
        "broker: a batch is appended to the log (written, not yet fsynced), before the flush",
    "broker.after-fsync-before-ack":
        "broker: a batch is durable (fsynced), its Produce reply not yet sent (scenario 1 variant)",
    "broker.before-offset-commit":
        "broker (every mode): a CommitOffset is valid, the offsets not yet persisted "
        "(`error` = UNAVAILABLE, nothing changed)",
    "broker.after-offset-commit-before-reply":
        "broker (every mode): committed offsets are durable, the CommitOffset reply not yet sent",
    "broker.before-fetch-reply":
        "broker (every mode): a Fetch has read its records, the reply not yet sent "
        "(`error` = UNAVAILABLE)",
    # processor (nodes/processor/): offsets, checkpoints and the two-phase commit
    "processor.after-fetch-before-sink":
        "processor (at-most-once, at-least-once): a batch is fetched, no offset committed and "
        "nothing written to the sink yet",
    "processor.after-offset-commit-before-sink":
        "processor (at-most-once, or --commit-before-sink): offsets committed, the batch not yet "
        "written to the sink (scenario 7)",
    "processor.after-sink-ack-before-offset-commit":
        "processor (at-least-once): the sink acknowledged the batch, its offsets not yet committed",
    "processor.before-checkpoint":
        "processor (exactly-once): a checkpoint is due, nothing of it done yet",
    "processor.member-before-output":
        "processor (a consumer-group member, --member; every mode): records are processed, nothing "
        "of them committed or written to the sink yet (at-most-once / at-least-once: after the "
        "fetch; exactly-once: a checkpoint is due). A zombie paused here (issue 14) wakes up "
        "owning records of partitions that moved",
    "processor.after-precommit-before-checkpoint":
        "processor (transactional): PreCommit acknowledged, the checkpoint not yet persisted",
    "processor.after-checkpoint-before-commit":
        "processor (transactional): the checkpoint with the pending transaction is durable, "
        "Commit not yet sent (scenario 5)",
    "processor.after-sink-commit":
        "processor (transactional): the sink acknowledged Commit, the checkpoint's completion not "
        "yet recorded (scenario 6)",
    "processor.after-checkpoint-writes-outstanding":
        "processor (idempotent): a checkpoint was persisted while sink writes were still "
        "unacknowledged (reachable only with --no-drain-before-checkpoint; scenario 4)",
    # sink (nodes/sink/service.py): before the database call (nothing applied yet) ...
    "sink.before-apply": "sink: an Apply arrived, nothing applied yet (`error` = UNAVAILABLE, nothing applied)",
    "sink.before-upsert": "sink: an Upsert arrived, nothing applied yet (`error` = UNAVAILABLE, nothing applied)",
    "sink.before-precommit":
        "sink: a PreCommit arrived, the transaction not yet prepared (`error` = UNAVAILABLE)",
    "sink.before-commit":
        "sink: a Commit arrived, the prepared transaction not yet applied (`error` = UNAVAILABLE)",
    "sink.before-abort":
        "sink: an Abort arrived, the prepared transaction not yet dropped (`error` = UNAVAILABLE)",
    # ... and after the database committed, before the reply
    "sink.after-apply-before-reply":
        "sink: an Apply is committed to the database, its reply not yet sent",
    "sink.after-upsert-before-reply":
        "sink: an Upsert is committed to the database, its reply not yet sent",
    "sink.after-pre-commit":
        "sink: a PreCommit is durable (transaction prepared), its reply not yet sent",
    "sink.after-commit-before-reply":
        "sink: a Commit is applied and durable, its reply not yet sent",
}
"""Every failpoint name -> one-line description (``testbed failpoints`` prints this)."""


class FailpointError(RuntimeError):
    """Raised at a call site by an armed ``error`` failpoint; the call site maps it
    to the operation failing (the node keeps serving)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"failpoint {name} injected an error")
        self.name = name


class FailpointSpecError(ValueError):
    """A failpoint spec or an arming request is invalid; the message says what."""


@dataclass
class Arming:
    """How one failpoint is armed.

    Attributes:
        name: a key of :data:`REGISTRY`.
        action: one of :data:`ACTIONS`.
        delay_ms: ``delay``: how long (ms).
        timeout_ms: ``pause``: give up after this long (ms); 0 = until disarmed.
        nth: fire first on the Nth hit after arming (>= 1).
        count: fire this many times, then disarm; 0 = no limit.
        hits: hits since arming; fired: firings so far.
    """

    name: str
    action: str
    delay_ms: int = 0
    timeout_ms: int = 0
    nth: int = 1
    count: int = 1
    hits: int = 0
    fired: int = 0
    spent: bool = False
    armed_at: float = field(default_factory=time.time)

    def validate(self) -> "Arming":
        """Raises: FailpointSpecError: unknown name or action, or a value out of range."""
        if self.name not in REGISTRY:
            raise FailpointSpecError(f"unknown failpoint {self.name!r} (see `testbed failpoints`)")
        if self.action not in ACTIONS:
            raise FailpointSpecError(f"unknown action {self.action!r}; choose from: {', '.join(ACTIONS)}")
        if self.nth < 1 or self.count < 0 or self.delay_ms < 0 or self.timeout_ms < 0:
            raise FailpointSpecError("nth must be >= 1; count, delay_ms and timeout_ms must be >= 0")
        if self.action == "count":
            self.count = 0
        return self

    def spec(self) -> str:
        arg = f"({self.delay_ms})" if self.action == "delay" else (
            f"({self.timeout_ms})" if self.action == "pause" and self.timeout_ms else "")
        return f"{self.name}={self.action}{arg}@{self.nth}x{self.count}"


_SPEC = re.compile(r"^\s*(?P<name>[a-z0-9.-]+)\s*=\s*(?P<action>[a-z]+)\s*(?:\((?P<ms>\d+)\))?"
                   r"\s*(?:@(?P<nth>\d+))?\s*(?:x(?P<count>\d+))?\s*$")


def parse_spec(spec: str) -> Arming:
    """``NAME=ACTION[(MS)][@N][xCOUNT]`` -> a validated :class:`Arming`.

    MS is delay_ms for ``delay``, timeout_ms for ``pause``. Defaults: @1, x1.

    Raises:
        FailpointSpecError: malformed, unknown name or action.
    """
    m = _SPEC.match(spec)
    if not m:
        raise FailpointSpecError(f"bad failpoint spec {spec!r}; expected NAME=ACTION[(MS)][@N][xCOUNT]")
    action, ms = m["action"], int(m["ms"] or 0)
    if action == "delay" and m["ms"] is None:
        raise FailpointSpecError(f"{spec!r}: delay needs a duration, e.g. delay(200)")
    return Arming(m["name"], action, delay_ms=ms if action == "delay" else 0,
                  timeout_ms=ms if action == "pause" else 0, nth=int(m["nth"] or 1),
                  count=int(m["count"]) if m["count"] is not None else 1).validate()


class Failpoints:
    """The armed failpoints of one process (use the module's :data:`FAILPOINTS`).

    ``armed`` is the dict of armed points: empty (falsy) when nothing is armed,
    so call sites pay one attribute read and a truth test.
    """

    def __init__(self) -> None:
        self.armed: dict[str, Arming] = {}
        self.total_fired: dict[str, int] = {}
        self._released: dict[str, asyncio.Event] = {}

    def arm(self, arming: Arming) -> Arming:
        """Arm (or re-arm, resetting its counters) ``arming.name``.

        Raises:
            FailpointSpecError: invalid arming.
        """
        arming.validate()
        arming.hits = arming.fired = 0
        self._release(arming.name)
        self.armed[arming.name] = arming
        log.info("failpoint armed", extra={"failpoint": arming.name, "spec": arming.spec()})
        return arming

    def disarm(self, name: str) -> Arming | None:
        """Disarm ``name`` (releasing a paused caller); return its last arming or None."""
        a = self.armed.pop(name, None)
        self._release(name)
        if a is not None:
            log.info("failpoint disarmed", extra={"failpoint": name, "hits": a.hits, "fired": a.fired})
        return a

    def disarm_all(self) -> None:
        """Disarm every failpoint and release every caller a ``pause`` still holds."""
        for name in list(self.armed):
            self.disarm(name)
        for name in list(self._released):
            self._release(name)

    def _release(self, name: str) -> None:
        ev = self._released.pop(name, None)
        if ev is not None:
            ev.set()

    def arm_specs(self, specs: list[str] | tuple[str, ...]) -> None:
        """Arm every spec (the --failpoint flag, the env var). Raises FailpointSpecError."""
        for s in specs:
            self.arm(parse_spec(s))

    def listing(self) -> list[dict]:
        """Every registered failpoint: {name, description, armed spec or "", hits, fired, total_fired}."""
        out = []
        for name, desc in REGISTRY.items():
            a = self.armed.get(name)
            out.append({"name": name, "description": desc, "armed": a.spec() if a else "",
                        "hits": a.hits if a else 0, "fired": a.fired if a else 0,
                        "total_fired": self.total_fired.get(name, 0)})
        return out

    def _due(self, name: str) -> Arming | None:
        a = self.armed.get(name)
        if a is None:
            return None
        a.hits += 1
        if a.action == "count" or a.hits < a.nth or a.spent:
            return None
        a.fired += 1
        self.total_fired[name] = self.total_fired.get(name, 0) + 1
        if a.count and a.fired >= a.count:
            if a.action == "pause":
                a.spent = True  # stays listed until it releases its callers (disarm, heal, timeout)
            else:
                self.armed.pop(name, None)
        log.warning("failpoint fired", extra={"failpoint": name, "action": a.action, "hit": a.hits,
                                              "fired": a.fired})
        return a

    def hit_sync(self, name: str) -> None:
        """The synchronous call site: fire ``crash`` or ``error`` (``delay`` sleeps the
        thread; ``pause`` is not supported here and acts as an ``error``).

        Raises:
            FailpointError: an armed ``error`` fired.
        """
        a = self._due(name)
        if a is None:
            return
        if a.action == "crash":
            crash(name)
        if a.action == "delay":
            time.sleep(a.delay_ms / 1000)
            return
        raise FailpointError(name)

    async def hit(self, name: str) -> None:
        """The asynchronous call site; see the module doc for the actions.

        Raises:
            FailpointError: an armed ``error`` fired.
        """
        a = self._due(name)
        if a is None:
            return
        if a.action == "crash":
            crash(name)
        elif a.action == "error":
            raise FailpointError(name)
        elif a.action == "delay":
            await asyncio.sleep(a.delay_ms / 1000)
        elif a.action == "pause":
            # Released by DisarmFailpoint (also once the count is used up) or the timeout.
            ev = self._released.setdefault(name, asyncio.Event())
            try:
                await asyncio.wait_for(ev.wait(), a.timeout_ms / 1000 if a.timeout_ms else None)
            except asyncio.TimeoutError:
                self._release(name)
            if a.spent and self.armed.get(name) is a:
                self.armed.pop(name, None)  # released: this arming has ended


def crash(name: str) -> None:
    """Flush every log handler, then SIGKILL this process (no cleanup at all)."""
    log.critical("failpoint crash", extra={"failpoint": name, "pid": os.getpid()})
    for h in logging.getLogger().handlers:
        try:
            h.flush()
            if hasattr(h, "stream") and hasattr(h.stream, "fileno"):
                os.fsync(h.stream.fileno())
        except (OSError, ValueError):
            pass
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # pragma: no cover - SIGKILL does not return


FAILPOINTS = Failpoints()
"""The process-wide failpoints (each node process has exactly one)."""
