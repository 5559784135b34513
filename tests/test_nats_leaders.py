"""harness/nats_leaders.py's rules on handwritten /jsz answers (no process): a leader is one
every running server agrees on and that is itself running; a dead leader the followers still
name is none, and a partition's majority can be asked alone."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from harness.nats_leaders import leaders_now, settled, stream_names, wait_leaders


@dataclass
class FakeServer:
    name: str
    view: dict            # stream -> the leader this server reports
    running: bool = True
    paused: bool = False

    async def http_get(self, path: str, timeout_s: float = 1.0) -> dict | None:
        assert path == "/jsz?streams=true"
        return {"account_details": [{"stream_detail": [{"name": n, "cluster": {"leader": l}}
                                                       for n, l in self.view.items()]}]}


@dataclass
class FakeCluster:
    servers: list
    partitions: int = 1


def cluster(*views, dead=()) -> FakeCluster:
    return FakeCluster([FakeServer(f"nats-{i + 1}", v, running=f"nats-{i + 1}" not in dead)
                        for i, v in enumerate(views)])


def test_a_leader_is_agreed_on_and_running():
    streams = stream_names(1)
    assert streams == ["orders-0", "KV_offsets"]
    led = {"orders-0": "nats-2", "KV_offsets": "nats-2"}
    c = cluster(led, led, led)
    assert asyncio.run(settled(c, streams)) == led
    # nats-2 killed: the followers still name it until they vote it out: no leader
    c = cluster(led, {}, led, dead=("nats-2",))
    assert asyncio.run(leaders_now(c, streams)) == {"orders-0": None, "KV_offsets": None}
    # restarted, it claims its old leadership for a moment while the others name nobody yet
    c = cluster({"orders-0": ""}, led, {"orders-0": ""})
    assert asyncio.run(leaders_now(c, ["orders-0"])) == {"orders-0": None}


def test_the_majority_side_of_a_partition_is_asked_alone():
    new = {"orders-0": "nats-3", "KV_offsets": "nats-1"}
    c = cluster(new, {"orders-0": "nats-2", "KV_offsets": "nats-2"}, new)   # nats-2 cut off, stale
    assert asyncio.run(settled(c, stream_names(1))) is None
    assert asyncio.run(settled(c, stream_names(1), among={"nats-1", "nats-3"})) == new
    out = asyncio.run(wait_leaders(c, timeout_s=0.3, poll_s=0.05))
    assert out["ok"] is False and out["leaders"] is None and out["waited_ms"] >= 300
