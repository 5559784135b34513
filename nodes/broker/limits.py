"""Request limits the broker checks before doing any work (nodes/common/limits.py)."""

from __future__ import annotations

from nodes.broker.errors import InvalidRequest, RequestTooLarge
from nodes.common.limits import MAX_FETCH_PARTITIONS, MAX_GROUP_BYTES, short, too_long


def check_group(group: str) -> None:
    """Raises InvalidRequest: an empty group or one longer than MAX_GROUP_BYTES."""
    if not group:
        raise InvalidRequest("consumer group must not be empty")
    if too_long(group, MAX_GROUP_BYTES):
        raise InvalidRequest(f"consumer group longer than {MAX_GROUP_BYTES} bytes: {short(group)}")


def check_partition_list(what: str, partitions: list[int]) -> None:
    """Raises RequestTooLarge (more than MAX_FETCH_PARTITIONS) or InvalidRequest (one listed twice)."""
    if len(partitions) > MAX_FETCH_PARTITIONS:
        raise RequestTooLarge(f"{what} lists {len(partitions)} partitions; at most {MAX_FETCH_PARTITIONS}")
    if len(set(partitions)) != len(partitions):
        seen: set[int] = set()
        dup = next(p for p in partitions if p in seen or seen.add(p))
        raise InvalidRequest(f"{what} lists partition {dup} more than once")

