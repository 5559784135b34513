"""The fault schedule: which fault fires when, generated from the seed.

A schedule is a list of steps written to ``runs/<id>/schedule.json`` and
replayed as is by ``testbed replay``. Triggers are logical: a step fires when
the producer's source position reaches ``at`` (events emitted), not after a
wall-clock delay, so a seed replays the same story. Durations (how long a node
stays down, how long a link fault stays armed) are in ms.

Step shapes (``f`` picks the nemesis, harness.nemesis.NEMESES):

    {"at": 400, "f": "kill", "node": "processor", "down_ms": 300}
    {"at": 900, "f": "pause", "node": "broker", "for_ms": 400}
    {"at": 1200, "f": "link", "link": "processor-sink", "for_ms": 800,
     "fault": {"kind": "drop-response", "probability": 0.5, "count": 3}}
    {"at": 0, "arm": true, "f": "link", "link": "producer-broker",
     "fault": {"kind": "drop-response", "method": "Produce", "count": 2, "after_calls": 48}}

    {"at": 0, "arm": true, "f": "failpoint", "node": "processor", "action": "crash",
     "name": "processor.after-checkpoint-before-commit", "nth": 3, "down_ms": 300}

    {"at": 300, "f": "corrupt", "node": "broker", "file": "orders-0/*.log", "how": "flip"}
    {"at": 200, "f": "snapshot", "node": "processor", "id": "early"}
    {"at": 700, "f": "rollback", "node": "processor", "id": "early"}
    {"at": 700, "f": "wipe", "node": "sink"}      (harness/nemesis/datadir.py)

A step with ``"arm": true`` is applied before the producer starts and stays
until the final heal; its trigger is the proxy's call count (``after_calls``),
which is the most reproducible trigger a link has.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

BATCH_SIZE = 100
"""The producer batch size the call-count triggers assume (the campaign default)."""
PRODUCE_CALLS_PER_BATCH = 4
"""Produce calls per batch: one per partition (4 partitions, 16 accounts)."""

FAULT_KINDS = ("kill-producer", "kill-broker", "kill-processor", "kill-sink", "pause-processor",
               "pause-broker", "drop-request", "drop-response", "sink-drop-response", "delay")
"""Names accepted by ``--faults``; each expands to one step (see :func:`step_for`)."""

DEFAULT_FAULTS = ("drop-response", "kill-processor", "drop-request", "kill-broker",
                  "sink-drop-response", "kill-producer", "pause-processor", "kill-processor")


class ScheduleError(ValueError):
    """A schedule file or a --faults list is invalid; the message says which entry."""


def step_for(kind: str, at: int, rng: random.Random, batch_size: int = BATCH_SIZE) -> dict:
    """One schedule step of ``kind`` firing at producer position ``at``."""
    if kind.startswith("kill-"):
        return {"at": at, "f": "kill", "node": kind[5:], "down_ms": rng.choice((200, 300, 500))}
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
    if kind == "delay":
        return {"at": at, "f": "link", "link": "processor-broker", "for_ms": 1000,
                "fault": {"kind": "delay", "method": "Fetch", "delay_ms": 100, "jitter_ms": 50}}
    raise ScheduleError(f"unknown fault {kind!r}; choose from: {', '.join(FAULT_KINDS)}")


def generate(seed: int, events: int, faults: tuple[str, ...] | list[str] = DEFAULT_FAULTS,
             batch_size: int = BATCH_SIZE) -> dict:
    """A schedule spreading ``faults`` over the first ~85% of the workload.

    The positions and durations are a pure function of (seed, events, faults,
    batch size); an empty ``faults`` gives a schedule with no step.

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
        steps.append(step_for(kind, rng.randint(lo, max(lo, hi)), rng, batch_size))
    return {"seed": seed, "events": events, "batch_size": batch_size, "faults": list(faults), "steps": steps}


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
    except ValueError as e:
        raise ScheduleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(schedule, dict) or not isinstance(schedule.get("steps", []), list):
        raise ScheduleError(f"{path}: expected {{\"steps\": [...]}}")
    validate_steps(schedule["steps"], str(path))
    return schedule


NODES = ("producer", "broker", "processor", "sink")
LINKS = ("producer-broker", "processor-broker", "processor-sink")


def validate_steps(steps: list, where: str) -> None:
    """Check every step names a known nemesis, node or link, and a position >= 0.

    Raises:
        ScheduleError: names the step and the field.
    """
    from harness.nemesis import NEMESES
    from harness.nemesis.datadir import KINDS as DATADIR_KINDS, validate_step as datadir_step_error
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or "at" not in step or "f" not in step:
            raise ScheduleError(f"{where}: step {i} needs 'at' and 'f'")
        if not isinstance(step["at"], int) or step["at"] < 0:
            raise ScheduleError(f"{where}: step {i}: 'at' must be an integer >= 0, got {step['at']!r}")
        if step["f"] not in NEMESES:
            raise ScheduleError(f"{where}: step {i}: unknown 'f' {step['f']!r}; choose from: {', '.join(NEMESES)}")
        if "node" in step and step["node"] not in NODES:
            raise ScheduleError(f"{where}: step {i}: unknown node {step['node']!r}; choose from: {', '.join(NODES)}")
        if step["f"] == "link" and step.get("link") not in LINKS:
            raise ScheduleError(f"{where}: step {i}: unknown link {step.get('link')!r}; choose from: {', '.join(LINKS)}")
        if step["f"] in DATADIR_KINDS and (error := datadir_step_error(step)):
            raise ScheduleError(f"{where}: step {i}: {error}")
