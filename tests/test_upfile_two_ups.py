"""Two ``up`` at once: the second one's exit hands ``fault`` back to the first
(harness/upfile.py). Before, the second overwrote runs/up.json and removed it on exit:
`fault` said "no running cluster" while the first up still ran."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import upfile


@pytest.fixture
def other_up():
    """A process standing for the first ``up`` (ended by pid)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p
    p.kill()
    p.wait(10)


def _as_other(base, proc, cluster):
    upfile.path(base).write_text(json.dumps({"pid": proc.pid, "start_ticks": upfile.start_ticks(proc.pid),
                                             "cluster": str(cluster), "started": 0}))


def test_second_up_exiting_gives_the_first_one_back(tmp_path, other_up):
    first, second = tmp_path / "a" / "cluster.json", tmp_path / "b" / "cluster.json"
    _as_other(tmp_path, other_up, first)
    replaced = upfile.write(tmp_path, second)
    assert replaced is not None and replaced["pid"] == other_up.pid
    assert upfile.running_cluster(tmp_path) == (second.resolve(), __import__("os").getpid())
    upfile.remove(tmp_path)
    assert upfile.running_cluster(tmp_path) == (first, other_up.pid)


def test_a_dead_first_up_is_not_given_back(tmp_path, other_up):
    _as_other(tmp_path, other_up, tmp_path / "a" / "cluster.json")
    assert upfile.write(tmp_path, tmp_path / "b" / "cluster.json") is not None
    other_up.kill()
    other_up.wait(10)
    upfile.remove(tmp_path)
    assert not upfile.path(tmp_path).exists()


def test_a_stale_file_is_not_kept_as_previous(tmp_path, other_up):
    _as_other(tmp_path, other_up, tmp_path / "a" / "cluster.json")
    other_up.kill()
    other_up.wait(10)
    assert upfile.write(tmp_path, tmp_path / "b" / "cluster.json") is None
    assert "previous" not in json.loads(upfile.path(tmp_path).read_text())
