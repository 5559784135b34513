"""Ctrl-C during an explore trial: the search is cancelled cleanly, with no
"_GatheringFuture exception was never retrieved" traceback printed after the
"interrupted" line (harness/explore.py, Explorer.run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import asyncio, gc, sys, tempfile
from pathlib import Path
import harness.explore as ex

started = asyncio.Event()

async def trial_that_runs_until_cancelled(d):
    started.set()
    await asyncio.Event().wait()

ex.run_candidate = trial_that_runs_until_cancelled

async def main():
    e = ex.Explorer(run_dir=Path(tempfile.mkdtemp()), base={}, labels=["at-most-once"],
                    events=100, budget_s=30)
    task = asyncio.ensure_future(e.run())
    await started.wait()
    task.cancel()                     # what run_async does on SIGINT / SIGTERM
    try:
        await task
    except asyncio.CancelledError:
        print("cancelled")

asyncio.run(main())
gc.collect()
"""


@pytest.mark.timeout(30)
def test_a_cancelled_search_prints_no_unretrieved_future(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cancelled"
    assert "never retrieved" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_partial_run_line_is_one_copyable_line(tmp_path):
    """After Ctrl-C, "the partial run is readable in RUN_DIR" is one line with the path intact
    (it was wrapped before the path at 80 columns, and a "[...]" in it read as markup)."""
    run_dir = tmp_path / ("x" * 70) / "[bold]20261201-explore"
    r = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from harness.cli_common import exit_if_interrupted; "
                        "exit_if_interrupted(130, Path(sys.argv[1]))", str(run_dir)],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 130
    assert r.stderr == f"the partial run is readable in {run_dir}\n"


def test_shrink_of_an_explore_directory_names_its_broken_trial(tmp_path):
    """`shrink RUN/` of an explore run (no result.json) says where the trial to shrink is."""
    import json
    run = tmp_path / "x-explore"
    (run / "explore" / "seed-8").mkdir(parents=True)
    (run / "explore.json").write_text(json.dumps({"found": {"seed": 8, "dir": str(run / "explore" / "seed-8")}}))
    r = subprocess.run([sys.executable, "-m", "harness.cli", "shrink", str(run)], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().endswith(f"(an explore run: its broken trial is {run / 'explore' / 'seed-8'})"), r.stderr
    assert r.stderr.count("\n") == 1
