"""Run one shrink (or explore) candidate as its own process, in its own directory.

A candidate is a campaign: cluster config, mode labels and a fault schedule,
written to ``DIR/candidate.json``. ``python -m harness.shrink_run DIR`` runs it
(harness.campaign.run_campaign: a fresh cluster per mode, in ``DIR/<mode>/``) and
writes ``DIR/result.json``. Each candidate is a separate process so that several
can run at once (``--jobs``), and so that the budget can end one by its pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from harness.cluster import ClusterConfig

WORKER_TIMEOUT_S = 240.0
"""A candidate still running after this long is ended (by its pid) and counts as not reproducing."""


def write_candidate(d: Path, base: dict, labels: list[str], schedule: dict, drain_timeout_s: float) -> None:
    """Write ``d/candidate.json``: ``base`` holds ClusterConfig fields (the schedule's
    ``events`` wins over base's); ``labels`` are mode labels ("exactly-once/idempotent")."""
    d.mkdir(parents=True, exist_ok=True)
    fields = {k: v for k, v in base.items() if k in ClusterConfig.__dataclass_fields__}
    fields["events"] = int(schedule["events"])
    (d / "candidate.json").write_text(json.dumps(
        {"config": fields, "labels": labels, "schedule": schedule, "drain_timeout_s": drain_timeout_s},
        indent=1) + "\n")
    (d / "schedule.json").write_text(json.dumps(schedule, indent=2) + "\n")


async def run_candidate(d: Path, timeout_s: float = WORKER_TIMEOUT_S) -> dict | None:
    """Run the candidate in ``d`` in a child process; its result.json, or None when
    it failed (a node did not start, the drain timed out, the timeout passed)."""
    with open(d / "worker.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "harness.shrink_run", str(d), stdout=log, stderr=log,
            start_new_session=True)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            await _end(proc)
            return None
        except asyncio.CancelledError:
            await _end(proc)
            raise
    path = d / "result.json"
    if proc.returncode != 0 or not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("complete") else None


async def _end(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the worker by its pid (it stops its cluster); SIGKILL its process
    group if it has not exited 30 s later."""
    try:
        proc.terminate()
        await asyncio.wait_for(asyncio.shield(proc.wait()), 30)
    except ProcessLookupError:
        pass
    except asyncio.TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()


def main(d: Path) -> int:
    from harness.campaign import CampaignConfig, run_campaign
    from harness.scenarios.runner import mode_spec

    cand = json.loads((d / "candidate.json").read_text())
    cfg = CampaignConfig(modes=[mode_spec(label) for label in cand["labels"]],
                         base=ClusterConfig(**cand["config"]), schedule=cand["schedule"],
                         drain_timeout_s=float(cand.get("drain_timeout_s", 60.0)),
                         extra={"candidate": True})

    from harness.cli_common import run_async

    async def go() -> int:
        try:
            await run_campaign(cfg, d)
        except Exception as e:  # a node that did not start, a drain timeout: not a reproduction
            print(f"candidate failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 3
        return 0

    return run_async(go)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
