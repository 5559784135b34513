"""The report page of the suite's default campaign (every mode, 2,000 events): the
comparison table holds result.json's values, one plot per mode, the faults and
anomalies that happened, the replay command; `testbed report` rewrites it; and,
when Debian's chromium is installed, the page renders headless without errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.history import read_history
from harness.report.page import TABLE_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def campaign_run(default_campaign) -> tuple[Path, subprocess.CompletedProcess]:
    """The suite's one default campaign (tests/conftest.py), seed 3."""
    return default_campaign


@pytest.fixture(scope="module")
def page(campaign_run) -> str:
    run_dir, _ = campaign_run
    return (run_dir / "report.html").read_text()


class TableRows(HTMLParser):
    """Rows of the table with class "comparison": [[cell text, ...], ...]."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "comparison") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._in_table:
            self._in_table = self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _number(text: str) -> float | None:
    return None if text == "-" else float(text.replace(",", ""))


@pytest.mark.timeout(420)  # may run the shared default campaign (tests/conftest.py)
def test_campaign_prints_the_report_path(campaign_run):
    run_dir, r = campaign_run
    m = re.search(r"^report: (.+report\.html)\s*$", r.stdout, re.M)
    assert m, r.stdout
    assert Path(m.group(1)).resolve() == run_dir / "report.html"
    assert r.stdout.rstrip().splitlines()[-1].startswith("report: ")


def test_table_holds_the_values_of_result_json(campaign_run, page):
    run_dir, _ = campaign_run
    result = json.loads((run_dir / "result.json").read_text())
    parser = TableRows()
    parser.feed(page)
    assert len(parser.rows) == len(result["modes"]) == 4
    for m, row in zip(result["modes"], parser.rows):
        cells = dict(zip([key for _, key, _ in TABLE_COLUMNS], row))
        label = f"{m['mode']}/{m['sink']}" if m["sink"] else m["mode"]
        assert cells["mode"] == label
        assert cells["verdict"] == m["verdict"]
        assert cells["balance_ok"] == ("exact" if m["balance_ok"] else "off")
        other = [f"{n} {a['count']:,}" for n, a in m["anomalies"].items()
                 if n not in ("lost", "lost-acknowledged", "duplicated")]
        assert cells["other"] == (", ".join(other) or "-")
        for key in ("events", "acked", "lost", "lost_acknowledged", "duplicated", "faults_fired"):
            assert _number(cells[key]) == m[key], (label, key)
        for key in ("throughput_eps", "latency_p50_ms", "latency_p99_ms"):
            assert _number(cells[key]) == pytest.approx(m[key], abs=0.051), (label, key)


def test_one_plot_per_mode_with_faults_and_rates(campaign_run, page):
    run_dir, _ = campaign_run
    result = json.loads((run_dir / "result.json").read_text())
    plots = re.findall(r'<div class="figure plot" data-mode="([^"]+)"><svg', page)
    labels = [f"{m['mode']}/{m['sink']}" if m["sink"] else m["mode"] for m in result["modes"]]
    assert plots == labels
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        for text in ("processor-sink", "throughput", "latency", "events/s"):
            assert text in svg
    # Every kill the nemesis did is on the page, with its node, in that mode's section.
    sections = dict(re.findall(r'<section class="mode" id="([^"]+)">(.*?)</section>', page, re.S))
    figures = {d: re.search(r"<svg.*?</svg>", s, re.S).group(0) for d, s in sections.items()}
    tables = {d: s.replace(figures[d], "") for d, s in sections.items()}
    for m in result["modes"]:
        ops = read_history(run_dir / m["dir"] / "nemesis.jsonl")
        kills = [op["value"]["node"] for op in ops if op["type"] == "ok" and op["f"] == "kill"]
        # the default campaign's kills are logical: a crash at a failpoint's Nth hit
        crashes = [op["value"]["node"] for op in ops if op["type"] == "ok" and op["f"] == "failpoint-crash"]
        assert kills or crashes, m["dir"]
        for node in set(kills):  # in the faults table, and as a bar with a hover title in the figure
            assert tables[m["dir"]].count(f"kill -9 {node} (down") == kills.count(node)
            assert figures[m["dir"]].count(f"kill -9 {node} (down") == kills.count(node)
        for node in set(crashes):
            assert tables[m["dir"]].count(f"{node} crashed at a failpoint") == crashes.count(node)
            assert figures[m["dir"]].count(f"{node} crashed at a failpoint") == crashes.count(node)
        # Each firing a proxy logged is listed.
        fired = sum(1 for log in (run_dir / m["dir"]).glob("proxy-*/faults.jsonl")
                    for ev in read_history(log) if ev.get("type") == "fault")
        assert tables[m["dir"]].count(" fired on call ") == fired


def test_anomalies_seed_ablations_and_replay_command(campaign_run, page):
    run_dir, _ = campaign_run
    result = json.loads((run_dir / "result.json").read_text())
    assert f"./run.sh replay {run_dir}" in page
    assert re.search(r'seed <b>3</b>', page)
    assert "ablations in effect" in page and "none: every mechanism on" in page
    shown = 0
    for m in result["modes"]:
        for name, a in (m.get("anomalies") or {}).items():
            assert f"<b>{name}</b>" in page
            assert a["examples"][0] in page
            for hop in a.get("by_hop") or {}:
                assert f"{hop.replace('>', '&gt;')}: {a['by_hop'][hop]:,}" in page
            shown += 1
    assert shown > 0, "the default faults give at-most-once losses and at-least-once duplicates"


def test_page_is_self_contained(page):
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and not re.search(r"url\((?!#)", page)  # only in-page references


def test_report_command_rewrites_the_page(campaign_run, tmp_path):
    run_dir, _ = campaign_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    r = run_cli("report", str(copy), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"report: {copy / 'report.html'}"
    assert "<svg" in (copy / "report.html").read_text()
    bad = run_cli("report", str(tmp_path / "run" / "at-least-once"), timeout=60)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr, bad.stderr


def _chromium(args: list[str], profile: Path) -> tuple[str, str]:
    """Run headless chromium once; return (stdout, stderr). Its helper processes
    share its session and are ended by its process group id afterwards."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, err[-2000:]
    # The page has no script: any console message (an error, an uncaught exception) is a failure.
    console = [line for line in err.splitlines() if re.search(r":CONSOLE[:(]|Uncaught", line)]
    assert not console, "\n".join(console)
    return out, err


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed "
                    "(apt-get install -y chromium)")
@pytest.mark.timeout(150)
def test_page_renders_in_headless_chromium(campaign_run, tmp_path):
    run_dir, _ = campaign_run
    url = (run_dir / "report.html").as_uri()
    shot = tmp_path / "report.png"
    _chromium(["--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", url], tmp_path / "p1")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, len(data)  # not a blank page
    dom, _ = _chromium(["--dump-dom", url], tmp_path / "p2")
    result = json.loads((run_dir / "result.json").read_text())
    assert dom.count("<svg") == len(result["modes"])  # the browser parsed one figure per mode
    assert dom.count('<table class="comparison">') == 1
