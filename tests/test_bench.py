"""``testbed bench`` with tiny sizes: every part runs, bench.json has its shape, figures are positive.

Speed targets are bench figures, never asserted here (the machine is shared).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench.procstat import cpu_seconds, peak_rss_bytes
from harness.bench.runner import ratios

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_procstat_reads_this_process_and_none_for_a_dead_pid():
    sum(i * i for i in range(200_000))   # some CPU, so utime > 0 at 10 ms resolution
    assert cpu_seconds(os.getpid()) > 0
    assert peak_rss_bytes(os.getpid()) > 1024 * 1024
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(10)
    assert cpu_seconds(p.pid) is None and peak_rss_bytes(p.pid) is None
    assert cpu_seconds(None) is None


def test_ratios_compare_to_baseline_at_least_once_and_direct():
    def row(mode, sink, links, eps):
        return {"mode": mode, "sink": sink, "links": links, "batch_size": 100, "events_per_s": eps}
    result = {"baseline": [{"batch_size": 100, "events_per_s": 10_000.0}],
              "pipeline": [row("at-least-once", None, "direct", 2000.0),
                           row("at-least-once", None, "proxies", 1500.0),
                           row("exactly-once", "idempotent", "direct", 1000.0)]}
    r = {(x["mode"], x["links"]): x for x in ratios(result)["pipeline"]}
    assert r[("at-least-once", "direct")]["to_baseline"] == 0.2
    assert r[("at-least-once", "proxies")]["proxies_to_direct"] == 0.75
    assert r[("exactly-once/idempotent", "direct")]["to_at_least_once"] == 0.5
    assert r[("at-least-once", "direct")]["proxies_to_direct"] is None


def test_bad_batch_sizes_exit_2(tmp_path):
    r = run_cli("bench", "--batch-sizes", "100,0", "--out", str(tmp_path))
    assert r.returncode == 2 and "must be > 0" in r.stderr
    r = run_cli("bench", "--detect", "no-such-mechanism", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown 'no-such-mechanism'" in r.stderr and "Traceback" not in r.stderr


def test_issue_16_targets_are_reported_met_or_missed():
    from harness.bench.report import target_lines
    MiB = 1024 * 1024

    def row(mode, sink, links, b, eps):
        return {"mode": mode, "sink": sink, "links": links, "batch_size": b, "events_per_s": eps}
    result = {"baseline": [{"batch_size": 1000, "events_per_s": 100_000.0}],
              "pipeline": [row("at-least-once", None, "direct", 1000, 20_000.0),
                           row("at-least-once", None, "proxies", 1000, 17_000.0),
                           row("at-most-once", None, "direct", 1000, 14_000.0),
                           row("exactly-once", "idempotent", "direct", 1000, 16_000.0)],
              "audit": {"events": 1_000_000, "total_s": 4.2, "cpu_s": 4.0, "peak_rss_bytes": 600 * MiB},
              "config": {"preset": "quick"}, "elapsed_s": 58.0}
    result["ratios"] = ratios(result)
    lines = "\n".join(target_lines(result))
    assert "[red]missed[/] proxies cost <= 10% (at-least-once, batch 1000): 15%" in lines
    assert "[green]met[/] exactly-once/idempotent >= 0.8x at-least-once (direct, batch 1000): 0.80x" in lines
    assert "[green]met[/] at-least-once >= 15% of baseline (batch 1000): 20%" in lines
    assert "[red]missed[/] at-most-once >= 15% of baseline (batch 1000): 14%" in lines
    assert "[green]met[/] audit < 5 s (1,000,000 events): 4.2 s (CPU 4.0 s)" in lines
    assert "[red]missed[/] audit < 512 MiB (1,000,000 events): 600 MiB" in lines
    assert "[green]met[/] bench --quick < 60 s: 58 s" in lines


@pytest.mark.timeout(300)
def test_bench_tiny_run_writes_every_part(tmp_path):
    """Every part with tiny sizes: the table prints with its ratios, bench.json has every
    figure, and the figures are positive (throughput, CPU, memory, restart times)."""
    r = run_cli("bench", "--events", "600", "--batch-sizes", "200", "--links", "direct,proxies",
                "--modes", "at-least-once,exactly-once/idempotent", "--repeats", "1",
                "--log-records", "3000", "--audit-events", "2000", "--memory-events", "500",
                "--campaign-events", "600", "--campaign-kills", "1", "--proxy-events", "600",
                "--detect", "producer-retry", "--out", str(tmp_path), timeout=280)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "x baseline" in r.stdout and "bench.json" in r.stdout
    res = json.loads((tmp_path / "latest" / "bench.json").read_text())
    assert [b["batch_size"] for b in res["baseline"]] == [200]
    assert all(b["events_per_s"] > 0 for b in res["baseline"])
    assert len(res["pipeline"]) == 2 * 2  # modes x links
    for p in res["pipeline"]:
        assert p["applied"] == 600 and p["events_per_s"] > 0
        assert 0 < p["latency_p50_ms"] <= p["latency_p99_ms"]
        expected = {"producer", "broker", "processor", "sink"}
        if p["links"] == "proxies":
            expected |= {"proxy:producer-broker", "proxy:processor-broker", "proxy:processor-sink"}
        assert set(p["nodes"]) == expected
        assert all(n["cpu_s"] >= 0 and n["peak_rss_bytes"] > 0 for n in p["nodes"].values())
        assert sum(n["cpu_s"] for n in p["nodes"].values()) > 0
    assert all(q["to_baseline"] > 0 for q in res["ratios"]["pipeline"])
    assert res["memory"][0]["events"] == 500
    rec = res["recovery"]
    assert rec["broker"]["records"] == 3000
    for fig in (rec["broker"]["crash"], rec["broker"]["graceful"], rec["processor"], rec["sink"]):
        assert fig["median_s"] > 0 and len(fig["runs_s"]) == 3
    audit = res["audit"]
    assert audit["events"] == 3000 and audit["verdict"] == "not-exercised" and audit["anomalies"] == {}
    assert audit["total_s"] > 0 and audit["peak_rss_bytes"] > audit["rss_before_bytes"] > 0
    camp = res["campaign"]
    assert camp["kills_fired"] == 1 and camp["cycles_per_min"] > 0 and camp["verdict"] in ("held", "not-exercised")
    assert [p["batch_size"] for p in res["proxy"]] == [200]
    for p in res["proxy"]:
        assert p["calls"] > 0 and p["proxy_cpu_us_per_call"] >= 0 and p["direct_s"] > 0 and p["via_proxy_s"] > 0
        assert p["data_port_cpu_us_per_call"] >= 0 and p["via_data_port_s"] > 0
    det = res["detect"]
    assert det["total"] == 1 and [r["ablation"] for r in det["rows"]] == ["producer-retry"]
    row = det["rows"][0]
    assert row["scenario"].startswith("s09") and row["mode"] == "at-least-once"
    assert row["detected"] and row["verdict"] == "broken" and row["time_to_detect_s"] > 0
    assert audit["cpu_s"] > 0
    assert set(res["part_s"]) == {"baseline", "proxy", "pipeline", "memory", "recovery", "audit", "campaign",
                                  "detect"}
    assert "time to detect" in r.stdout and "CPU per forwarded call" in r.stdout
    assert not (tmp_path / "latest" / "pipeline").exists() or not any((tmp_path / "latest" / "pipeline").iterdir())


# ----- the fast paths the benchmark led to (same answers as the slow ones) ---------------------

def test_generate_rows_equals_generate_also_from_a_start():
    from nodes.producer.workload import generate, generate_rows
    full = generate(5, 1000, 16)
    assert list(generate_rows(5, 1000, 16)) == [(o.order_id, o.account, o.amount_cents) for o in full]
    assert list(generate_rows(5, 1000, 16, start=997)) == [
        (o.order_id, o.account, o.amount_cents) for o in full[997:]]
    with pytest.raises(ValueError):
        list(generate_rows(5, 10, 16, start=11))


def test_generated_workload_slices_equal_generate_in_any_order():
    from nodes.producer.workload import GeneratedWorkload, generate
    w, full = GeneratedWorkload(5, 1000, 16), generate(5, 1000, 16)
    assert len(w) == 1000
    assert w[0:100] == full[0:100] and w[100:450] == full[100:450]   # forward from the cursor
    assert w[900:2000] == full[900:1000] and w[10:20] == full[10:20]  # clipped; then a restart
    assert w[500:500] == []
    with pytest.raises(TypeError):
        w[3]
    with pytest.raises(ValueError):
        GeneratedWorkload(5, -1)


def test_read_values_equals_read_partition_also_on_a_torn_tail(tmp_path):
    import random as _random
    from nodes.broker.log import read_partition, read_values
    from nodes.broker.partition_log import PartitionLog
    rng = _random.Random(3)
    plog = PartitionLog(tmp_path / "orders-0", 0, segment_bytes=8 * 1024)   # several segments
    plog.open()
    for i in range(0, 400, 8):
        plog.append([(b"k", rng.randbytes(rng.randint(0, 120))) for _ in range(8)])
    plog.close()
    slow = [(r.offset, r.value) for r in read_partition(tmp_path, 0)]
    assert len(slow) == 400 and list(read_values(tmp_path, 0)) == slow
    seg = sorted((tmp_path / "orders-0").glob("*.log"))[-1]
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 3)   # torn last frame: both stop before it
    assert list(read_values(tmp_path, 0)) == slow[:-1] == [(r.offset, r.value) for r in read_partition(tmp_path, 0)]


async def test_the_baseline_sends_whole_passes_for_at_least_min_s():
    """One pass of a short workload lasts milliseconds: the baseline repeats it until
    ``min_s`` of sending, and counts every order it sent (harness/bench/baseline.py)."""
    from harness.bench.baseline import run_baseline
    r = await run_baseline(seed=1, events=200, batch_size=100, min_s=0.3)
    assert r["rounds"] >= 2 and r["elapsed_s"] >= 0.3
    assert r["events_per_s"] == pytest.approx(200 * r["rounds"] / r["elapsed_s"], rel=0.01)
    assert r["latency_p50_ms"] > 0


def test_a_default_pipeline_run_sends_at_least_50_batches():
    from harness.bench.runner import BenchConfig, pipeline_events
    assert pipeline_events(BenchConfig(), 100) == 20_000
    assert pipeline_events(BenchConfig(), 1000) == 50_000    # not 20 batches: mostly fill and drain
    assert pipeline_events(BenchConfig.quick(), 500) == 3000
    assert pipeline_events(BenchConfig(events=600, min_batches=0), 1000) == 600   # --events given
