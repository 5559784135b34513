"""``bench --broker builtin,nats``: the same pipeline over each broker, side by side (bench.json's
"brokers" part, harness/bench/brokers.py). Figures are never asserted beyond being measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bench.brokers import summarise

ROOT = Path(__file__).resolve().parent.parent


def test_summarise_groups_cpu_by_role():
    row = {"mode": "at-least-once", "sink": None, "links": "proxies", "batch_size": 100, "events": 1000,
           "applied": 1000, "events_per_s": 500.0, "latency_p50_ms": 5.0, "latency_p99_ms": 9.0,
           "nodes": {"nats-1": {"cpu_s_per_1k": 0.1}, "nats-2": {"cpu_s_per_1k": 0.05},
                     "proxy:route-nats-1-nats-2": {"cpu_s_per_1k": 0.02}, "producer": {"cpu_s_per_1k": 0.2},
                     "processor": {"cpu_s_per_1k": 0.3}, "sink": {"cpu_s_per_1k": 0.1},
                     "nats-3": {"cpu_s_per_1k": None}}}
    s = summarise(row, "nats")
    assert s["cpu_s_per_1k_by_group"] == {"log": 0.15, "proxies": 0.02, "clients": 0.5, "sink": 0.1}
    assert s["cpu_s_per_1k"] == 0.77 and s["broker"] == "nats"


def test_bad_broker_name_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--broker", "kafka", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown 'kafka'" in r.stderr
    assert "mosquitto" in r.stderr   # the choices it names


def test_mosquitto_counts_as_the_log():
    row = {"mode": "at-least-once", "sink": None, "links": "direct", "batch_size": 100, "events": 1000,
           "applied": 1000, "events_per_s": 500.0, "latency_p50_ms": 5.0, "latency_p99_ms": 9.0,
           "nodes": {"mosquitto": {"cpu_s_per_1k": 0.01}, "producer": {"cpu_s_per_1k": 0.1},
                     "processor": {"cpu_s_per_1k": 0.1}, "sink": {"cpu_s_per_1k": 0.05}}}
    assert summarise(row, "mosquitto")["cpu_s_per_1k_by_group"] == {"log": 0.01, "clients": 0.2, "sink": 0.05}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_brokers_part_writes_both_brokers_side_by_side(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--broker", "builtin,nats", "--parts", "brokers",
                        "--events", "400", "--batch-sizes", "50", "--links", "direct,proxies", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=390)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "brokers side by side" in r.stdout and "TCP proxy alone" in r.stdout
    res = json.loads((tmp_path / "latest" / "bench.json").read_text())
    rows = res["brokers"]["rows"]
    assert {(x["broker"], x["mode"], x["sink"], x["links"]) for x in rows} == {
        (b, m, s, lk) for b in ("builtin", "nats") for m, s in (("at-least-once", None), ("exactly-once", "idempotent"))
        for lk in ("direct", "proxies")}
    for x in rows:
        assert x["applied"] == 400 and x["events_per_s"] > 0 and x["cpu_s_per_1k"] > 0
        assert x["cpu_s_per_1k_by_group"]["log"] > 0
        if x["broker"] == "nats":
            assert {"nats-1", "nats-2", "nats-3"} <= set(x["nodes"])
            if x["links"] == "proxies":
                assert "proxy:route-nats-1-nats-2" in x["nodes"] and x["proxies_to_direct"] > 0
    tp = res["brokers"]["tcp_proxy"]
    assert tp["direct"]["mean_us"] > 0 and tp["proxied"]["mean_us"] > 0
