"""The faults of one mode's run, read from its files: what hit where, and when.

Sources (Jepsen's nemesis history plus the fault injectors' own logs):

- ``nemesis.jsonl``: kills and pauses from the ``invoke`` to the ``ok`` (a
  kill's interval covers the downtime and the restart to SERVING); link faults
  armed for ``for_ms``; failpoints armed (``f`` "failpoint"), the crashes they
  caused (``failpoint-crash``) and the restarts (``failpoint-restart``); the
  final ``heal``. An ``info`` completion means the outcome is unknown.
- ``proxy-<link>/faults.jsonl``: link faults armed (``control`` ``add``) until
  removed (``remove`` / ``heal``), and every firing on a call;
- ``<node>/<node>.log``: ``"failpoint fired"`` lines (nodes/common/failpoints.py).

Times here are unix seconds; :mod:`harness.report.timeline` shifts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.history import read_history

NODES = ("producer", "broker", "processor", "sink")


@dataclass
class Interval:
    """A fault that lasted, on ``lane`` (a node or a link name), from ``start`` to ``end`` (s)."""

    lane: str
    kind: str           # "kill" | "pause" | "link" (armed) | "failpoint" (armed) | "crash" (failpoint crash)
    start: float
    end: float
    label: str          # e.g. "kill -9 processor (down 500 ms)"
    outcome: str = "ok"  # "ok" | "info" (the nemesis could not tell whether it applied)


@dataclass
class Mark:
    """A point event at ``t`` (s): a link fault firing on a call, a failpoint hit, the heal."""

    lane: str
    kind: str           # "fired" | "failpoint" | "heal"
    t: float
    label: str


def _who(v: dict) -> str:
    """The step's node, with its role for a NATS server chosen by role ("nats leader")."""
    return f"{v.get('node')} {v['role']}" if v.get("role") else str(v.get("node"))


def describe(f: str, v: dict) -> str:
    """A step in words: "kill -9 processor (down 500 ms)", "drop-response on producer-broker ..."."""
    if f == "kill":
        down = "until the next step" if v.get("until") else f"{v.get('down_ms', '?')} ms"
        return f"kill -9 {_who(v)} (down {down})"
    if f == "pause":
        return f"pause {_who(v)} ({'until the next step' if v.get('until') else str(v.get('for_ms', '?')) + ' ms'})"
    if f == "corrupt":
        return f"corrupt data files of {_who(v)} ({v.get('bytes', 64)} bytes each), restart"
    if f == "stop":
        cut = f", SIGKILL after {v['kill_after_ms']} ms" if v.get("kill_after_ms") is not None else ""
        return f"SIGTERM {_who(v)}{cut} (down {v.get('down_ms', '?')} ms)"
    if f == "link":
        fault = v.get("fault") or {}
        extra = f" after {fault['after_calls']} calls" if "after_calls" in fault else ""
        return f"{fault.get('kind', 'fault')} on {v.get('link')}{extra}"
    if f == "partition":   # NATS routes cut (harness/nemesis/partition.py)
        who = _who(v) if v.get("node") else "+".join(v.get("nodes") or [])
        dur = f"{v['for_ms']} ms" if "for_ms" in v else "until the heal"
        return f"partition {who} from the other servers ({v.get('how', 'drop')}, {dur})"
    if f == "failpoint":
        nth = f" on hit {v['nth']}" if v.get("nth", 1) != 1 else ""
        return f"failpoint {v.get('name')} armed: {v.get('action', 'crash')}{nth}"
    if f == "zombie":
        return (f"zombie: {_who(v)} paused at its hit {v.get('nth', 1)} of processor.member-before-output, "
                "SIGSTOP past its session timeout, resumed")
    if f == "add-processor":
        return "add a processor (scale out)"
    if f == "power-loss":
        nodes = v.get("nodes", "all")
        return f"power loss of {nodes if isinstance(nodes, str) else ', '.join(nodes)} (unsynced writes dropped)"
    if f == "fsync-error":
        return f"fsync error (EIO) on {v.get('node')} {v.get('path', 'any file')}"
    if f == "disk-full":
        return f"disk full on {v.get('node')} after {v.get('after_bytes', 0)} bytes"
    return f


def _steps(ops: list[dict]) -> tuple[list[tuple[float, str, dict, dict]], float | None, float]:
    """(invoke time, f, invoke value, completion op) per schedule step, the heal's time
    (None if none) and the time of the last record."""
    pending: dict[int, tuple[float, dict]] = {}
    out, heal = [], None
    for op in ops:
        f, typ, v = op.get("f"), op.get("type"), op.get("value") or {}
        if f == "heal" and typ == "invoke":
            heal = op["time"]
        elif typ == "invoke" and "step" in v:
            pending[v["step"]] = (op["time"], v)
        elif v.get("step") in pending:
            t, inv = pending.pop(v["step"])
            out.append((t, f, inv, op))
    return out, heal, max((op["time"] for op in ops), default=0.0)


def _crashes(ops: list[dict]) -> list[Interval]:
    """A failpoint crash: from the harness noticing the exit to the restart."""
    out, down = [], {}
    for op in ops:
        v = op.get("value") or {}
        if op.get("f") == "failpoint-crash":
            down[v.get("node")] = op["time"]
        elif op.get("f") == "failpoint-restart" and v.get("node") in down:
            out.append(Interval(v["node"], "crash", down.pop(v["node"]), op["time"],
                                f"{v['node']} crashed at a failpoint (down until restarted)",
                                "info" if op.get("type") == "info" else "ok"))
    last = max((op["time"] for op in ops), default=0.0)
    out += [Interval(n, "crash", t, last, f"{n} crashed at a failpoint (not restarted)", "info")
            for n, t in down.items()]
    return out


def proxy_events(mode_dir: Path) -> tuple[list[dict], list[dict]]:
    """(control events, firings) of every proxy's ``faults.jsonl``, each with its ``link``."""
    control, fired = [], []
    for log in sorted(Path(mode_dir).glob("proxy-*/faults.jsonl")):
        link = log.parent.name[len("proxy-"):]
        for ev in read_history(log):
            ev.setdefault("link", link)
            (control if ev.get("type") == "control" else fired).append(ev)
    return control, fired


def failpoint_hits(mode_dir: Path) -> list[dict]:
    """The ``"failpoint fired"`` lines of every node's JSON log, each with its ``node``."""
    hits = []
    for node in NODES:
        for log in sorted((Path(mode_dir) / node).glob("*.log")):
            if log.name != "stderr.log":
                hits += [dict(rec, node=rec.get("node") or node) for rec in read_history(log)
                         if rec.get("msg") == "failpoint fired" and rec.get("failpoint")]
    return hits


def _armed_links(control: list[dict], timed: list[Interval], end: float) -> list[Interval]:
    """Link faults armed through a proxy's control API until removed or healed, except
    those the nemesis already drew (timed steps, ``timed``)."""
    out, armed = [], {}
    for ev in sorted(control, key=lambda e: e["time"]):
        link, event = ev["link"], ev.get("event")
        if event == "add":
            armed[(link, ev.get("fault_id"))] = (ev["time"], ev.get("spec") or {})
            continue
        if event not in ("remove", "heal"):
            continue
        keys = [(link, ev.get("fault_id"))] if event == "remove" else [k for k in armed if k[0] == link]
        for key in keys:
            if key in armed:
                t, spec = armed.pop(key)
                if not any(i.lane == link and abs(i.start - t) < 0.05 for i in timed):
                    out.append(Interval(link, "link", t, ev["time"], describe("link", {"link": link, "fault": spec})))
    out += [Interval(link, "link", t, end, describe("link", {"link": link, "fault": spec}))
            for (link, _), (t, spec) in armed.items()]
    return out


def read_faults(mode_dir: Path) -> tuple[list[Interval], list[Mark]]:
    """Every fault of the mode directory, in unix seconds, sorted by time."""
    mode_dir = Path(mode_dir)
    ops = read_history(mode_dir / "nemesis.jsonl")
    steps, heal_t, last = _steps(ops)
    control, fired = proxy_events(mode_dir)
    hits = failpoint_hits(mode_dir)
    end = max([last] + [e["time"] for e in control + fired] + [h.get("ts", 0) for h in hits])
    intervals: list[Interval] = []
    for t, f, inv, done in steps:
        if f == "link" and inv.get("arm"):
            continue  # armed until the heal: drawn from the proxy's control events
        server = (done.get("value") or {}).get("server") if inv.get("node") == "nats" else None
        lane = inv.get("link") if f == "link" else (server or inv.get("node", "?"))
        if f == "partition" and "nodes" in inv:
            lane = "partition: " + "+".join(inv["nodes"])
        if f == "power-loss":  # several nodes at once: one lane per set
            nodes = inv.get("nodes", "all")
            lane = "power: " + (nodes if isinstance(nodes, str) else "+".join(nodes))
        label, stop = describe(f, inv), max(done["time"], t + 0.02)
        if server:   # a NATS server chosen by role when the step fired
            label += f" = {server}"
        if f == "failpoint":  # armed until its (last) hit, else until the heal
            mine = [h["ts"] for h in hits if h["failpoint"] == inv.get("name") and h["ts"] >= t]
            stop = max(mine) if mine else (heal_t or end)
        if done.get("type") == "info":
            label += f" [outcome unknown: {done.get('error', '')}]"
        elif f == "link" and "fired" in (done.get("value") or {}):
            label += f", fired {done['value']['fired']}x"
        intervals.append(Interval(lane, f, t, stop, label, "info" if done.get("type") == "info" else "ok"))
    intervals += _crashes(ops)
    intervals += _armed_links(control, [i for i in intervals if i.kind == "link"], end)
    marks = [Mark(ev["link"], "fired", ev["time"], f"{ev.get('fault', 'fault')} fired on "
                  + (f"connection {ev.get('connection', '?')} {ev.get('direction', '')}"
                     if ev.get("method") == "tcp" else f"call {ev.get('call', '?')}")
                  + f" ({ev.get('action', '')})") for ev in fired]
    marks += [Mark(h["node"], "failpoint", h["ts"], f"failpoint {h['failpoint']} hit ({h.get('action', '')})")
              for h in hits if "ts" in h]
    if heal_t is not None:
        marks.append(Mark("*", "heal", heal_t, "final heal"))
    return sorted(intervals, key=lambda i: i.start), sorted(marks, key=lambda m: m.t)
