"""The fault schedule: which fault fires when, generated from the seed.

A schedule is a list of steps written to ``runs/<id>/schedule.json`` and
replayed as is by ``testbed replay``. Triggers are logical: a step fires when
the producer's source position reaches ``at`` (events emitted), not after a
wall-clock delay, so a seed replays the same story. Durations (how long a node
stays down, how long a link fault stays armed) are in ms.

Step shapes (``f`` picks the nemesis, harness.nemesis.NEMESES):

    {"at": 400, "f": "kill", "node": "processor", "down_ms": 300, "timed": true}
    {"at": 400, "f": "kill", "node": "processor", "down_ms": 300, "trigger": "failpoint"}
        # crash at the failpoint hit ~position 400 reaches (harness.nemesis.logical)
    {"at": 500, "f": "stop", "node": "processor", "down_ms": 300}            # SIGTERM: graceful
    {"at": 500, "f": "stop", "node": "processor", "trigger": "failpoint"}
        # paused at the Nth hit of its kill point first (also snapshot, rollback, wipe;
        # optional "nth"); a power loss, a producer pause or a NATS server's kill or
        # corruption with "trigger": "failpoint" first holds the producer at its Nth batch
        # and lets the pipeline drain (harness.nemesis.logical, harness.nemesis.quiesce)
    {"at": 300, "f": "kill", "node": "processor", "trigger": "failpoint", "until": "next"}
    {"at": 400, "f": "kill", "node": "mosquitto", "down_ms": 300, "trigger": "failpoint"}
        # the processor killed (or, with "pause", stopped) at the producer's batch of 300 and
        # left down; mosquitto killed at its batch of 400, then the processor brought back
        # and subscribed before the producer goes on (harness.nemesis.hold)
    {"at": 300, "f": "kill", "node": "processor", "point": "processor.after-checkpoint-writes-outstanding",
     "trigger": "failpoint"}   # exactly-once/idempotent with drain-before-checkpoint off: the
        # Kth Upsert dropped, then a crash at the next checkpoint it is outstanding at
    {"at": 0, "f": "zombie", "node": "processor-2", "nth": 1, "trigger": "failpoint"}
        # --processors 2+: its pause armed before the workload (harness.nemesis.group), timed
    {"at": 200, "f": "zombie", "node": "processor", "trigger": "failpoint", "release": "drained"}
        # the producer held at 200, released by states, not after_ms (harness.nemesis.zombie_release)
    {"at": 500, "f": "stop", "node": "sink", "kill_after_ms": 20, "down_ms": 300}  # kill -9 mid-shutdown
    {"at": 700, "after_ms": 500, "f": "kill", "node": "broker"}   # 500 ms after position 700
    {"at": 900, "f": "pause", "node": "broker", "for_ms": 400}
    {"at": 1200, "f": "link", "link": "processor-sink", "for_ms": 800,
     "fault": {"kind": "drop-response", "probability": 0.5, "count": 3}}
    {"at": 0, "arm": true, "f": "link", "link": "producer-broker",
     "fault": {"kind": "drop-response", "method": "Produce", "count": 2, "after_calls": 48}}

    {"at": 0, "arm": true, "f": "failpoint", "node": "processor", "action": "crash",
     "name": "processor.after-checkpoint-before-commit", "nth": 3, "down_ms": 300}

    {"at": 500, "f": "power-loss", "nodes": ["broker"], "down_ms": 200}   (--storage lazy;
     also "fsync-error" and "disk-full", harness.nemesis.storage)

    {"at": 300, "f": "corrupt", "node": "broker", "file": "orders-0/*.log", "how": "flip"}
    {"at": 200, "f": "snapshot", "node": "processor", "id": "early"}
    {"at": 700, "f": "rollback", "node": "processor", "id": "early"}
    {"at": 700, "f": "wipe", "node": "sink"}      (harness/nemesis/datadir.py)

A step with ``"arm": true`` is applied before the producer starts (a link
fault before the processor starts too) and stays until the final heal, which
comes once the pipeline has drained; its trigger is the proxy's call count
(``after_calls``), which is the most reproducible trigger a link has.

Steps run concurrently: each fires at its position (plus ``after_ms``) as its
own task, so a step that lasts (a pause, a downtime) overlaps the next ones.
A step may carry ``"must_fire": true``: a scenario whose such step did not
fire is not as expected (harness/scenarios/runner.py).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

BATCH_SIZE = 100
"""The producer batch size the call-count triggers assume (the campaign default)."""
PRODUCE_CALLS_PER_BATCH = 4
"""Produce calls per batch: one per partition (4 partitions, 16 accounts)."""

FAULT_KINDS = ("kill-producer", "kill-broker", "kill-processor", "kill-sink", "pause-processor",
               "pause-broker", "drop-request", "drop-response", "sink-drop-response", "delay",
               "stop-broker", "stop-processor", "stop-sink", "stop-producer",
               "power-loss-broker", "power-loss-all",
               "late-commit", "kill-processor-after-checkpoint", "kill-processor-after-commit",
               "kill-nats-leader", "kill-nats-follower", "stop-nats-leader", "pause-nats-leader",
               "partition-nats-leader", "partition-nats-follower", "latency-nats-producer",
               "reset-nats-producer", "reset-nats-processor",
               "kill-mosquitto", "stop-mosquitto", "pause-mosquitto",
               "kill-processor-writes-outstanding", "zombie", "add-processor", "kill-processor-2")
"""Names accepted by ``--faults``; each expands to one step (see :func:`step_for`)."""

GROUP_FAULT_KINDS = ("zombie", "add-processor", "kill-processor-2")
"""Consumer-group faults (harness.nemesis.group; need ``--processors 2`` or more): a zombie
member, a member added mid-run, a kill of member 2. explore mixes them in on a group only."""

ZOMBIE_RECORDS_PER_HIT = 200
ZOMBIE_MAX_NTH = 2
# A step's durations (after_ms, kill_after_ms, down_ms, for_ms) are capped: the run waits for
# every step, so a pause of 10**11 ms held the command for years (the catalog uses at most 10 s).
MAX_STEP_MS = 600_000
"""A zombie's Nth hit of ``processor.member-before-output`` is its position // 200, at most
2: in exactly-once the point is hit once per checkpoint of the member (every 500 ms), and
a 600-order trial at 1000 orders/s gives a member two or three; a larger N never fired."""
ZOMBIE_TIMEOUT_MS = 15_000
"""How long a generated zombie waits for its failpoint (ms; the nemesis's default is 60 s,
which a trial whose member never reached the Nth hit spent doing nothing)."""

NATS_DEFAULT_FAULTS = ("kill-nats-leader", "kill-processor", "pause-nats-leader", "sink-drop-response",
                       "kill-producer", "kill-nats-follower", "pause-processor", "kill-processor")
"""The default mix for --broker nats: no gRPC proxy on the broker links, servers by role."""

NATS_EXTERNAL_DEFAULT_FAULTS = ("latency-nats-producer", "kill-processor", "reset-nats-producer",
                                "sink-drop-response", "kill-producer", "reset-nats-processor",
                                "pause-processor", "kill-processor")
"""The default mix for --nats-url (a cluster the harness does not run): link faults on the
client links and faults of the testbed's own nodes."""

MQTT_DEFAULT_FAULTS = ("kill-mosquitto", "kill-processor", "pause-mosquitto", "sink-drop-response",
                       "kill-producer", "stop-mosquitto", "pause-processor", "kill-processor")
"""The default mix for --broker mosquitto: the broker's process faults in place of the
gRPC proxy's link faults (none on the broker links with MQTT)."""

DEFAULT_FAULTS = ("drop-response", "kill-processor", "drop-request", "kill-broker",
                  "sink-drop-response", "kill-producer", "pause-processor", "kill-processor")


class ScheduleError(ValueError):
    """A schedule file or a --faults list is invalid; the message says which entry."""


LOGICAL_KILLS = ("kill-producer", "kill-broker", "kill-processor", "kill-sink",
                 "kill-processor-after-checkpoint", "kill-processor-after-commit",
                 "kill-processor-writes-outstanding", "kill-processor-2")
"""Kills that ``generate`` triggers at a failpoint's Nth hit (harness.nemesis.logical)."""

TWOPC_KILLS = {"kill-processor-after-checkpoint": "processor.after-checkpoint-before-commit",
               "kill-processor-after-commit": "processor.after-sink-commit"}
"""Processor kills at a step of the two-phase commit (``"point"`` of the kill step): in
exactly-once/transactional the crash lands there (Flink's windows between checkpoint and
commit, scenarios s05, s06); in the other modes they are the mode's usual processor kill."""

POINT_KILLS = TWOPC_KILLS | {"kill-processor-writes-outstanding": "processor.after-checkpoint-writes-outstanding"}
"""Processor kills at a named protocol step (``"point"``): the two-phase-commit windows, and
a checkpoint taken with sink writes still outstanding (reached only with the
``drain-before-checkpoint`` ablation, scenario s04; elsewhere the mode's usual processor kill)."""

LOGICAL_STOPS = ("stop-processor", "stop-sink", "stop-broker")
"""Stops that ``generate`` makes logical (the node pauses at its kill point's Nth hit, then
SIGTERM: harness.nemesis.logical.stop_triggers), unless a logical kill of the same node is in
the schedule (one arming per failpoint name: the two would share the point)."""

LATE_COMMIT_FOR_MS = 3000
"""How long a ``late-commit`` holds the processor's CommitOffset (ms): past its 2 s deadline
and its retry, so newer commits reach the broker first (shared/incidents-2.md #9, s12)."""


def step_for(kind: str, at: int, rng: random.Random, batch_size: int = BATCH_SIZE, logical: bool = True) -> dict:
    """One schedule step of ``kind`` firing at producer position ``at``. With ``logical``: a
    kill of the producer, broker, processor (or group member 2) or sink at a failpoint's Nth hit,
    a stop of the processor, sink or broker after a pause at its kill point's Nth hit, a power
    loss once the producer is held at its Nth batch and the rest drained (``"trigger":
    "failpoint"``, harness.nemesis.logical); a zombie with the producer held at ``at`` and
    released by observed states (``"release": "drained"``, harness.nemesis.zombie_release); every
    other step (pauses: SIGSTOP has no failpoint; link faults held for a while; add-processor)
    at the position, marked ``"timed": true``. Without ``logical`` (or with the producer killed
    or stopped in the schedule: its restart drops the arming of the hold) a zombie's pause is
    armed before the workload at its Nth hit and it is released ``after_ms`` after the
    rebalance, marked ``"timed": true``."""
    step = _step_for(kind, at, rng, batch_size)
    if kind == "zombie" and logical:   # held producer, released by states (harness.nemesis.zombie_release)
        return {"at": step.pop("position"), "f": "zombie", "node": step["node"], "trigger": "failpoint",
                "release": "drained", "timeout_ms": ZOMBIE_TIMEOUT_MS}
    step.pop("position", None)
    if kind == "zombie":   # its pause armed before the workload at its Nth hit, released after_ms later
        step |= {"trigger": "failpoint", "timed": True}
    elif logical and (kind in LOGICAL_KILLS or kind in LOGICAL_STOPS or kind.startswith("power-loss-")):
        step["trigger"] = "failpoint"   # kill-producer: producer.after-send-before-ack
    elif not step.get("arm"):
        step["timed"] = True
    return step


def _kill_nodes(faults) -> set[str]:
    """Nodes that a logical kill of ``faults`` crashes at their kill point."""
    return {"processor" if k in POINT_KILLS else k[5:] for k in faults if k in LOGICAL_KILLS}


def _logical(kind: str, faults, logical: bool) -> bool:
    """Whether ``kind``'s step in a schedule of ``faults`` gets a logical trigger: a stop not
    when a logical kill of its node shares the point; a power loss not when the producer is
    killed or stopped (a restart of the producer drops the arming of its quiesce pause)."""
    if not logical:
        return False
    if kind in LOGICAL_STOPS:
        return kind[5:] not in _kill_nodes(faults)
    if kind.startswith("power-loss-") or kind == "zombie":
        return not {"kill-producer", "stop-producer"} & set(faults)
    return True


def _step_for(kind: str, at: int, rng: random.Random, batch_size: int = BATCH_SIZE) -> dict:
    if kind.endswith(("-nats-leader", "-nats-follower")):   # --broker nats: a server by role
        f, role = kind.split("-", 1)[0], kind.rsplit("-", 1)[1]
        step = {"at": at, "f": f, "node": "nats", "role": role}
        if f == "pause":
            step["for_ms"] = rng.choice((300, 500, 800))
        elif f == "partition":   # long enough for a Raft election on the majority side
            step["for_ms"] = rng.choice((6000, 8000, 10000))
        else:
            step["down_ms"] = rng.choice((200, 300, 500))
        return step
    if kind.startswith(("latency-nats-", "reset-nats-")):   # a TCP toxic on the client's links
        link = f"{kind.rsplit('-', 1)[1]}-broker"
        fault = {"kind": "latency", "delay_ms": 50, "jitter_ms": 25} if kind.startswith("latency-") \
            else {"kind": "reset", "count": 1}
        return {"at": at, "f": "link", "link": link, "for_ms": 2000, "fault": fault}
    if kind in POINT_KILLS:
        return {"at": at, "f": "kill", "node": "processor", "point": POINT_KILLS[kind],
                "down_ms": rng.choice((200, 300, 500))}
    if kind == "zombie":   # armed from the start (position 0): its Nth hit is the trigger
        return {"at": 0, "f": "zombie", "node": rng.choice(("processor", "processor-2")),
                "nth": max(1, min(ZOMBIE_MAX_NTH, at // ZOMBIE_RECORDS_PER_HIT)), "after_ms": 1000,
                "timeout_ms": ZOMBIE_TIMEOUT_MS, "position": at}
    if kind == "add-processor":
        return {"at": at, "f": "add-processor"}
    if kind.startswith("kill-"):
        return {"at": at, "f": "kill", "node": kind[5:], "down_ms": rng.choice((200, 300, 500))}
    if kind.startswith("stop-"):  # SIGTERM, graceful; a schedule file can add "kill_after_ms"
        return {"at": at, "f": "stop", "node": kind[5:], "down_ms": rng.choice((200, 300, 500))}
    if kind.startswith("pause-"):
        return {"at": at, "f": "pause", "node": kind[6:], "for_ms": rng.choice((300, 500, 800))}
    if kind in ("drop-request", "drop-response"):
        # Armed before the workload starts with a call-count trigger: the producer's
        # calls are a pure function of the workload (one Produce per partition of each
        # batch), so the same batches are hit in every run of the seed.
        return {"at": 0, "arm": True, "f": "link", "link": "producer-broker",
                "fault": {"kind": kind, "method": "Produce", "probability": 1.0, "count": 2,
                          "after_calls": max(1, at * PRODUCE_CALLS_PER_BATCH // batch_size)}}
    if kind == "sink-drop-response":
        return {"at": at, "f": "link", "link": "processor-sink", "for_ms": 1500,
                "fault": {"kind": "drop-response", "probability": 1.0, "count": 2}}
    if kind.startswith("power-loss-"):  # needs --storage lazy
        target = kind[len("power-loss-"):]
        return {"at": at, "f": "power-loss", "nodes": "all" if target == "all" else [target],
                "down_ms": rng.choice((200, 300, 500))}
    if kind == "delay":
        return {"at": at, "f": "link", "link": "processor-broker", "for_ms": 1000,
                "fault": {"kind": "delay", "method": "Fetch", "delay_ms": 100, "jitter_ms": 50}}
    raise ScheduleError(f"unknown fault {kind!r}; choose from: {', '.join(FAULT_KINDS)}")


def generate(seed: int, events: int, faults: tuple[str, ...] | list[str] = DEFAULT_FAULTS,
             batch_size: int = BATCH_SIZE, logical: bool = True) -> dict:
    """A schedule spreading ``faults`` over the first ~85% of the workload.

    The positions and durations are a pure function of (seed, events, faults,
    batch size); an empty ``faults`` gives a schedule with no step. With
    ``logical`` the kills of the producer, broker, processor and sink fire at a failpoint's
    Nth hit (harness.nemesis.logical); the other steps are timed.

    Raises:
        ScheduleError: an unknown fault name.
    """
    for k in faults:
        if k not in FAULT_KINDS:
            raise ScheduleError(f"unknown fault {k!r}; choose from: {', '.join(FAULT_KINDS)}")
    rng = random.Random(seed * 7919 + 17)
    n = len(faults)
    steps = []
    for i, kind in enumerate(faults):
        lo = int(events * (0.06 + 0.78 * i / max(n, 1)))
        hi = int(events * (0.06 + 0.78 * (i + 0.6) / max(n, 1)))
        at = rng.randint(lo, max(lo, hi))
        if kind == "late-commit":
            steps += late_commit_steps(at, rng)
            continue
        steps.append(step_for(kind, at, rng, batch_size, _logical(kind, faults, logical)))
    return {"seed": seed, "events": events, "batch_size": batch_size, "faults": list(faults), "steps": steps}


def late_commit_steps(at: int, rng: random.Random) -> list[dict]:
    """``late-commit``: the processor's first CommitOffset after position ``at`` is held
    (``late``: the caller gives up at its deadline) and delivered when the fault is removed
    :data:`LATE_COMMIT_FOR_MS` later, after newer commits; 500 ms later the processor is
    killed, so its restart reads the committed offsets (incidents-2 #9, scenario s12). Both
    steps are timed: the late delivery needs the newer commits to have happened first."""
    return [{"at": at, "f": "link", "link": "processor-broker", "for_ms": LATE_COMMIT_FOR_MS, "timed": True,
             "fault": {"kind": "late", "method": "CommitOffset", "count": 1, "hold_ms": 60000}},
            {"at": at, "after_ms": LATE_COMMIT_FOR_MS + 500, "f": "kill", "node": "processor",
             "down_ms": rng.choice((200, 300, 500)), "timed": True}]


def save(schedule: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(schedule, indent=2) + "\n")


def load(path: Path) -> dict:
    """Read a schedule file.

    Raises:
        ScheduleError: missing, not JSON, or a step without "at"/"f".
    """
    try:
        schedule = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ScheduleError(f"missing schedule file {path}") from None
    except OSError as e:
        raise ScheduleError(f"cannot read schedule file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ScheduleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(schedule, dict) or not isinstance(schedule.get("steps", []), list):
        raise ScheduleError(f"{path}: expected {{\"steps\": [...]}}")
    validate_steps(schedule["steps"], str(path))
    return schedule


NODES = ("producer", "broker", "processor", "sink", "nats", "nats-1", "nats-2", "nats-3", "mosquitto")
NATS_ROLES = ("leader", "follower", "any")
LINKS = ("producer-broker", "processor-broker", "processor-sink")
NATS_LINK = re.compile(r"^((producer|processor)-nats-\d+|route-nats-\d+-nats-\d+)$")
"""A NATS cluster's TCP links (harness/nats_links.py): client links and directed routes."""


def _is_member(node: object) -> bool:
    """``processor-K`` (K >= 2): a consumer-group member (harness/group_cluster.py)."""
    return isinstance(node, str) and node.startswith("processor-") and node[10:].isdigit() and int(node[10:]) >= 2


def validate_steps(steps: list, where: str) -> None:
    """Check every step names a known nemesis, node or link, and a position >= 0.

    Raises:
        ScheduleError: names the step and the field.
    """
    from harness.nemesis import NEMESES
    from harness.nemesis.datadir import KINDS as DATADIR_KINDS, validate_step as datadir_step_error
    from harness.nemesis.group import validate_step as group_step_error
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or "at" not in step or "f" not in step:
            raise ScheduleError(f"{where}: step {i} needs 'at' and 'f'")
        if not isinstance(step["at"], int) or isinstance(step["at"], bool) or step["at"] < 0:
            raise ScheduleError(f"{where}: step {i}: 'at' must be an integer >= 0, got {step['at']!r}")
        if step["f"] not in NEMESES:
            raise ScheduleError(f"{where}: step {i}: unknown 'f' {step['f']!r}; choose from: {', '.join(NEMESES)}")
        if "node" in step and step["node"] not in NODES and not _is_member(step["node"]):
            raise ScheduleError(f"{where}: step {i}: unknown node {step['node']!r}; choose from: {', '.join(NODES)}")
        for key in ("after_ms", "kill_after_ms", "down_ms", "for_ms"):
            if key in step and (not isinstance(step[key], int) or isinstance(step[key], bool)
                                or not 0 <= step[key] <= MAX_STEP_MS):
                raise ScheduleError(f"{where}: step {i}: {key!r} must be an integer in 0..{MAX_STEP_MS:,} "
                                    f"(ms), got {step[key]!r}")
        if "role" in step and (step.get("node") != "nats" or step["role"] not in NATS_ROLES):
            raise ScheduleError(f"{where}: step {i}: 'role' needs node \"nats\" and one of {', '.join(NATS_ROLES)}")
        if "must_fire" in step and not isinstance(step["must_fire"], bool):
            raise ScheduleError(f"{where}: step {i}: 'must_fire' must be true or false")
        if "window_batches" in step and (
                step["f"] not in ("kill", "partition") or step.get("node") != "nats" or step.get("trigger") != "failpoint"
                or not isinstance(step["window_batches"], int) or isinstance(step["window_batches"], bool)
                or step["window_batches"] < 1):
            raise ScheduleError(f"{where}: step {i}: 'window_batches' (an integer >= 1) needs a kill or partition "
                                f"of node \"nats\" with \"trigger\": \"failpoint\" (harness.nemesis.window)")
        if "until" in step and (step["until"] != "next" or step["f"] not in ("kill", "pause")
                                or step.get("trigger") != "failpoint"):
            raise ScheduleError(f"{where}: step {i}: 'until' must be \"next\", on a kill or pause with "
                                "\"trigger\": \"failpoint\" (harness.nemesis.hold)")
        if "when_fired" in step and (error := _when_fired_error(step)):
            raise ScheduleError(f"{where}: step {i}: {error}")
        if "synced" in step and step["f"] != "power-loss":
            raise ScheduleError(f"{where}: step {i}: 'synced' belongs on a power-loss step (harness.nemesis.storage)")
        if step["f"] == "partition":
            _validate_partition_step(step, f"{where}: step {i}")
        if step["f"] == "link" and step.get("link") not in LINKS and not NATS_LINK.match(str(step.get("link"))) and not (
                isinstance(step.get("link"), str) and step["link"].endswith(("-broker", "-sink"))
                and _is_member(step["link"].rsplit("-", 1)[0])):
            raise ScheduleError(f"{where}: step {i}: unknown link {step.get('link')!r}; choose from: {', '.join(LINKS)}")
        if step["f"] == "link" and (error := _link_fault_error(step.get("fault"))):
            raise ScheduleError(f"{where}: step {i}: {error}")
        if step["f"] in DATADIR_KINDS and (error := datadir_step_error(step)):
            raise ScheduleError(f"{where}: step {i}: {error}")
        if step["f"] in ("zombie", "add-processor") and (error := group_step_error(step)):
            raise ScheduleError(f"{where}: step {i}: {error}")
        _validate_storage_step(step, f"{where}: step {i}")
    if error := _until_next_error(steps):
        raise ScheduleError(f"{where}: {error}")


def _until_next_error(steps: list[dict]) -> str | None:
    """A node held ``"until": "next"`` is brought back by the next logical step that holds the
    producer (harness.nemesis.logical.is_quiesce_step). A later failpoint kill of a builtin
    node is not one: the held node stayed down through it, the pipeline stalled 10 s and the
    final heal revived it ("drained only after the final heal"). Refused, naming both steps."""
    from harness.nemesis.logical import is_quiesce_step
    order = sorted(range(len(steps)), key=lambda j: steps[j]["at"])
    for pos, i in enumerate(order):
        if not steps[i].get("until"):
            continue
        later = [j for j in order[pos + 1:] if steps[j].get("trigger") == "failpoint"]
        if later and not is_quiesce_step(steps[later[0]]):
            return (f"step {i} holds {steps[i].get('node')} \"until\": \"next\", but the next logical "
                    f"step ({later[0]}, {steps[later[0]]['f']} of {steps[later[0]].get('node', '?')}) does not "
                    "release it: it must be a kill of mosquitto or nats, a power-loss, a pause of the "
                    "producer or another \"until\" step, with \"trigger\": \"failpoint\" (harness.nemesis.hold)")
    return None


_FAULT_INTS = ("count", "after_calls", "delay_ms", "jitter_ms", "hold_ms", "rate_kbps", "bytes")


def _link_fault_error(fault: object) -> str | None:
    """What is wrong with a link step's ``fault`` before any proxy sees it, or None: the checks
    the gRPC proxy (nodes/proxy/table.py) and the TCP proxy (nodes/tcpproxy/table.py) share.
    Without them the proxy refused the fault at run time (INVALID_ARGUMENT), the step was
    recorded as ``info`` and the run went on without it (verdict "not-exercised")."""
    import math

    from nodes.common.limits import MAX_FAULT_MS
    from nodes.proxy.faults import FAULTS
    from nodes.tcpproxy.toxics import TOXICS
    if not isinstance(fault, dict) or not isinstance(fault.get("kind"), str):
        return "a link step needs 'fault': an object with a 'kind'"
    if fault["kind"] not in FAULTS and fault["kind"] not in TOXICS:
        known = list(FAULTS) + [k for k in TOXICS if k not in FAULTS]
        return f"unknown fault kind {fault['kind']!r}; choose from: {', '.join(known)}"
    p = fault.get("probability", 1.0)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0 <= p <= 1:
        return f"fault 'probability' must be a number in [0, 1], got {p!r}"
    for key in _FAULT_INTS:
        v = fault.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            return f"fault {key!r} must be an integer >= 0, got {v!r}"
        if key.endswith("_ms") and v > MAX_FAULT_MS:
            return f"fault {key!r} must be at most {MAX_FAULT_MS:,} ms (one hour), got {v!r}"
    return None


def _is_link(link: object) -> bool:
    """A link a step may name: the three gRPC links, a NATS TCP link, or a group member's."""
    return isinstance(link, str) and (link in LINKS or bool(NATS_LINK.match(link)) or (
        link.endswith(("-broker", "-sink")) and _is_member(link.rsplit("-", 1)[0])))


def _when_fired_error(step: dict) -> str | None:
    """Why a step's ``when_fired`` cannot run (harness.nemesis.failpoint waits for it), or None.
    Unchecked, a string or a missing "link" was a TypeError / KeyError in the nemesis: the
    failpoint was never armed and the run went on to a verdict as if nothing was wrong."""
    from nodes.proxy.faults import FAULTS
    from nodes.tcpproxy.toxics import TOXICS
    when = step["when_fired"]
    if step["f"] != "failpoint":
        return "'when_fired' belongs on a failpoint step (harness.nemesis.failpoint)"
    if not isinstance(when, dict) or set(when) != {"link", "kind"}:
        return f"'when_fired' must be {{\"link\": LINK, \"kind\": KIND}}, got {when!r:.80}"
    if not _is_link(when["link"]):
        return f"'when_fired' link {when['link']!r:.60} unknown; choose from: {', '.join(LINKS)}"
    if when["kind"] not in FAULTS and when["kind"] not in TOXICS:
        return f"'when_fired' kind {when['kind']!r:.60} unknown; choose from: {', '.join(sorted(set(FAULTS) | set(TOXICS)))}"
    return None


def _validate_partition_step(step: dict, where: str) -> None:
    nodes = step.get("nodes")
    if nodes is None and step.get("node") != "nats":
        raise ScheduleError(f"{where}: partition needs \"node\": \"nats\" with a role, or \"nodes\": [\"nats-1\", ...]")
    if nodes is not None and (not isinstance(nodes, list) or not nodes
                              or any(not (isinstance(n, str) and re.fullmatch(r"nats-\d+", n)) for n in nodes)):
        raise ScheduleError(f"{where}: partition 'nodes' must be a non-empty list of NATS servers "
                            f"(nats-1, ...), got {nodes!r}")
    if step.get("how", "drop") not in ("drop", "reject"):
        raise ScheduleError(f"{where}: partition 'how' must be \"drop\" or \"reject\", got {step.get('how')!r}")
    if not isinstance(step.get("clients", False), bool):
        raise ScheduleError(f"{where}: partition 'clients' must be true or false")


STORAGE_STEPS = ("power-loss", "fsync-error", "disk-full")
"""Steps that need lazy storage (``--storage lazy``, harness.nemesis.storage)."""


def _validate_storage_step(step: dict, where: str) -> None:
    f = step["f"]
    if f == "power-loss":
        nodes = step.get("nodes", "all")
        if nodes != "all" and (not isinstance(nodes, list) or not nodes or any(n not in NODES for n in nodes)):
            raise ScheduleError(f"{where}: 'nodes' must be \"all\" or a list of {', '.join(NODES)}, got {nodes!r}")
    elif f in ("fsync-error", "disk-full") and step.get("node") not in NODES:
        raise ScheduleError(f"{where}: {f} needs 'node', one of {', '.join(NODES)}")
    if f == "power-loss" and not isinstance(step.get("synced", ""), str):
        raise ScheduleError(f"{where}: 'synced' must be a glob string")
    if f == "fsync-error" and not isinstance(step.get("path", ""), str):
        raise ScheduleError(f"{where}: 'path' must be a glob string")
    if f == "disk-full" and (not isinstance(step.get("after_bytes"), int) or step["after_bytes"] < 0):
        raise ScheduleError(f"{where}: disk-full needs 'after_bytes', an integer >= 0")


def needs_lazy_storage(schedule: dict) -> bool:
    """True if a step of ``schedule`` is a storage fault."""
    return any(s.get("f") in STORAGE_STEPS for s in schedule.get("steps", []))
