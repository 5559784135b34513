"""Lazy storage: a FUSE file system that keeps unsynced writes in memory (Jepsen's LazyFS model).

- ``overlay``: the unsynced data of one file (written ranges, truncates, size).
- ``fs``: the mfusepy operations (pass-through metadata, lazy data, write-through logs).
- ``faults``: fsync-error, disk-full, clear-cache and their record, ``faults.jsonl``.
- ``control``: the control channel (an abstract Unix socket, one command per connection).
- ``lazyfs``: the daemon's command line (``python -m nodes.storage.lazyfs``).

The harness side (one daemon per node, power loss, unmount) is ``harness/storage.py``.
"""
