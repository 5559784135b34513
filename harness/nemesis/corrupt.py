"""Data-file corruption: flip bytes of a stopped node's data files, then restart it.

    {"at": 800, "f": "corrupt", "node": "nats", "role": "follower",
     "path": "jetstream/**/orders-*/msgs/*.blk", "bytes": 64, "down_ms": 300}

The node (for ``"nats"``, the server of ``role``, harness.cluster.Cluster.resolve_node) is
sent SIGKILL; every file under its data dir matching ``path`` (a glob relative to the data
dir, ``**`` allowed) gets ``bytes`` bytes XOR-ed with 0xFF at offsets drawn from a RNG
seeded by the cluster's seed and the step's ``at`` (reproducible); after ``down_ms`` the node
restarts. The ``ok`` record names the server, each file and its offsets. A node whose files
match nothing is restarted all the same and the step says ``"files": []``.

Jepsen's NATS 2.12.1 analysis (2025-12): corrupting a data file on a minority of servers
lost acknowledged writes, the corrupt replica's state winning an election.
"""

from __future__ import annotations

import asyncio
import random

from harness.nemesis.base import Nemesis
from harness.nemesis.process import already_dead

DEFAULT_PATH = "jetstream/**/orders-*/msgs/*.blk"


def flip_bytes(path, n: int, rng: random.Random) -> list[int]:
    """XOR ``n`` bytes of file ``path`` with 0xFF at random offsets (skipping the first
    8 bytes, a header); return the offsets. An empty file is left alone."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if len(data) <= 8:
            return []
        offsets = sorted(rng.sample(range(8, len(data)), min(n, len(data) - 8)))
        for off in offsets:
            data[off] ^= 0xFF
        f.seek(0)
        f.write(data)
    return offsets


class CorruptNemesis(Nemesis):
    """``{"f": "corrupt", "node": N, "role": R, "path": GLOB, "bytes": B, "down_ms": T}``."""

    async def invoke(self, step: dict) -> dict:
        cluster = self.ctx.cluster
        p = await cluster.resolve_node(step)
        rng = random.Random(cluster.config.seed * 1_000_003 + int(step.get("at", 0)))
        async with p.exclusive():
            if not p.running:
                return already_dead(p)
            pid = p.pid
            p.kill("corrupt step")
            code = await p.wait(10)
            files = {}
            for f in sorted(p.data_dir.glob(step.get("path", DEFAULT_PATH))):
                if f.is_file():
                    offsets = await asyncio.to_thread(flip_bytes, f, int(step.get("bytes", 64)), rng)
                    if offsets:
                        files[str(f.relative_to(p.data_dir))] = offsets[:8]
            await asyncio.sleep(step.get("down_ms", 300) / 1000)
            await p.start_owned()
        cluster.write_manifest()
        return {"server": p.name, "killed_pid": pid, "exit_code": code, "new_pid": p.pid,
                "files": sorted(files), "offsets": files}
