"""The MQTT processor's local queues: session-local offsets over messages MQTT cannot re-read.

MQTT hands a subscriber each message once (again after a reconnect if it was not
acknowledged); nothing can be fetched by offset. :class:`SessionQueues` keeps every
received message in an in-memory list per partition and numbers it: the first Fetch of a
partition sets the offset of its first message (``set_base``: 0, the committed offset, or a
restored checkpoint's), so offsets are dense and local to this client. ``commit(p, n)``
marks every message of p below offset n done and acknowledges it (``ack(packet id, qos)``:
paho's manual PUBACK / PUBCOMP) if it came on the current connection; one that came on an
earlier connection is acknowledged when the broker redelivers it (same packet id and
payload: the same message, not queued twice). Plain class: tests drive it without a broker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable


class CommitBeyondEnd(ValueError):
    """A commit offset beyond the partition's local end (the caller answers OUT_OF_RANGE)."""


@dataclass
class Entry:
    """One received message: its packet id, QoS, connection generation, payload."""

    mid: int
    qos: int
    gen: int
    payload: bytes
    done: bool = False    # committed by the processor
    acked: bool = False   # PUBACK / PUBCOMP sent


class SessionQueues:
    """Per-partition queues of one subscriber session.

    Args:
        partitions: partitions 0..partitions-1.
        ack: sends the acknowledgement of (packet id, qos) on the current connection.
    """

    def __init__(self, partitions: int, ack: Callable[[int, int], object]) -> None:
        self.ack = ack
        self.queues: dict[int, list[Entry]] = {p: [] for p in range(partitions)}
        self.base: dict[int, int] = {}
        self.committed: dict[int, int] = {}   # index (not offset) committed per partition
        self.unacked: dict[tuple[int, int], Entry] = {}   # (partition, packet id) -> not acked
        self.gen = 0
        """Connection generation: bumped at every (re)connect."""
        self.connected = False
        self.received = 0
        self.redelivered_matched = 0
        self.last_receive = time.monotonic()
        self.arrived = asyncio.Event()

    def receive(self, p: int, mid: int, qos: int, payload: bytes) -> bool:
        """A message arrived on partition ``p``; False if it was a redelivery of one held."""
        self.last_receive = time.monotonic()
        if qos > 0:
            old = self.unacked.get((p, mid))
            if old is not None and old.gen < self.gen and old.payload == payload:
                old.gen = self.gen      # the same message, redelivered after a reconnect
                self.redelivered_matched += 1
                if old.done:
                    self._ack(p, old)
                return False
        e = Entry(mid, qos, self.gen, payload)
        self.queues[p].append(e)
        if qos > 0:
            self.unacked[(p, mid)] = e
        self.received += 1
        self.arrived.set()
        return True

    def _ack(self, p: int, e: Entry) -> None:
        if e.qos == 0 or e.acked or e.gen != self.gen or not self.connected:
            return
        self.ack(e.mid, e.qos)
        e.acked = True
        if self.unacked.get((p, e.mid)) is e:
            del self.unacked[(p, e.mid)]

    def set_base(self, p: int, offset: int) -> None:
        """The offset of partition ``p``'s first message, if not set yet."""
        self.base.setdefault(p, offset)

    def end(self, p: int) -> int:
        """The offset after the last message received on ``p`` (its high watermark)."""
        return self.base.get(p, 0) + len(self.queues[p])

    def records(self, p: int, offset: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (offset, payload) of ``p`` from ``offset``."""
        base, q = self.base.get(p, 0), self.queues[p]
        start = max(0, offset - base)
        return [(base + i, q[i].payload) for i in range(start, min(len(q), start + limit))]

    def commit(self, p: int, offset: int) -> int | None:
        """Mark and acknowledge every message of ``p`` below ``offset``. Returns the
        committed offset kept when ``offset`` is below it (nothing done), else None.

        Raises:
            CommitBeyondEnd: ``offset`` is past the local end.
        """
        self.set_base(p, offset)
        idx, done = offset - self.base[p], self.committed.get(p, 0)
        if idx > len(self.queues[p]):
            raise CommitBeyondEnd(f"commit {offset} beyond the local end {self.end(p)} of partition {p}")
        if idx < done:
            return self.base[p] + done
        for e in self.queues[p][done:idx]:
            e.done = True
            self._ack(p, e)
        self.committed[p] = idx
        return None

    def status(self) -> dict:
        """connected, received, redeliveries matched, ms since the last message, unacked, and
        ``ends``: each partition's local end once its base is set."""
        return {"connected": self.connected, "received": self.received,
                "redelivered_matched": self.redelivered_matched, "generation": self.gen,
                "quiet_ms": int((time.monotonic() - self.last_receive) * 1000),
                "unacked": len(self.unacked),
                "ends": {str(p): self.end(p) for p in sorted(self.base)}}
