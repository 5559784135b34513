"""Several processors in one consumer group (issue 14), real processes on loopback."""

from __future__ import annotations

import json

import pytest

from harness.checker import check, load_run
from harness.cluster import Cluster, ClusterConfig
from harness.external_report import record_final_state


@pytest.mark.timeout(90)
async def test_three_processors_drain_every_partition(tmp_path):
    cluster = Cluster(ClusterConfig(mode="at-least-once", seed=7, events=2000, batch_size=100,
                                    partitions=4, processors=3), tmp_path)
    try:
        await cluster.start()
        last = await cluster.wait_drained(timeout_s=60)
        await record_final_state(cluster, tmp_path)
    finally:
        await cluster.stop()
    assert not any(p.running for p in cluster.all_processes())
    members = last["processor"]["members"]
    assert sorted(members) == ["processor", "processor-2", "processor-3"]
    owned = sorted(p for m in members.values() for p in m["assignment"])
    assert owned == [0, 1, 2, 3]                       # every partition, one owner each
    assert all(m["assignment"] for m in members.values())
    assert len({m["generation"] for m in members.values()}) == 1
    hw = last["high_watermarks"]
    assert sum(hw.values()) == 2000
    assert all(last["processor"]["durable_positions"][str(p)] == off for p, off in hw.items())
    for name in members:                               # each member its own data dir and links
        assert (tmp_path / name / "processor.log").exists()
    links = json.loads((tmp_path / "cluster.json").read_text())["links"]
    assert {"processor-2-broker", "processor-2-sink", "processor-3-broker", "processor-3-sink"} <= set(links)
    report = check(load_run(tmp_path))
    assert report.events == 2000 and report.acked == 2000
    assert {n: a.count for n, a in report.anomalies.items() if a.count} == {}
