"""Shared by the lazy-storage tests: skip without FUSE, a mounted lazy filesystem."""

from __future__ import annotations

import pytest

from harness.storage import LazyMount, fuse_missing

MISSING = fuse_missing()
needs_fuse = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture
async def lazy(tmp_path):
    """A lazy filesystem named ``node`` under tmp_path (mount: ``lazy.mount``),
    always unmounted at the end."""
    m = LazyMount(tmp_path, "node")
    await m.start()
    try:
        yield m
    finally:
        await m.stop()
        m.kill_now()
