"""A consumer-group member id is stored with every order a member applies: the sink refuses an
oversized one before writing anything (found by the wire fuzz: a 1 MiB member_id on a
20,000-order Apply took minutes)."""

from __future__ import annotations

import pytest

from nodes.common.limits import MAX_MEMBER_ID_BYTES
from nodes.sink.db import SinkDB
from nodes.sink.errors import InvalidInput


def test_an_oversized_member_id_is_refused_and_nothing_is_applied(tmp_path):
    db = SinkDB(tmp_path / "sink.db")
    rows = [("o1", "acct-1", 100)]
    huge = "m" * (MAX_MEMBER_ID_BYTES + 1)
    for call in (lambda: db.apply(rows, member=huge, epoch=1), lambda: db.upsert(rows, member=huge, epoch=1),
                 lambda: db.pre_commit("t1", rows, member=huge, epoch=1), lambda: db.fence([0], 1, huge),
                 lambda: db.save_checkpoints([], 1, huge)):
        with pytest.raises(InvalidInput, match="member_id longer than"):
            call()
    assert db.snapshot_page("", 10)[0] == []
    assert db.apply(rows, member="m" * MAX_MEMBER_ID_BYTES, epoch=1) == 1   # at the limit: accepted
