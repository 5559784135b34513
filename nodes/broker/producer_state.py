"""Idempotent-producer state (Kafka KIP-98): producer ids, epochs, sequence numbers.

Sequences are per (producer id, partition), start at 0 and are consecutive
across epochs: record ``i`` of a batch has sequence ``base_sequence + i``. The
table is only advanced *after* the records are in the log (:meth:`on_append`),
and after a crash it is rebuilt from the records themselves (each carries its
producer id, epoch and sequence; :meth:`observe`), optionally starting from a
snapshot taken at known log offsets. So it can never claim a sequence whose
record is not in the log (shared/scenarios.md, scenario 3).

For answering a retried batch with its ORIGINAL base offset, each
(producer id, partition) keeps *runs* ``[first_sequence, first_offset, count]``
(a run = consecutive sequences at consecutive offsets) covering at least the
last ``RECENT_SEQUENCES`` sequences.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from nodes.broker.errors import SequenceGap, SequenceOverlap, StaleEpoch, UnknownProducer

RECENT_SEQUENCES = 10_000


@dataclass
class _PartitionSeqs:
    next_sequence: int = 0
    runs: deque = field(default_factory=deque)  # of [first_sequence, first_offset, count]
    covered: int = 0

    def add(self, seq: int, offset: int, count: int) -> None:
        if self.runs:
            last = self.runs[-1]
            if last[0] + last[2] == seq and last[1] + last[2] == offset:
                last[2] += count
                self.covered += count
                self._trim()
                self.next_sequence = max(self.next_sequence, seq + count)
                return
        self.runs.append([seq, offset, count])
        self.covered += count
        self._trim()
        self.next_sequence = max(self.next_sequence, seq + count)

    def _trim(self) -> None:
        while len(self.runs) > 1 and self.covered - self.runs[0][2] >= RECENT_SEQUENCES:
            self.covered -= self.runs.popleft()[2]

    def offset_of(self, seq: int) -> int:
        """Offset of the record with sequence ``seq`` (newest first), -1 if no longer remembered."""
        for first_seq, first_off, count in reversed(self.runs):
            if first_seq <= seq < first_seq + count:
                return first_off + (seq - first_seq)
        return -1


@dataclass(frozen=True)
class Duplicate:
    """A batch whose every sequence is already in the log: its original offsets."""

    base_offset: int
    last_offset: int


class ProducerStateTable:
    """Producer ids -> epoch, and (producer id, partition) -> sequences.

    ``epochs`` and ``next_producer_id`` are persisted by the caller (producers.json)
    before an InitProducer answer; sequences come from the log.
    """

    def __init__(self) -> None:
        self.next_producer_id = 0
        self.epochs: dict[int, int] = {}
        self._seqs: dict[tuple[int, int], _PartitionSeqs] = {}

    def __len__(self) -> int:
        return len(self.epochs)

    # -- InitProducer -------------------------------------------------------------------
    def init_producer(self, producer_id: int) -> tuple[int, int, dict[int, int]]:
        """Allocate (``producer_id`` = -1) or re-initialise a producer id.

        Returns:
            (producer id, epoch, {partition: next expected sequence}). A known id
            gets its epoch bumped, which fences every older epoch.

        Raises:
            UnknownProducer: ``producer_id`` >= 0 was never allocated by this broker.
        """
        if producer_id < 0:
            pid = self.next_producer_id
            self.next_producer_id += 1
            self.epochs[pid] = 0
            return pid, 0, {}
        if producer_id not in self.epochs:
            raise UnknownProducer(f"unknown producer id {producer_id}")
        self.epochs[producer_id] += 1
        return producer_id, self.epochs[producer_id], self.next_sequences(producer_id)

    def next_sequences(self, producer_id: int) -> dict[int, int]:
        return {p: s.next_sequence for (pid, p), s in self._seqs.items() if pid == producer_id}

    def next_sequence(self, producer_id: int, partition: int) -> int:
        s = self._seqs.get((producer_id, partition))
        return s.next_sequence if s else 0

    # -- Produce ------------------------------------------------------------------------
    def check(self, producer_id: int, epoch: int, partition: int, base_sequence: int,
              count: int, *, dedupe: bool = True) -> Duplicate | None:
        """Validate a batch before it is appended; None means "append it".

        Raises:
            UnknownProducer, StaleEpoch: fencing (FAILED_PRECONDITION).
            SequenceGap: ``base_sequence`` > next expected (OUT_OF_RANGE).
            SequenceOverlap: some but not all sequences already appended (FAILED_PRECONDITION).
        """
        current = self.epochs.get(producer_id)
        if current is None:
            raise UnknownProducer(f"unknown producer id {producer_id}")
        if epoch < current:
            raise StaleEpoch(f"stale epoch: producer {producer_id} epoch {epoch} is fenced by epoch {current}")
        if epoch > current:
            raise StaleEpoch(f"unknown epoch: producer {producer_id} epoch {epoch} is newer than "
                             f"the broker's epoch {current}")
        if not dedupe:
            return None
        expected = self.next_sequence(producer_id, partition)
        if base_sequence == expected:
            return None
        if base_sequence > expected:
            raise SequenceGap(f"sequence gap: producer {producer_id} partition {partition} "
                              f"expected sequence {expected}, got {base_sequence}")
        last = base_sequence + count - 1
        if last >= expected:
            raise SequenceOverlap(f"partial sequence overlap: producer {producer_id} partition {partition} "
                                  f"batch {base_sequence}..{last} overlaps appended sequences "
                                  f"(next expected {expected})")
        s = self._seqs[(producer_id, partition)]
        return Duplicate(s.offset_of(base_sequence), s.offset_of(last))

    def on_append(self, producer_id: int, epoch: int, partition: int, base_sequence: int,
                  base_offset: int, count: int) -> None:
        """Advance the table after the batch was written to the log."""
        self.epochs[producer_id] = max(self.epochs.get(producer_id, epoch), epoch)
        self._seqs.setdefault((producer_id, partition), _PartitionSeqs()).add(base_sequence, base_offset, count)

    def observe(self, partition: int, offset: int, producer_id: int, epoch: int, sequence: int,
                count: int = 1) -> None:
        """Rebuild from ``count`` records of the log at consecutive offsets and sequences (recovery)."""
        if producer_id < 0 or sequence < 0:
            return
        self.next_producer_id = max(self.next_producer_id, producer_id + 1)
        self.on_append(producer_id, epoch, partition, sequence, offset, count)

    # -- persistence --------------------------------------------------------------------
    def epochs_json(self) -> dict:
        return {"next_producer_id": self.next_producer_id,
                "epochs": {str(k): v for k, v in self.epochs.items()}}

    def load_epochs(self, obj: dict | None) -> None:
        if not obj:
            return
        self.next_producer_id = max(self.next_producer_id, int(obj.get("next_producer_id", 0)))
        for k, v in obj.get("epochs", {}).items():
            self.epochs[int(k)] = max(self.epochs.get(int(k), 0), int(v))

    def snapshot(self, log_ends: dict[int, int]) -> dict:
        """JSON snapshot valid for the log prefix ``log_ends`` ({partition: end offset})."""
        return {"log_ends": {str(p): e for p, e in log_ends.items()}, **self.epochs_json(),
                "sequences": [[pid, p, s.next_sequence, [list(r) for r in s.runs]]
                              for (pid, p), s in self._seqs.items()]}

    def load_snapshot(self, obj: dict) -> dict[int, int]:
        """Load a snapshot; return the log offsets it covers ({partition: end offset})."""
        self.load_epochs(obj)
        for pid, p, nxt, runs in obj.get("sequences", []):
            s = _PartitionSeqs(next_sequence=nxt)
            for r in runs:
                s.runs.append(list(r))
                s.covered += r[2]
            self._seqs[(pid, p)] = s
        return {int(p): int(e) for p, e in obj.get("log_ends", {}).items()}
