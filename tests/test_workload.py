"""The workload is a pure, prefix-stable function of (seed, count); JSONL errors name line and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodes.common.partitioning import partition_for
from nodes.producer.workload import WorkloadError, generate, identity, load_jsonl

ROOT = Path(__file__).resolve().parent.parent


def test_generate_is_deterministic_and_seeded():
    a, b = generate(42, 500), generate(42, 500)
    assert a == b
    assert generate(43, 500) != a
    assert [o.order_id for o in a[:3]] == ["order-00000000", "order-00000001", "order-00000002"]
    assert a[-1].order_id == "order-00000499"


def test_generate_is_prefix_stable():
    full = generate(9, 3000)
    for k in (0, 1, 17, 1000, 2999):
        assert generate(9, k) == full[:k]


def test_generate_fields_in_range():
    orders = generate(1, 20_000)
    accounts = {o.account for o in orders}
    assert accounts == {f"acct-{i:02d}" for i in range(16)}
    amounts = [o.amount_cents for o in orders]
    assert min(amounts) >= 100 and max(amounts) <= 99_999
    assert min(amounts) < 200 and max(amounts) > 99_800   # the whole range is used
    assert len({o.order_id for o in orders}) == 20_000
    assert {o.account for o in generate(1, 2000, accounts=3)} == {"acct-00", "acct-01", "acct-02"}


def test_generate_is_fast_enough():
    t = time.perf_counter()
    generate(1, 200_000)
    assert time.perf_counter() - t < 5.0   # ~0.6 s on one core; 1,000,000 in a few seconds


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError):
        generate(1, -1)
    with pytest.raises(ValueError):
        generate(1, 10, accounts=0)


def test_partition_for_is_crc32_and_stable_across_processes():
    assert partition_for("acct-00", 4) == __import__("zlib").crc32(b"acct-00") % 4
    ours = [partition_for(f"acct-{i:02d}", 4) for i in range(16)]
    assert set(ours) <= {0, 1, 2, 3} and len(set(ours)) > 1
    code = "from nodes.common.partitioning import partition_for as p; print([p(f'acct-{i:02d}', 4) for i in range(16)])"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, PYTHONHASHSEED="123"))
    assert json.loads(r.stdout) == ours
    with pytest.raises(ValueError):
        partition_for("acct-00", 0)


def test_load_jsonl_reads_orders(tmp_path):
    f = tmp_path / "w.jsonl"
    f.write_text('{"order_id": "a", "account": "x", "amount_cents": 5}\n\n'
                 '{"order_id": "b", "account": "y", "amount_cents": -7}\n')
    orders = load_jsonl(f)
    assert [(o.order_id, o.account, o.amount_cents) for o in orders] == [("a", "x", 5), ("b", "y", -7)]
    assert identity(workload_file=f)["source"] == "file"
    assert identity(workload_file=f) != identity(seed=1, count=2, accounts=16)


GOOD = '{"order_id": "o1", "account": "a", "amount_cents": 100}'
BAD_FILES = [
    # (contents, line, text expected in the message)
    (GOOD + "\n" + '{"order_id": "o2", "account": "a", "amount_cents": "12"}\n', 2,
     "field 'amount_cents' must be an integer"),
    (GOOD + "\n" + '{"order_id": "o2", "account": "a", "amount_cents": true}\n', 2,
     "field 'amount_cents' must be an integer"),
    (GOOD + "\n" + GOOD + "\n" + '{"order_id": "o3", "amount_cents": 1}\n', 2, "field 'order_id' duplicates line 1"),
    (GOOD + "\n" + '{"order_id": "o2", "amount_cents": 1}\n', 2, "missing field 'account'"),
    (GOOD + "\n" + '{"order_id": 7, "account": "a", "amount_cents": 1}\n', 2, "field 'order_id' must be"),
    (GOOD + "\n\n" + '{"order_id": "o2", "account": "a", "amount_cents": 1\n', 3, "invalid JSON"),
    ('[1, 2]\n', 1, "must be a JSON object"),
    ("", 1, "empty"),
    ("\n\n", 1, "empty"),
]


@pytest.mark.parametrize("contents,line,message", BAD_FILES)
def test_load_jsonl_errors_name_line_and_field(tmp_path, contents, line, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(contents)
    with pytest.raises(WorkloadError) as e:
        load_jsonl(f)
    assert str(e.value).startswith(f"{f}:{line}: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_node_exits_2_with_the_one_line_for_a_bad_workload(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(GOOD + "\n" + '{"order_id": "o2", "account": "a", "amount_cents": 1.5}\n')
    cmd = [sys.executable, "-m", "nodes.producer", "--data-dir", str(tmp_path / "d"),
           "--broker", "127.0.0.1:1", "--workload", str(f)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"producer: error: {f}:2: field 'amount_cents' must be an integer"]
