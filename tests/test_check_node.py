"""``testbed check-node``: a node that cannot be run gets a one-line diagnosis and exit 2;
a node that breaks the contract gets the violation in words and exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pid_alive

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

GARBAGE_SERVER = '''
import argparse, socket
ap = argparse.ArgumentParser()
ap.add_argument("--listen")
args, _ = ap.parse_known_args()
host, port = args.listen.rsplit(":", 1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(b"HELLO THIS IS NOT GRPC\\r\\n" * 4)
    c.close()
'''

NO_HEALTH_SERVER = """
import argparse, asyncio, grpc
ap = argparse.ArgumentParser()
ap.add_argument("--listen")
args, _ = ap.parse_known_args()
async def main():
    server = grpc.aio.server()   # gRPC, but no grpc.health.v1.Health
    server.add_insecure_port(args.listen)
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


def check_node(tmp_path: Path, command: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "harness.cli", "check-node", "--processor-cmd", command,
                           "--mode", "at-least-once", "--out", str(tmp_path / "runs"), "-q", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def assert_nothing_left(tmp_path: Path) -> None:
    """Every process the check started (nodes and proxies) is gone."""
    manifest = json.loads((tmp_path / "runs" / "latest" / "at-least-once" / "cluster.json").read_text())
    pids = [n["pid"] for n in manifest["nodes"].values() if n["pid"]]
    pids += [l["pid"] for l in manifest["links"].values() if l["pid"]]
    assert pids and not [p for p in pids if pid_alive(p)]


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the processor could not be run"), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.timeout(120)
def test_a_node_that_exits_at_once(tmp_path):
    line = one_line_error(check_node(tmp_path, f"{PY} -c 'import sys; print(\"no config\", file=sys.stderr); "
                                               f"sys.exit(2)'"))
    assert "exited with code 2" in line and "bad flag or config" in line and "no config" in line
    assert_nothing_left(tmp_path)


@pytest.mark.timeout(120)
def test_a_node_that_never_becomes_healthy(tmp_path):
    line = one_line_error(check_node(tmp_path, f"{PY} -c 'import time; time.sleep(60)'", "--timeout", "2"))
    assert "not SERVING" in line and "within 2 s" in line and "nothing listens on 127.0.0.1:" in line
    assert_nothing_left(tmp_path)


@pytest.mark.timeout(120)
def test_a_node_that_answers_garbage(tmp_path):
    script = tmp_path / "garbage.py"
    script.write_text(GARBAGE_SERVER)
    line = one_line_error(check_node(tmp_path, f"{PY} {script}", "--timeout", "2"))
    assert "accepts connections but does not answer as a gRPC server" in line
    assert_nothing_left(tmp_path)


@pytest.mark.timeout(120)
def test_a_grpc_server_without_the_health_service(tmp_path):
    script = tmp_path / "nohealth.py"
    script.write_text(NO_HEALTH_SERVER)
    line = one_line_error(check_node(tmp_path, f"{PY} {script}", "--timeout", "2"))
    assert "speaks gRPC but does not serve grpc.health.v1.Health/Check" in line
    assert_nothing_left(tmp_path)


def test_a_command_that_cannot_be_found(tmp_path):
    r = check_node(tmp_path, "./no-such-processor --fast")
    assert r.returncode == 2 and "executable './no-such-processor' not found" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(120)
def test_the_buggy_example_is_told_what_it_got_wrong(tmp_path):
    """The kill -9 step: its write hangs in a black-holed link (the fault fired: the step
    waits for it), the kill lands, the orders whose offsets it had committed are lost."""
    r = check_node(tmp_path, f"{PY} examples/buggy_processor.py")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ok   at-least-once               batch 2" in r.stdout
    assert "FAIL at-least-once               kill -9" in r.stdout
    assert "never applied" in r.stdout and "offsets committed before the sink's ACK" in r.stdout
    details = json.loads(next((tmp_path / "runs").glob("*/check-node.json")).read_text())
    steps = {f["step"]: f for f in details["modes"]["at-least-once"]}
    assert steps["batch 1"]["ok"] and not steps["kill -9"]["ok"]
    faults = (tmp_path / "runs" / "latest" / "at-least-once" / "proxy-processor-sink" / "faults.jsonl").read_text()
    assert '"black-holed"' in faults
    assert_nothing_left(tmp_path)


@pytest.mark.timeout(120)
def test_the_correct_example_passes(tmp_path):
    r = check_node(tmp_path, f"{PY} examples/alo_processor.py")
    assert r.returncode == 0, r.stdout + r.stderr
    details = json.loads(next((tmp_path / "runs").glob("*/check-node.json")).read_text())
    steps = [f["step"] for f in details["modes"]["at-least-once"] if f["ok"]]
    assert steps == ["start", "batch 1", "graceful restart", "batch 2", "kill -9", "lost ACKs"]
    assert "every step passed in at-least-once" in r.stdout
    assert_nothing_left(tmp_path)


def test_the_judgement_of_one_snapshot_in_words():
    from harness.check_node_judge import promise_violation, tally
    from nodes.pb.events_pb2 import Order
    orders = [Order(order_id=f"o{i}", account="a", amount_cents=100) for i in range(3)]
    lost, dup, other = tally({"o0": 1, "o1": 2}, {"a": 300}, orders)
    assert (lost, dup, other) == (["o2"], ["o1"], "")
    assert promise_violation("at-most-once", "processor", "x", lost, dup, other).endswith(
        "at-most-once must not retry a write nor replay after a crash")
    assert "were their offsets committed before the sink's ACK?" in promise_violation(
        "at-least-once", "processor", "x", lost, dup, other)
    assert promise_violation("at-least-once", "processor", "x", [], dup, other) is None
    assert "not durable before the ACK" in promise_violation("exactly-once", "sink", "x", lost, [], "")
    _, _, other = tally({"o0": 1}, {"a": 999}, orders)
    assert other.startswith("Snapshot balances disagree with its own orders for 1 accounts")
    _, _, other = tally({"zz": 1}, {}, orders)
    assert other == "the sink holds 1 orders never produced (first: zz)"


@pytest.mark.timeout(120)
def test_a_sink_that_forgets_on_restart(tmp_path):
    """tests/byo_memory_sink.py: a sink written from the contract, in memory only."""
    r = subprocess.run([PY, "-m", "harness.cli", "check-node", "--sink-cmd", f"{PY} tests/byo_memory_sink.py",
                        "--mode", "exactly-once/idempotent", "--out", str(tmp_path / "runs"), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ok   exactly-once/idempotent     batch 1" in r.stdout
    assert "ok   exactly-once/idempotent     graceful restart" in r.stdout
    assert ("FAIL exactly-once/idempotent     batch 2           after a graceful restart: 40 orders applied before "
            "the restart are gone (first: order-00000000): the sink must keep what it acknowledged") in r.stdout
