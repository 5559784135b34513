"""Campaign rate: kill/restart cycles per minute that a campaign sustains, audit included.

One at-least-once campaign (:func:`harness.campaign.run_mode`) whose schedule
is only kills (processor, broker, sink, producer, in turn), at the campaign's
default producer rate: cluster start, workload under the kills, heal, drain
and the full audit are all on the clock. A cycle is one kill -9, the node's
``down_ms`` and its restart to SERVING.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness import schedule as schedule_mod
from harness.campaign import CampaignConfig, ModeSpec, run_mode
from harness.cluster import ClusterConfig
from nodes.common.modes import AT_LEAST_ONCE

KILLS = ("kill-processor", "kill-broker", "kill-sink", "kill-producer")


async def run_campaign_rate(run_dir: Path, *, seed: int, events: int, kills: int, rate: float) -> dict:
    """Run the kill-only campaign under ``run_dir``.

    Returns {"events", "rate", "kills_scheduled", "kills_fired", "elapsed_s" (start to audit
    done), "cycles_per_min", "verdict"}.

    Raises:
        harness.process.NodeStartError, harness.cluster.DrainTimeout: as run_mode.
    """
    faults = [KILLS[i % len(KILLS)] for i in range(kills)]
    cfg = CampaignConfig(modes=[ModeSpec(AT_LEAST_ONCE)],
                         base=ClusterConfig(mode=AT_LEAST_ONCE, seed=seed, events=events, rate=rate),
                         schedule=schedule_mod.generate(seed, events, faults), drain_timeout_s=60.0)
    run_dir.mkdir(parents=True, exist_ok=True)
    schedule_mod.save(cfg.schedule, run_dir / "schedule.json")
    t0 = time.perf_counter()
    entry = await run_mode(cfg.modes[0], cfg, run_dir)
    elapsed = time.perf_counter() - t0
    # a kill is a timed kill step ("kill-<node>") or a logical one: a crash at a
    # failpoint's Nth hit ("crash@<failpoint>", harness/nemesis/logical.py)
    fired = sum(n for k, n in entry["faults"].items() if k.startswith(("kill-", "crash@")))
    return {"events": events, "rate": rate, "kills_scheduled": kills, "kills_fired": fired,
            "elapsed_s": round(elapsed, 2), "cycles_per_min": round(fired / elapsed * 60, 1),
            "verdict": entry["verdict"]}
