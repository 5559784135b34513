"""The processor: a Flink-like stateful engine between the broker and the sink.

Read in this order: ``state`` (operator state), ``checkpoint`` (the durable
checkpoint store and incarnation counter), ``retry``, ``consumer`` (fetch loop,
positions, committed offsets), ``sinks`` (Apply / Upsert / two-phase commit
writers), ``delivery`` (at-most-once and at-least-once), ``exactly_once``
(checkpoints with the idempotent or transactional sink), ``processor`` (the
plain class tests drive), ``__main__`` (the click + gRPC shell).
"""
