"""The three delivery-guarantee modes and the exactly-once sink strategies (shared/DESIGN.md)."""

from __future__ import annotations

AT_MOST_ONCE = "at-most-once"
AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
MODES = (AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE)

SINK_IDEMPOTENT = "idempotent"
SINK_TRANSACTIONAL = "transactional"
SINK_STRATEGIES = (SINK_IDEMPOTENT, SINK_TRANSACTIONAL)

TOPIC = "orders"
DEFAULT_PARTITIONS = 4
