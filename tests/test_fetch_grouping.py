"""nodes/processor/grouping.py on a fake consumer: groups of K records of one
partition in turn, the same whatever the fetches returned; the tail after idle."""

from __future__ import annotations

from nodes.pb import broker_pb2
from nodes.processor.grouping import FetchGrouper


class FakeConsumer:
    """Serves a fixed log; each fetch returns up to ``chunks[i]`` records per partition."""

    def __init__(self, log: dict[int, int], chunks: list[int]) -> None:
        self.log, self.chunks = log, list(chunks)
        self.positions = {p: 0 for p in log}

    async def fetch(self, max_wait_ms=None):
        n = self.chunks.pop(0) if self.chunks else 0
        out = []
        for p, end in sorted(self.log.items()):
            start = self.positions[p]
            out += [(p, broker_pb2.Record(offset=o)) for o in range(start, min(end, start + n))]
        return out


async def groups(chunks: list[int], k: int, steps: int) -> list[list[tuple[int, int]]]:
    c = FakeConsumer({0: 60, 1: 60}, chunks)
    g = FetchGrouper(c, k, idle_flush_ms=0)
    out = []
    for _ in range(steps):
        got = await g.next_group()
        for p, r in got:  # the processor advances positions as it processes
            c.positions[p] = r.offset + 1
        out.append([(p, r.offset) for p, r in got])
    return out


async def test_groups_do_not_depend_on_how_fetches_were_sized():
    a = await groups([3, 7, 1, 30, 2, 50, 50, 50], 10, 4)
    b = await groups([60, 60, 60], 10, 4)
    assert a == b
    assert a[0] == [(0, o) for o in range(10)] and a[1] == [(1, o) for o in range(10)]
    assert a[2] == [(0, o) for o in range(10, 20)]


async def test_idle_partition_flushes_every_buffer():
    c = FakeConsumer({0: 4, 1: 2}, [10, 0])
    g = FetchGrouper(c, 10, idle_flush_ms=0)
    got = await g.next_group()
    assert sorted((p, r.offset) for p, r in got) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
