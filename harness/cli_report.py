"""``testbed report [RUN_DIR]``: write the report page of a stored run."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli_common import console, fail
from harness.runs import DEFAULT_RUNS


@click.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
def report(run_dir: Path | None) -> None:
    """Write RUN_DIR/report.html (default: runs/latest) and print its path.

    \b
    One self-contained page (no network needed): the comparison table, per
    mode a fault timeline on the same time axis as throughput and latency
    p50/p99, the anomalies with their order ids and hops, the seed, the
    ablations in effect and the command that replays the run. Nothing is
    re-run: it reads result.json, schedule.json and each mode's files.
    Exit code 2 if RUN_DIR is not a run directory.
    """
    from harness.report import ReportError, write_report

    if run_dir is None:
        run_dir = DEFAULT_RUNS / "latest"
        if not run_dir.exists():
            fail(f"no run yet ({run_dir} does not exist); give a RUN_DIR")
    try:
        path = write_report(run_dir)
    except ReportError as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot write the report in {run_dir}: {e}")
    console.print(f"report: {path}", soft_wrap=True)
