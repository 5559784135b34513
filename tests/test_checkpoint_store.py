"""The checkpoint store is never read half-written; a corrupt checkpoint is a clear error."""

from __future__ import annotations

import json

import pytest

from nodes.processor.checkpoint import (Checkpoint, CheckpointCorruptError, CheckpointStore,
                                        bump_incarnation)

CK = Checkpoint(7, {0: 120, 1: 0, 3: 55}, {"acct-00": 1500, "acct-01": -20}, "processor-i2-c7")


def test_round_trip(tmp_path):
    store = CheckpointStore(tmp_path)
    assert store.load() is None
    store.save(CK)
    assert store.load() == CK
    raw = json.loads((tmp_path / "checkpoint.json").read_text())
    assert raw["offsets"] == {"0": 120, "1": 0, "3": 55} and raw["pending_transaction"] == "processor-i2-c7"
    assert not (tmp_path / "checkpoint.json.tmp").exists()


def test_a_newer_save_replaces_the_older(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(CK)
    newer = Checkpoint(8, {0: 130}, {"acct-00": 1}, None)
    store.save(newer)
    assert store.load() == newer


@pytest.mark.parametrize("tmp_bytes", [b"", b'{"checkpoint_id": 9, "offs', b"\x00" * 64,
                                       json.dumps(Checkpoint(9, {0: 999}).to_json()).encode()])
def test_a_stray_temp_file_is_ignored_and_removed(tmp_path, tmp_bytes):
    """A crash during a save leaves checkpoint.json.tmp (empty, truncated, or even complete
    but never renamed): the last completed checkpoint is what loads."""
    store = CheckpointStore(tmp_path)
    store.save(CK)
    (tmp_path / "checkpoint.json.tmp").write_bytes(tmp_bytes)
    assert store.load() == CK
    assert not (tmp_path / "checkpoint.json.tmp").exists()


def test_a_stray_temp_file_without_a_checkpoint_loads_nothing(tmp_path):
    (tmp_path / "checkpoint.json.tmp").write_bytes(b'{"checkpoint_id": 1')
    assert CheckpointStore(tmp_path).load() is None


@pytest.mark.parametrize("content, match", [
    (b'{"checkpoint_id": 3, "offsets": {"0": 1', "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"checkpoint_id": 3, "offsets": {"0": 1}, "state": {}}', "pending_transaction"),
    (b'{"checkpoint_id": "x", "offsets": {}, "state": {}, "pending_transaction": null}', "checkpoint_id"),
    (b'{"checkpoint_id": 3, "offsets": {"a": 1}, "state": {}, "pending_transaction": null}', "invalid"),
    (b"[1, 2]", "not an object"),
])
def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path, content, match):
    (tmp_path / "checkpoint.json").write_bytes(content)
    with pytest.raises(CheckpointCorruptError, match=match):
        CheckpointStore(tmp_path).load()


def test_incarnation_is_bumped_and_persisted(tmp_path):
    assert [bump_incarnation(tmp_path) for _ in range(3)] == [1, 2, 3]
    assert json.loads((tmp_path / "incarnation.json").read_text()) == {"incarnation": 3}
