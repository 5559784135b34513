"""The report page of a run: ``runs/<id>/report.html`` (issue 7).

One call builds it from the files a run keeps (no node is started)::

    from harness.report import write_report
    path = write_report(run_dir)      # -> run_dir / "report.html"

Modules: :mod:`timeline` reads one mode's faults, rates and latencies onto one
time axis; :mod:`plots` draws a mode's figure with matplotlib as inline SVG;
:mod:`page` lays out the HTML. The idea is Jepsen's and Maelstrom's per-run
timeline and latency/rate plots, for every mode side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.ablations import ABLATIONS
from harness.report.page import render, mode_section
from harness.report.timeline import load_timeline, read_json

REPORT_NAME = "report.html"


class ReportError(Exception):
    """The directory is not a run the report can read (the message says why)."""


def _modes(run_dir: Path, result: dict) -> list[dict]:
    """result.json's entries, plus an ``interrupted`` entry for each requested mode
    whose directory exists but that has no entry (the campaign stopped during it)."""
    modes = [dict(m) for m in result.get("modes", [])]
    seen = {m["dir"] for m in modes}
    for req in result.get("requested_modes") or []:
        d = f"{req['mode']}-{req['sink']}" if req.get("sink") else req["mode"]
        if d not in seen and (run_dir / d / "cluster.json").exists():
            modes.append({"mode": req["mode"], "sink": req.get("sink"), "dir": d, "verdict": None})
    return modes


def build_report(run_dir: Path) -> str:
    """The page's HTML for ``run_dir`` (a campaign, scenario or sweep run with result.json).

    Raises:
        ReportError: no readable result.json in ``run_dir``.
    """
    from harness.report.plots import mode_figure_svg  # matplotlib is imported only here

    run_dir = Path(run_dir).resolve()
    from harness.checker.validate import InputError, report_inputs, result_file, schedule_file
    if not (run_dir / "result.json").exists():
        if (run_dir / "cluster.json").exists():   # an `up` cluster (or a campaign's mode dir)
            raise ReportError(f"{run_dir} is one cluster's directory (an `up` or a campaign mode), not a run "
                              f"directory: a report needs result.json; `./run.sh audit {run_dir}` audits it")
        raise ReportError(f"{run_dir} has no result.json: not a run directory")
    try:  # the audit's validation layer: one line naming the file (issue 11)
        result = result_file(run_dir / "result.json")
        schedule = schedule_file(run_dir / "schedule.json") if (run_dir / "schedule.json").exists() else None
    except InputError as e:
        raise ReportError(str(e)) from None
    modes = _modes(run_dir, result)
    try:
        for m in modes:
            if (run_dir / m["dir"]).is_dir():
                report_inputs(run_dir / m["dir"])
    except InputError as e:
        raise ReportError(str(e)) from None
    sections = []
    for m in modes:
        mode_dir = run_dir / m["dir"]
        tl = load_timeline(mode_dir) if mode_dir.is_dir() else None
        label = f"{m['mode']}/{m['sink']}" if m.get("sink") else m["mode"]
        svg = mode_figure_svg(tl, label, m["dir"]) if tl else '<p class="none">no data directory</p>'
        check = read_json(mode_dir / "check.json") or {}
        anomalies = check.get("anomalies") or m.get("anomalies") or {}
        sections.append(mode_section(m, tl, svg, anomalies, check.get("balance_deltas") or {}))
    disabled = result.get("disabled") or (result.get("config") or {}).get("disabled") or []
    ablations = [(n, ABLATIONS[n].prevents if n in ABLATIONS else "unknown ablation") for n in disabled]
    return render(run_dir, result, sections, modes, schedule, ablations)


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` atomically and return its path.

    Raises:
        ReportError: no readable result.json in ``run_dir``.
        OSError: the file cannot be written.
    """
    run_dir = Path(run_dir)
    text = build_report(run_dir)
    path = run_dir / REPORT_NAME
    tmp = run_dir / f".{REPORT_NAME}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = ["write_report", "build_report", "ReportError", "REPORT_NAME"]
