"""A relative --out given from a directory other than the checkout: run.sh cds to the checkout
and the harness goes back to the caller's directory, but every node runs with cwd = the
checkout; a relative data dir put the nodes' files there ("cannot audit: ...history.jsonl:
missing", exit 2, and run files inside the checkout). NodeProcess makes it absolute."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.process import NodeProcess

ROOT = Path(__file__).resolve().parent.parent


def test_a_node_process_data_dir_is_absolute_in_the_callers_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert NodeProcess("sink", Path("rel") / "sink").data_dir == tmp_path / "rel" / "sink"


@pytest.mark.timeout(120)
def test_campaign_with_a_relative_out_from_another_directory(tmp_path):
    if not (ROOT / ".venv" / "bin" / "testbed").exists():
        pytest.skip("run.sh needs the checkout's .venv")
    out = f"rel-out-{tmp_path.name}"   # a name no other run uses, to look for in the checkout
    try:
        r = subprocess.run([str(ROOT / "run.sh"), "campaign", "--faults", "none", "--mode", "at-most-once",
                            "--events", "100", "--out", out, "-q"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
        assert not (ROOT / out).exists(), "the run wrote into the checkout"
    finally:
        shutil.rmtree(ROOT / out, ignore_errors=True)   # what the bug wrote there
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = json.loads(next((tmp_path / out).glob("*/at-most-once/cluster.json")).read_text())
    assert all(Path(n["data_dir"]).is_relative_to(tmp_path) for n in manifest["nodes"].values())
    assert all(Path(l["data_dir"]).is_relative_to(tmp_path) for l in manifest["links"].values())
