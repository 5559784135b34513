"""The checker (Jepsen's checker, for delivery guarantees).

It reads what a run left behind, never trusting a node's own account of it:

- the **workload**: every order that should exist, regenerated from the seed
  (or read from the user's JSONL file);
- the producer's **history**: ``invoke`` / ``ok`` / ``fail`` / ``info`` per
  Produce call (``ok`` = the broker acknowledged the batch);
- the **broker log**: every record of every partition, read offline;
- the **sink's final state**: per-order applied counts and account balances;
- the processor's **operator state** from its last checkpoint (exactly-once).

Anomaly families, one module each:

``lost``
    an order of the workload that the sink never applied (applied count 0).
    Example: order-00000042 was sent, the broker log has it at partition 1
    offset 17, the sink has no row for it: lost at the broker->sink hop.
``lost-acknowledged``
    a lost order whose batch the broker acknowledged to the producer (an
    ``ok`` in the history): the system promised it and dropped it.
``duplicated``
    an order the sink applied more than once, with its count; the hop says
    whether the broker log already held it twice (producer retry) or the
    sink applied one log record twice (processor replay or retry).
``duplicated-in-log``
    an order the broker log holds more than once (informational: what the
    idempotent producer and broker dedupe exist to prevent).
``unexpected``
    an order at the sink that is not in the workload (never produced).
``balance-mismatch``
    an account whose sink balance differs from what the sink's own orders
    imply (sum of amount x applied count): a torn write inside the sink.
``state-mismatch``
    exactly-once: the processor's checkpointed operator state (per-account
    totals) differs from the totals over the orders it covers.
``reordered``
    per account (the partition key), two orders whose log offsets are in the
    opposite order of the workload: the producer reordered a key.

``divergent``
    NATS runs: a partition whose stream replicas (one per server) report different
    message counts or sequence ranges after the heal (informational).
``lost-from-log``
    an order of an acknowledged batch that no partition of the log holds after the
    heal, whether or not the sink applied it first (informational; not for NATS
    at-most-once, whose ``ok`` is no JetStream ACK).
``truncated``
    NATS runs: a partition whose log now ends before the offset the processor had
    durably consumed: the broker lost records it had served (and new records reuse
    those offsets, which a consumer resuming there skips: ``lost`` at broker->sink).

``balance_ok`` says whether every sink balance equals the ideal total of the
workload. The verdict per mode (harness.checker.verdict) says whether the
mode's promise held.
"""

from harness.checker.report import check, CheckReport  # noqa: F401
from harness.checker.inputs import RunData, load_run, InputError  # noqa: F401
