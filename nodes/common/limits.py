"""Every documented limit on a request field, in one place (issue 11, "bounded resources").

A request that exceeds a limit is refused before any work is done: a string or
list that is too long, or a count out of range, answers INVALID_ARGUMENT; a
request whose *size* is the problem (too many records or bytes in one call)
answers RESOURCE_EXHAUSTED. The .proto comments name the same figures; the
README's "Limits" table lists them. Both codes are *permanent* for the caller
(nodes/common/retry.py): the same request is refused again, so it is never retried.

Money is an int64 of minor units (cents) end to end; every sum is checked
against the int64 range before it is stored (SQLite's INTEGER silently turns
into a REAL on overflow, Python's int never overflows: neither may decide).
"""

from __future__ import annotations

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MAX_ORDER_ID_BYTES = 256
"""Order.order_id, UTF-8 bytes (the sink refuses longer ones: INVALID_ARGUMENT)."""
MAX_ACCOUNT_BYTES = 256
"""Order.account, UTF-8 bytes (INVALID_ARGUMENT)."""
MAX_GROUP_BYTES = 256
MAX_MEMBER_ID_BYTES = 512
"""A consumer-group member id the sink records (the broker's client id, 256 bytes at most, plus
its suffix): a longer one is refused with INVALID_ARGUMENT before anything is written."""
"""Consumer group names (CommitOffset, FetchCommittedOffset), UTF-8 bytes (INVALID_ARGUMENT)."""
MAX_TOPIC_BYTES = 256
"""Topic names (INVALID_ARGUMENT; the broker serves one topic anyway)."""
MAX_TRANSACTION_ID_BYTES = 256
"""Sink transaction ids (INVALID_ARGUMENT)."""
MAX_FETCH_PARTITIONS = 1024
"""Partitions listed in one Fetch / offsets in one CommitOffset (RESOURCE_EXHAUSTED);
a partition listed twice is INVALID_ARGUMENT."""
MAX_FETCH_RECORDS = 10_000
"""Fetch.max_records per partition: larger values are capped (0 = the default 500);
negative is INVALID_ARGUMENT."""
MAX_WAIT_MS = 5_000
"""Fetch.max_wait_ms: larger values are capped; negative is INVALID_ARGUMENT."""
MAX_DEAD_LETTERS_PER_CALL = 10_000
"""Sink.DeadLetter entries per call (RESOURCE_EXHAUSTED)."""
MAX_REASON_BYTES = 1_024
"""DeadLetter.reason: longer reasons are cut to this many bytes (never refused)."""
MAX_FAILPOINT_NAME_BYTES = 256
"""NodeControl failpoint names (INVALID_ARGUMENT)."""
MAX_HISTORY_ORDER_ID_CHARS = 256
"""Producer history: an order id longer than this is written as
``"<sha256:HEX len:N>"`` (its hash and length), never whole: a history line
stays bounded whatever the workload holds."""
MAX_PROXY_METHODS = 32
"""Distinct method names a proxy keeps counters for; calls of further (unknown)
names from the wire are counted under ``(other)``."""


def utf8_len(s: str) -> int:
    """Length of ``s`` in UTF-8 bytes (cheap bound first: a str of n chars is >= n bytes)."""
    return len(s.encode("utf-8", "surrogatepass"))


def short(s: object, limit: int = 64) -> str:
    """``repr(s)`` cut to ``limit`` characters, for error messages that quote input."""
    r = repr(s)
    return r if len(r) <= limit else f"{r[:limit]}... ({len(str(s))} chars)"


def too_long(value: str, limit: int) -> bool:
    """True if ``value`` has more than ``limit`` UTF-8 bytes.

    A code point takes at most 4 UTF-8 bytes (a lone surrogate, with surrogatepass, 3), so a
    str of at most ``limit // 4`` characters is never too long: no encoding in the common case.
    """
    n = len(value)
    if n * 4 <= limit:
        return False
    return n > limit or utf8_len(value) > limit


def int64_add(a: int, b: int) -> int | None:
    """``a + b`` if it fits in int64, else None (the caller refuses: INVALID_ARGUMENT)."""
    s = a + b
    return s if INT64_MIN <= s <= INT64_MAX else None
MAX_PROXY_FAULTS = 1_000
"""Faults one proxy holds at once (AddFault beyond it: RESOURCE_EXHAUSTED; heal or remove first)."""
MAX_FAULT_MS = 3_600_000
"""Proxy FaultSpec delay_ms, jitter_ms, hold_ms: at most one hour (INVALID_ARGUMENT)."""
MAX_FAULT_MATCH_RULES = 16
"""Proxy FaultSpec.match: at most 16 rules, each key and value at most 256 bytes (INVALID_ARGUMENT)."""
