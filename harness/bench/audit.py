"""The checker's cost: time and peak memory to audit a run of many events.

:func:`build_audit_run` writes a complete run directory for ``events`` orders
of the seeded workload, every one delivered once (an at-least-once run that
held): ``cluster.json``, the producer history (an ``invoke`` and an ``ok`` per
partition batch of 100, in the producer's own line format), the broker log
(filled by a real broker through Produce, :mod:`harness.bench.recovery`) and a
sink database in the sink's schema with every order applied once.
:func:`run_audit` then runs ``check(load_run(dir))`` in a child process
(``python -m harness.bench.audit DIR``) and reports its wall time and its peak
RSS (``/proc/self/status`` VmHWM): the memory of the
whole audit process, interpreter included.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from harness.cluster import ClusterConfig
from nodes.common.modes import DEFAULT_PARTITIONS
from nodes.common.partitioning import partition_for
from nodes.producer.workload import generate
from nodes.sink.schema import DB_FILE, connect

ROOT = Path(__file__).resolve().parents[2]
HISTORY_BATCH = 100


def build_audit_run(run_dir: Path, *, seed: int, events: int) -> None:
    """Write cluster.json, producer/history.jsonl and sink/sink.db for ``events`` orders.

    ``run_dir/broker`` must already hold the broker log of the same (seed, events).
    """
    orders = generate(seed, events)
    cfg = ClusterConfig(mode="at-least-once", seed=seed, events=events, proxies=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "cluster.json").write_text(json.dumps({"run_dir": str(run_dir), "config": asdict(cfg),
                                                      "nodes": {}, "links": {}}))
    (run_dir / "producer").mkdir(exist_ok=True)
    now = time.time()
    index = 0
    with open(run_dir / "producer" / "history.jsonl", "w") as f:
        for b, start in enumerate(range(0, events, HISTORY_BATCH)):
            groups: dict[int, list[str]] = defaultdict(list)
            for o in orders[start:start + HISTORY_BATCH]:
                groups[partition_for(o.account, DEFAULT_PARTITIONS)].append(o.order_id)
            for p, ids in sorted(groups.items()):
                value = {"batch": b, "partition": p, "base_sequence": None, "attempt": 1, "orders": ids}
                for typ in ("invoke", "ok"):
                    op = {"index": index, "time": now, "process": "producer", "incarnation": 1,
                          "type": typ, "f": "produce", "value": value}
                    f.write(json.dumps(op, separators=(",", ":")) + "\n")
                    index += 1
    (run_dir / "sink").mkdir(exist_ok=True)
    con = connect(run_dir / "sink" / DB_FILE)
    try:
        con.execute("BEGIN")
        ms = int(now * 1000)
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, 1, ?)",
                        ((o.order_id, o.account, o.amount_cents, ms) for o in orders))
        totals: dict[str, int] = defaultdict(int)
        for o in orders:
            totals[o.account] += o.amount_cents
        con.executemany("INSERT INTO balances VALUES (?, ?)", totals.items())
        con.execute("COMMIT")
    finally:
        con.close()


async def run_audit(run_dir: Path, timeout_s: float = 600.0) -> dict:
    """Audit ``run_dir`` in a child process.

    Returns {"events", "verdict", "anomalies", "load_s", "check_s", "total_s", "cpu_s"
    (user+system CPU of load and check: the figure that holds on a loaded machine),
    "rss_before_bytes" (after imports), "peak_rss_bytes"}.

    Raises:
        RuntimeError: the child failed (its stderr tail in the message).
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harness.bench.audit", str(run_dir), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=str(ROOT), env=env, start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"audit of {run_dir} took more than {timeout_s} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"audit child exited {proc.returncode}: {err.decode()[-500:]}")
    return json.loads(out)


def _vm_hwm() -> int:
    # VmHWM, not getrusage's ru_maxrss: ru_maxrss survives execve and would report
    # the parent's peak at fork time.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(run_dir: Path) -> dict:
    from harness.checker import check, load_run
    rss0 = _vm_hwm()
    c0 = time.process_time()
    t0 = time.perf_counter()
    data = load_run(run_dir)
    t1 = time.perf_counter()
    report = check(data)
    t2 = time.perf_counter()
    c2 = time.process_time()
    return {"events": report.events, "verdict": report.verdict,
            "anomalies": {n: a.count for n, a in report.anomalies.items() if a.count},
            "load_s": round(t1 - t0, 3), "check_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3),
            "cpu_s": round(c2 - c0, 3),
            "rss_before_bytes": rss0,
            "peak_rss_bytes": _vm_hwm()}


if __name__ == "__main__":
    print(json.dumps(_child(Path(sys.argv[1]))))
