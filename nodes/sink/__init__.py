"""The sink node: the destination database (SQLite) holding orders and account balances.

``python -m nodes.sink --listen HOST:PORT --data-dir DIR --mode MODE
[--prepared-timeout-ms MS] [--no-txn-dedupe]``. Logic: :mod:`nodes.sink.db`;
gRPC shell: :mod:`nodes.sink.service`; offline reader for the audit:
:func:`nodes.sink.db.read_snapshot`.
"""
