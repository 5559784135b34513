"""Which steps of a schedule fired: the evidence behind ``"must_fire": true``.

A step *fired* when its fault reached the system, not when the nemesis merely
ran it:

- ``failpoint``: the node's JSON log has a "failpoint fired" line for that
  failpoint (an armed failpoint that was never reached did not fire);
- ``link``: the proxy's faults.jsonl has a firing with the step's fault id (or
  the step's ``ok`` says ``fired`` > 0, for a step with ``for_ms``);
- any other step (kill, pause, stop, and nemeses added later): an ``ok`` op for
  the step that does not say ``already_dead``, ``skipped`` or ``fired: 0``.
"""

from __future__ import annotations

from pathlib import Path

from harness.history import read_history
from harness.nemesis.failpoint import fired_in_logs


def step_order(steps: list[dict]) -> list[int]:
    """Positions of ``steps`` in the order ScheduleRunner numbers them (stable by ``at``)."""
    return sorted(range(len(steps)), key=lambda i: steps[i]["at"])


def _link_firings(mode_dir: Path, link: str, fault_id: str) -> int:
    return sum(1 for ev in read_history(mode_dir / f"proxy-{link}" / "faults.jsonl")
               if ev.get("type") == "fault" and ev.get("fault_id") == fault_id)


def steps_fired(mode_dir: Path, steps: list[dict]) -> list[dict]:
    """For each step of the schedule (in file order): {"step": i, "f", "fired": n, "evidence"}.

    ``fired`` counts firings (0 = did not fire)."""
    mode_dir = Path(mode_dir)
    order = step_order(steps)
    runner_index = {file_i: run_i for run_i, file_i in enumerate(order)}
    ops: dict[int, dict] = {}
    nemesis = mode_dir / "nemesis.jsonl"
    for op in read_history(nemesis) if nemesis.exists() else []:
        v = op.get("value") or {}
        if op.get("type") == "ok" and isinstance(v, dict) and "step" in v:
            ops[v["step"]] = op
    firings = fired_in_logs(mode_dir)
    out = []
    for i, step in enumerate(steps):
        op = ops.get(runner_index[i])
        v = (op or {}).get("value", {})
        if step["f"] == "failpoint":
            n = sum(1 for f in firings if f["failpoint"] == step.get("name") and f["node"] == step.get("node"))
            evidence = f"{n} 'failpoint fired' lines in {step.get('node')}'s log"
        elif step.get("trigger") == "failpoint" and v.get("logical") == "kill":  # harness.nemesis.logical
            n = min(1, sum(1 for f in firings if f["failpoint"] == v.get("name") and f["node"] == v.get("node")))
            evidence = f"a kill at failpoint {v.get('name')} (nth {v.get('nth')}): {n} firing(s) counted"
        elif op is None:
            n, evidence = 0, "no ok op in nemesis.jsonl (not run, failed or cancelled)"
        elif v.get("already_dead") or v.get("skipped"):
            n, evidence = 0, "its node was already down" if v.get("already_dead") else f"skipped: {v['skipped']}"
        elif step["f"] == "link" and "fired" not in v and v.get("fault_ids"):   # a NATS client link group
            n = sum(_link_firings(mode_dir, link, fid) for link, fid in v["fault_ids"].items())
            evidence = f"{n} firings in proxy-{{{','.join(v['fault_ids'])}}}/faults.jsonl"
        elif step["f"] == "link" and "fired" not in v and v.get("fault_id"):
            n = _link_firings(mode_dir, step["link"], v["fault_id"])
            evidence = f"{n} firings of {v['fault_id']} in proxy-{step['link']}/faults.jsonl"
        elif "fired" in v:
            n, evidence = int(v["fired"] or 0), f"ok op says fired {v['fired']}"
        else:
            n, evidence = 1, "ok op in nemesis.jsonl"
        out.append({"step": i, "f": step["f"], "fired": n, "evidence": evidence})
    return out
