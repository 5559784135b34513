"""Which partition an order goes to: a stable hash of its account (the partitioning key).

Python's ``hash()`` of a str is salted per process (PYTHONHASHSEED), so two
processes would disagree; CRC-32 is the same everywhere, like Kafka's default
partitioner (murmur2 of the key modulo the partition count).
"""

from __future__ import annotations

import zlib


def partition_for(account: str, partitions: int) -> int:
    """The partition (0 .. partitions-1) of ``account``: ``crc32(account) % partitions``.

    Raises:
        ValueError: ``partitions`` is not positive.
    """
    if partitions <= 0:
        raise ValueError(f"partition count must be positive, got {partitions}")
    return zlib.crc32(account.encode()) % partitions
