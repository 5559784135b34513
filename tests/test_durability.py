"""Durability is tested, not read from the code: each durability path writes through
the node's own class onto lazy storage, the machine loses power (every unsynced
write dropped), and a fresh instance re-reads the data dir.

An acknowledged write must survive; where a path has a no-fsync switch (the broker's
--no-fsync ablation, SQLite's synchronous=OFF, atomic_write's fsync=False), the same
write acknowledged before fsync is shown to be lost, so each test can fail.
"""

from __future__ import annotations

import sqlite3

import pytest

from nodes.broker.broker import Broker
from nodes.broker.offsets import ConsumerOffsets
from nodes.common.durable import atomic_write_json, read_json
from nodes.common.modes import AT_LEAST_ONCE, EXACTLY_ONCE, TOPIC
from nodes.processor.checkpoint import Checkpoint, CheckpointStore, bump_incarnation
from nodes.producer.state import ProducerState, StateStore
from nodes.sink.db import SinkDB
from tests.lazyfs_support import lazy, needs_fuse  # noqa: F401

pytestmark = needs_fuse

BATCH = [(b"acct-1", b"order-1"), (b"acct-2", b"order-2")]


def _crash(broker: Broker) -> None:
    """kill -9 of the broker: its flusher stops, nothing is closed or flushed."""
    if broker.commit._task is not None:
        broker.commit._task.cancel()


async def _broker(data_dir, *, fsync: bool = True, mode: str = AT_LEAST_ONCE) -> Broker:
    b = Broker(data_dir, 1, mode, fsync=fsync, checkpoint_interval_s=0)
    b.recover()
    b.start()
    return b


@pytest.mark.parametrize("fsync, survives", [(True, True), (False, False)])
async def test_broker_log_acked_record_survives_power_loss_only_with_fsync(lazy, fsync, survives):
    b = await _broker(lazy.mount, fsync=fsync)
    base, dup, end = await b.produce(TOPIC, 0, -1, -1, -1, BATCH)  # returns = the ACK
    assert (base, end) == (0, 2)
    for p in b.topic.partitions:  # even written out to the file system (no fsync): still lost
        p.write_out()
    _crash(b)
    dropped = await lazy.power_loss()
    assert dropped["files"] >= (0 if fsync else 1)
    b2 = await _broker(lazy.mount, fsync=True)
    assert b2.topic.end_offsets() == {0: 2 if survives else 0}
    await b2.close()


async def test_broker_producer_state_survives_power_loss(lazy):
    """producers.json (ids, epochs) and the dedupe state rebuilt from the synced log."""
    b = await _broker(lazy.mount, mode=EXACTLY_ONCE)
    pid, epoch, _ = await b.init_producer(-1)
    await b.produce(TOPIC, 0, pid, epoch, 0, BATCH)
    _crash(b)
    await lazy.power_loss()
    b2 = await _broker(lazy.mount, mode=EXACTLY_ONCE)
    assert b2.producers.next_producer_id == pid + 1  # the id is never handed out twice
    base, duplicate, _ = await b2.produce(TOPIC, 0, pid, epoch, 0, BATCH)  # the retry of the ACKed batch
    assert (base, duplicate) == (0, True)
    await b2.close()


async def test_broker_committed_offsets_survive_power_loss(lazy):
    offsets = ConsumerOffsets(lazy.mount)
    await offsets.commit("g", TOPIC, {0: 42, 1: 7})
    await lazy.power_loss()
    assert ConsumerOffsets(lazy.mount).fetch("g", TOPIC) == {0: 42, 1: 7}


async def test_processor_checkpoint_and_incarnation_survive_power_loss(lazy):
    store = CheckpointStore(lazy.mount)
    cp = Checkpoint(3, {0: 10, 1: 20}, {"acct-1": 500}, "txn-1-3")
    store.save(cp)
    assert bump_incarnation(lazy.mount) == 1
    await lazy.power_loss()
    assert CheckpointStore(lazy.mount).load() == cp
    assert bump_incarnation(lazy.mount) == 2


async def test_producer_state_survives_power_loss(lazy):
    workload = {"source": "generated", "seed": 1, "count": 100, "accounts": 4}
    state = ProducerState(workload=workload, position=40, batch=4, producer_id=0, epoch=1,
                          next_sequences={0: 10, 1: 12}, incarnation=2)
    StateStore(lazy.mount).save(state)
    await lazy.power_loss()
    assert StateStore(lazy.mount).load(workload, 100) == state


@pytest.mark.parametrize("fsync, survives", [(True, True), (False, False)])
async def test_atomic_write_survives_power_loss_only_with_fsync(lazy, fsync, survives):
    """The helper behind offsets, checkpoints and producer state: without fsync the
    rename is durable and the contents are not (the file is there, empty)."""
    atomic_write_json(lazy.mount / "state.json", {"v": 1}, fsync=fsync)
    await lazy.power_loss()
    if survives:
        assert read_json(lazy.mount / "state.json") == {"v": 1}
    else:
        with pytest.raises(ValueError, match="state.json is empty"):
            read_json(lazy.mount / "state.json")


def _close_quietly(db) -> None:
    try:
        db.close()
    except sqlite3.Error:
        pass  # its files were on the mount that lost power


def _orders(path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT order_id FROM orders ORDER BY order_id")]
    finally:
        con.close()


async def test_sink_db_applied_rows_survive_power_loss(lazy):
    db = SinkDB(lazy.mount / "sink.db")
    assert db.apply([("order-1", "acct-1", 100), ("order-2", "acct-2", 200)]) == 2  # = the ACK
    await lazy.power_loss()  # killed with the connection open: no checkpoint at close
    _close_quietly(db)
    assert _orders(lazy.mount / "sink.db") == ["order-1", "order-2"]
