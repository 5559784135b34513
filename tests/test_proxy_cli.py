"""``testbed fault ...`` against a real proxy named in a cluster manifest."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from click.testing import CliRunner

from harness.cli_fault import NO_CLUSTER, fault
from tests.proxy_support import apply_code, applied_counts, fault_records, order, sink_behind_proxy

pytestmark = pytest.mark.timeout(60)


def test_no_cluster_is_one_line_usage_error(tmp_path):
    r = CliRunner().invoke(fault, ["--cluster", str(tmp_path / "none.json"), "list"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == f"Error: {tmp_path / 'none.json'}: missing ({NO_CLUSTER})"


async def test_add_list_stats_heal_on_running_proxy(spawn, tmp_path):
    sink, proxy = await sink_behind_proxy(spawn)
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({
        "run_dir": str(tmp_path),
        "nodes": {"sink": {"address": sink.address, "pid": sink.pid, "data_dir": str(sink.data_dir)}},
        "links": {"processor-sink": {"proxy": proxy.address, "upstream": sink.address,
                                     "pid": proxy.pid, "data_dir": str(proxy.data_dir)}}}))
    runner = CliRunner()

    async def cli(*args: str):
        return await asyncio.to_thread(runner.invoke, fault, ["--cluster", str(cluster), *args])

    r = await cli("add", "duplicate", "--link", "processor-sink", "--method", "Apply", "--count", "1")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "f1 duplicate on processor-sink"
    r = await cli("add", "delay", "--link", "processor-sink", "--delay-ms", "20", "--jitter-ms", "5",
                  "--side", "response", "--probability", "0.5")
    assert r.exit_code == 0, r.output
    assert await apply_code(proxy.address, 1) == grpc.StatusCode.OK
    assert (await applied_counts(sink.address))[order(1).order_id] == 2

    r = await cli("list")
    assert r.exit_code == 0, r.output
    assert "f1" in r.output and "duplicate" in r.output and "exhausted" in r.output
    assert "f2" in r.output and "20+0..5 ms response" in r.output
    r = await cli("stats", "--link", "processor-sink")
    assert r.exit_code == 0 and "Apply" in r.output, r.output
    # the proxy's caller_gone count (README: "counted as caller_gone in the proxy's status")
    assert r.output.splitlines()[-1].startswith("caller_gone (") and r.output.rstrip().endswith(
        "processor-sink 0"), r.output

    # Bad input: the proxy's INVALID_ARGUMENT (naming the field) or an unknown link, exit 2.
    r = await cli("add", "error", "--link", "processor-sink", "--probability", "2")
    assert r.exit_code == 2 and "probability" in r.output, r.output
    r = await cli("add", "error", "--link", "producer-broker")
    assert r.exit_code == 2 and "unknown link 'producer-broker'" in r.output, r.output
    r = await cli("remove", "f9", "--link", "processor-sink")
    assert r.exit_code == 2 and "NOT_FOUND" in r.output, r.output  # an unknown fault id: a usage error

    r = await cli("remove", "f2", "--link", "processor-sink")
    assert r.exit_code == 0 and r.stdout.strip() == "removed f2 from processor-sink"
    r = await cli("add", "error", "--link", "processor-sink", "--code", "internal")
    assert r.exit_code == 0, r.output
    assert await apply_code(proxy.address, 2) == grpc.StatusCode.INTERNAL
    r = await cli("heal")
    assert r.exit_code == 0 and "healed processor-sink: 2 fault(s) removed" in r.output, r.output
    assert await apply_code(proxy.address, 3) == grpc.StatusCode.OK
    assert [rec["fault"] for rec in fault_records(proxy)][0] == "duplicate"
    assert fault_records(proxy)[-1]["action"] == "errored"
