"""The retry rule of every node that retries (processor and producer), in one place.

Only *transient* errors are retried, with capped exponential backoff; a
*permanent* error (the same request would be refused again) is never retried:
the caller dead-letters the record, records a definite ``fail``, or stops with
a clear error (Kafka Connect's retriable vs non-retriable exceptions; Google's
AIP-194 on which codes to retry).

========================  ==========  ==================================================
code                      class       why
========================  ==========  ==================================================
UNAVAILABLE               transient   peer down, restarting, recovering, link partitioned
DEADLINE_EXCEEDED         transient   slow peer or lost request/ACK (outcome unknown)
ABORTED, CANCELLED        transient   a conflict or a cancelled attempt
INTERNAL, UNKNOWN         transient   a failure of the peer itself (e.g. an SQLite error);
                                      no node answers these for a bad request (issue 11)
INVALID_ARGUMENT          permanent   the request is malformed or violates a limit
RESOURCE_EXHAUSTED        permanent   the request is too large (every node uses it only
                                      for size limits: the same request is refused again)
FAILED_PRECONDITION       permanent   fenced, aborted, wrong state
OUT_OF_RANGE              permanent   sequence gap, offset beyond the log end
NOT_FOUND, ALREADY_EXISTS permanent
DATA_LOSS                 permanent   unreadable stored data
PERMISSION_DENIED, UNAUTHENTICATED, UNIMPLEMENTED: permanent
========================  ==========  ==================================================

Backoff before retry n (1, 2, ...): ``base_ms * 2**(n-1)`` capped at
:data:`MAX_BACKOFF_MS`.
"""

from __future__ import annotations

import grpc

MAX_BACKOFF_MS = 1000
"""The backoff cap (ms)."""

TRANSIENT_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
})
"""Codes worth retrying; every other code is permanent."""

PERMANENT_CODES = frozenset(c for c in grpc.StatusCode
                            if c not in TRANSIENT_CODES and c != grpc.StatusCode.OK)


def is_transient(code: grpc.StatusCode | None) -> bool:
    """True for a code worth retrying (no code at all, e.g. a broken channel: transient)."""
    return code is None or code in TRANSIENT_CODES


def is_permanent(code: grpc.StatusCode | None) -> bool:
    return not is_transient(code)


def backoff_s(base_ms: int, attempt: int) -> float:
    """Delay before retry ``attempt`` (1, 2, ...): ``base_ms * 2**(attempt-1)``, capped at
    MAX_BACKOFF_MS; in seconds."""
    return min(base_ms * (2 ** min(max(attempt, 1) - 1, 10)), MAX_BACKOFF_MS) / 1000.0


class PermanentRpcError(RuntimeError):
    """A call failed with a permanent code; retrying cannot help. ``code`` and ``details``
    are the peer's answer; the message says what was being done."""

    def __init__(self, what: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{what}: {code.name}: {details} (a permanent error: not retried)")
        self.what, self.code, self.details = what, code, details
