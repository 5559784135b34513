"""Node reactions to storage faults (issue: "never an ACK for a write it could not
persist"), each driven through the node's own class on lazy storage.

After a failed fsync the file's state is unknown (fsyncgate): the broker's group
commit and the sink fail-stop; atomic writes (offsets, checkpoints, producer
state) fail the call and a retry rewrites the whole file, which is safe.
"""

from __future__ import annotations

import sqlite3

import pytest

from nodes.broker.broker import Broker
from nodes.broker.errors import StorageError
from nodes.broker.offsets import ConsumerOffsets
from nodes.common.modes import AT_LEAST_ONCE, TOPIC
from nodes.processor.checkpoint import Checkpoint, CheckpointStore
from nodes.sink.db import SinkDB
from nodes.common import storage_fault
from nodes.storage.faults import read_faults
from tests.lazyfs_support import lazy, needs_fuse  # noqa: F401

pytestmark = needs_fuse

BATCH = [(b"acct-1", b"order-1")]


def _fired(lazy, kind: str) -> list[dict]:
    return [f for f in read_faults(lazy.state_dir) if f["fault"] == kind]


async def test_broker_never_acks_a_batch_whose_fsync_failed_and_fail_stops(lazy):
    b = Broker(lazy.mount, 1, AT_LEAST_ONCE, checkpoint_interval_s=0)
    b.recover()
    b.start()
    await b.produce(TOPIC, 0, -1, -1, -1, BATCH)
    await lazy.control("fsync-error orders-0/*.log")
    with pytest.raises(StorageError):
        await b.produce(TOPIC, 0, -1, -1, -1, BATCH)
    assert len(_fired(lazy, "fsync-error")) == 1  # the fault fired where intended
    with pytest.raises(StorageError):  # no retry of the fsync, no ACK ever again
        await b.produce(TOPIC, 0, -1, -1, -1, BATCH)
    with pytest.raises(RuntimeError, match="storage failure"):
        await b.wait_fatal()  # the node exits 3 (a storage error); a restart re-reads the disk
    await b.close()
    await lazy.power_loss()
    b2 = Broker(lazy.mount, 1, AT_LEAST_ONCE, checkpoint_interval_s=0)
    b2.recover()
    assert b2.topic.end_offsets() == {0: 1}  # only the acknowledged batch
    b2.topic.close()


async def test_broker_refuses_a_produce_on_a_full_disk(lazy):
    b = Broker(lazy.mount, 1, AT_LEAST_ONCE, checkpoint_interval_s=0)
    b.recover()
    b.start()
    await lazy.control("disk-full 0")
    with pytest.raises(StorageError, match="No space left"):
        await b.produce(TOPIC, 0, -1, -1, -1, BATCH)
    assert _fired(lazy, "disk-full")
    await lazy.control("disk-full off")
    await b.close()


async def test_offsets_commit_with_failed_fsync_is_refused_and_a_retry_is_durable(lazy):
    offsets = ConsumerOffsets(lazy.mount)
    await offsets.commit("g", TOPIC, {0: 5})
    await lazy.control("fsync-error consumer-offsets*")
    with pytest.raises(OSError):
        await offsets.commit("g", TOPIC, {0: 9})
    assert offsets.fetch("g", TOPIC) == {0: 5}  # the failed commit is not visible
    await offsets.commit("g", TOPIC, {0: 9})  # the retry writes the whole file again
    await lazy.power_loss()
    assert ConsumerOffsets(lazy.mount).fetch("g", TOPIC) == {0: 9}


async def test_checkpoint_save_with_failed_fsync_raises_and_keeps_the_previous(lazy):
    store = CheckpointStore(lazy.mount)
    first = Checkpoint(1, {0: 3}, {"a": 1}, None)
    store.save(first)
    await lazy.control("fsync-error checkpoint*")
    with pytest.raises(OSError):
        store.save(Checkpoint(2, {0: 6}, {"a": 2}, None))
    await lazy.power_loss()
    assert CheckpointStore(lazy.mount).load() == first


async def test_sink_commit_with_failed_fsync_is_an_io_error_and_not_durable(lazy):
    db = SinkDB(lazy.mount / "sink.db")
    db.apply([("order-1", "a", 1)])
    await lazy.control("fsync-error sink.db-wal")
    with pytest.raises(sqlite3.Error) as e:
        db.apply([("order-2", "a", 1)])
    assert storage_fault.find(e.value) is e.value  # a storage error: the sink node fail-stops, exit 3
    assert _fired(lazy, "fsync-error")
    await lazy.power_loss()
    try:
        db.close()
    except sqlite3.Error:
        pass
    con = sqlite3.connect(lazy.mount / "sink.db")
    assert [r[0] for r in con.execute("SELECT order_id FROM orders")] == ["order-1"]
    con.close()
