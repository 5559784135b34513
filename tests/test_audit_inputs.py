"""The audit's input validation (issue 11): every damaged, truncated, empty or
wrongly shaped run file is one line naming the file and exit 2, never "held".

One real campaign run (exactly-once, 200 orders, no faults) is made once per
module; each case damages one file of a copy of it. BAD_INPUTS below is the
list of bad inputs these tests cover (its length is in the issue note).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from harness.checker import InputError, check, load_run
from harness.checker.validate import result_file, schedule_file

ROOT = Path(__file__).resolve().parent.parent
MODE = "exactly-once-idempotent"


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    r = run_cli("campaign", "--mode", "exactly-once", "--sink", "idempotent", "--events", "200",
                "--faults", "none", "--rate", "0", "--quiet", "--out", str(out), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return (out / "latest").resolve()


@pytest.fixture
def run(good_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(good_run, dst)
    return dst


# -- how to damage a file ---------------------------------------------------------------------------

def write(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        p = d / rel
        if p.is_dir():
            shutil.rmtree(p)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return f


def truncate(rel: str, keep: float = 0.5) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        p = d / rel
        data = p.read_bytes()
        p.write_bytes(data[:int(len(data) * keep)])
    return f


def remove(rel: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        p = d / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return f


def make_dir(rel: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        (d / rel).unlink()
        (d / rel).mkdir()
    return f


def edit_json(rel: str, fn: Callable[[dict], object]) -> Callable[[Path], None]:
    """Change the parsed object in place (fn's return value is ignored) and write it back."""
    def f(d: Path) -> None:
        p = d / rel
        obj = json.loads(p.read_text())
        fn(obj)
        p.write_text(json.dumps(obj))
    return f


def history_lines(fn: Callable[[list[dict]], list]) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        p = d / MODE / "producer" / "history.jsonl"
        ops = [json.loads(line) for line in p.read_text().splitlines()]
        p.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in fn(ops)))
    return f


def middle_of_history(d: Path) -> None:
    """Cut the history in the middle of a line, then keep the rest: a hole, not a torn tail."""
    p = d / MODE / "producer" / "history.jsonl"
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(lines[0][: len(lines[0]) // 2] + b"\n" + b"".join(lines[1:]))


def flip_segment_byte(d: Path) -> None:
    seg = sorted((d / MODE / "broker" / "orders-0").glob("*.log"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 3] ^= 0xFF
    seg.write_bytes(bytes(data))


def sink_sql(*sql: str) -> Callable[[Path], None]:
    def f(d: Path) -> None:
        con = sqlite3.connect(d / MODE / "sink" / "sink.db")
        for s in sql:
            con.execute(s)
        con.commit()
        con.close()
    return f


def final_status_state(state) -> Callable[[Path], None]:
    return edit_json(f"{MODE}/processor/final-status.json", lambda o: o.__setitem__("state", state))


def set_config(**kv) -> Callable[[Path], None]:
    return edit_json(f"{MODE}/cluster.json", lambda o: o["config"].update(kv))


H = f"{MODE}/producer/history.jsonl"
C = f"{MODE}/cluster.json"
F = f"{MODE}/processor/final-status.json"
DB = f"{MODE}/sink/sink.db"

# (case id, damage, words the one-line error must contain)
BAD_INPUTS: list[tuple[str, Callable[[Path], None], str]] = [
    # producer history
    ("history-garbage", write(H, "garbage\nx y z\n"), "line 1 is not a JSON line"),
    ("history-empty", write(H, ""), "no operation, but the broker log holds"),
    ("history-missing", remove(H), "history.jsonl: missing"),
    ("history-is-a-dir", make_dir(H), "is a directory"),
    ("history-hole-in-middle", middle_of_history, "line 1 is not a JSON line"),
    ("history-not-utf8", write(H, b'\xff\xfe{"index": 0}\n{"index": 1}\n'), "not UTF-8"),
    ("history-nan", history_lines(lambda ops: ['{"index": NaN}'] + ops), "not a JSON line"),
    ("history-array-line", history_lines(lambda ops: ["[1, 2]"] + ops), "line 1 is not a JSON object"),
    ("history-bad-type", history_lines(lambda ops: [dict(ops[0], type="maybe")] + ops[1:]), "'type' should be"),
    ("history-value-not-object", history_lines(lambda ops: [dict(ops[0], value=[])] + ops[1:]),
     "'value' should be an object"),
    ("history-orders-not-list", history_lines(lambda ops: [dict(ops[0], value={"orders": "order-1"})] + ops[1:]),
     "value.orders should be a list"),
    ("history-index-backwards", history_lines(lambda ops: ops[:2] + [dict(ops[2], index=0)] + ops[3:]),
     "'index' should be an integer above"),
    ("history-ok-never-invoked", history_lines(lambda ops: [o for o in ops if o["type"] != "invoke"]),
     "acknowledged but never invoked"),
    ("history-of-another-run", history_lines(lambda ops: [
        dict(o, value=dict(o["value"], orders=[x.replace("order-", "other-") for x in o["value"]["orders"]]))
        for o in ops]), "not in this run's workload"),
    # cluster manifest
    ("cluster-empty", write(C, ""), "cluster.json: empty"),
    ("cluster-truncated", truncate(C), "not valid JSON"),
    ("cluster-not-object", write(C, "[]"), "expected a JSON object"),
    ("cluster-no-config", write(C, "{}"), "no 'config' field"),
    ("cluster-bad-mode", set_config(mode="twice"), "config.mode should be one of"),
    ("cluster-events-string", set_config(events="200"), "config.events should be an integer"),
    ("cluster-seed-negative", set_config(seed=-1), "config.seed should be an integer >= 0"),
    ("cluster-seed-bool", set_config(seed=True), "config.seed should be an integer"),
    ("cluster-accounts-zero", set_config(accounts=0), "config.accounts"),
    # broker log
    ("broker-dir-missing", remove(f"{MODE}/broker"), "missing broker data dir"),
    ("broker-meta-missing", remove(f"{MODE}/broker/broker-meta.json"), "broker-meta.json: missing"),
    ("broker-meta-garbage", write(f"{MODE}/broker/broker-meta.json", "{partit"), "not valid JSON"),
    ("broker-meta-zero", write(f"{MODE}/broker/broker-meta.json", '{"partitions": 0}'), "should be >= 1"),
    ("broker-meta-string", write(f"{MODE}/broker/broker-meta.json", '{"partitions": "4"}'),
     "'partitions' should be an integer"),
    ("broker-segment-bitflip", flip_segment_byte, "broker log"),
    # sink database
    ("sink-missing", remove(DB), "sink.db: missing"),
    ("sink-empty", write(DB, b""), "sink.db: empty"),
    ("sink-garbage", write(DB, b"not a database at all" * 100), "not a readable sink database"),
    ("sink-no-tables", sink_sql("DROP TABLE orders"), "not a readable sink database"),
    ("sink-float-balance", sink_sql("UPDATE balances SET balance_cents = 9.3e18 WHERE account = (SELECT min(account) FROM balances)"),
     "expected an integer"),
    ("sink-text-count", sink_sql("UPDATE orders SET applied_count = 'x' WHERE order_id = (SELECT min(order_id) FROM orders)"), "expected an integer"),
    ("sink-negative-count", sink_sql("UPDATE orders SET applied_count = -1 WHERE order_id = (SELECT min(order_id) FROM orders)"),
     "negative applied count"),
    # processor state
    ("final-status-truncated", truncate(F), "final-status.json: not valid JSON"),
    ("final-status-empty", write(F, "\n"), "final-status.json: empty"),
    ("final-status-no-state", write(F, '{"phase": "running"}'), "no 'state' field"),
    ("final-status-state-list", final_status_state([1, 2]), "should be an object of account"),
    ("final-status-float-cents", final_status_state({"acct-00": 1.5}), "should be integer cents"),
    ("final-status-nan", write(F, '{"state": {"acct-00": NaN}}'), "NaN is not valid JSON"),
    ("checkpoint-garbage", lambda d: (remove(F)(d), write(f"{MODE}/processor/checkpoint.json", "\x00\x01")(d)),
     "checkpoint.json"),
    # nemesis history
    ("nemesis-garbage-line", write(f"{MODE}/nemesis.jsonl", "oops\n{}\n"), "nemesis.jsonl: line 1"),
    ("nemesis-wrong-shape", write(f"{MODE}/nemesis.jsonl", '{"type": "ok"}\n'), "expected a nemesis operation"),
]


@pytest.mark.parametrize("damage,needle", [(d, n) for _, d, n in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS])
def test_damaged_mode_file_is_an_input_error(run, damage, needle):
    damage(run)
    with pytest.raises(InputError) as e:
        load_run(run / MODE)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg


def test_good_run_and_torn_last_history_line_still_audit(run):
    assert load_run(run / MODE).invoked
    h = run / MODE / "producer" / "history.jsonl"
    h.write_bytes(h.read_bytes() + b'{"index": 99999, "type": "inv')  # kill -9 in mid-write
    data = load_run(run / MODE)
    assert len(data.workload) == 200 and data.acked


def test_garbage_history_is_exit_2_one_line_not_held(run):
    """The headline defect: a garbage history audited as "held", exit 0."""
    write(H, "garbage\nmore garbage\n")(run)
    r = run_cli("audit", str(run))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "held" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "history.jsonl: line 1" in lines[0], r.stderr


R = "result.json"
RUN_LEVEL: list[tuple[str, Callable[[Path], None], str]] = [
    ("result-empty", write(R, ""), "result.json: empty"),
    ("result-truncated", truncate(R), "result.json: not valid JSON"),
    ("result-modes-not-list", edit_json(R, lambda o: o.__setitem__("modes", {})), "'modes' should be a list"),
    ("result-mode-without-dir", edit_json(R, lambda o: o["modes"][0].pop("dir")), "modes[0] should be an object"),
    ("result-dir-escapes", edit_json(R, lambda o: o["modes"][0].__setitem__("dir", "../../etc")),
     "should be a directory inside the run"),
    ("result-nan", write(R, '{"seed": NaN, "modes": []}'), "NaN is not valid JSON"),
    ("result-not-utf8", write(R, b"\xc3\x28{}"), "not UTF-8"),
    ("result-is-a-dir", make_dir(R), "is a directory"),
]


@pytest.mark.parametrize("damage,needle", [(d, n) for _, d, n in RUN_LEVEL], ids=[i for i, _, _ in RUN_LEVEL])
def test_damaged_result_file_is_an_input_error(run, damage, needle):
    damage(run)
    with pytest.raises(InputError) as e:
        result_file(run / R)
    assert needle in str(e.value), str(e.value)


S = "schedule.json"
SCHEDULES: list[tuple[str, Callable[[Path], None], str]] = [
    ("schedule-empty", write(S, ""), "schedule.json: empty"),
    ("schedule-truncated", truncate(S), "schedule.json: not valid JSON"),
    ("schedule-steps-not-list", write(S, '{"steps": 3}'), "'steps' should be a list"),
    ("schedule-step-without-f", write(S, '{"steps": [{"at": 1}]}'), "needs 'at' and 'f'"),
    ("schedule-missing", remove(S), "schedule.json: missing"),
]


@pytest.mark.parametrize("damage,needle", [(d, n) for _, d, n in SCHEDULES], ids=[i for i, _, _ in SCHEDULES])
def test_damaged_schedule_is_an_input_error(run, damage, needle):
    damage(run)
    with pytest.raises(InputError) as e:
        schedule_file(run / S)
    assert needle in str(e.value), str(e.value)


@pytest.mark.parametrize("cmd,damage,needle", [
    ("audit", truncate(R), "result.json: not valid JSON"),
    ("replay", truncate(S), "schedule.json: not valid JSON"),
    ("replay", write(R, '{"modes": [{"mode": "exactly-once"}]}'), "modes[0] should be an object"),
    ("audit", truncate(f"{MODE}/processor/final-status.json"), "final-status.json: not valid JSON"),
], ids=["audit-truncated-result", "replay-truncated-schedule", "replay-result-shape", "audit-truncated-status"])
def test_cli_reading_damaged_run_files_is_one_line_exit_2(run, cmd, damage, needle):
    damage(run)
    r = run_cli(cmd, str(run), "--quiet") if cmd == "replay" else run_cli(cmd, str(run))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr and "held" not in r.stdout


REPORT_INPUTS: list[tuple[str, Callable[[Path], None], str]] = [
    ("report-nemesis-not-object", write(f"{MODE}/nemesis.jsonl", "[1]\n"), "nemesis.jsonl: line 1 is not a JSON object"),
    ("report-nemesis-time-string", write(f"{MODE}/nemesis.jsonl", '{"type": "ok", "f": "kill", "time": "x"}\n'),
     "expected a nemesis operation"),
    ("report-check-not-object", write(f"{MODE}/check.json", "[1]"), "check.json: expected a JSON object"),
    ("report-check-anomalies-int", write(f"{MODE}/check.json", '{"anomalies": 3}'), "'anomalies' should be an object"),
    ("report-proxy-event-shape", write(f"{MODE}/proxy-processor-sink/faults.jsonl", '{"x": 1}\n'),
     "expected a proxy event"),
    ("report-result-verdict-int", edit_json(R, lambda o: o["modes"][0].__setitem__("verdict", 3)),
     "modes[0].verdict should be a string"),
    ("report-result-seed-string", edit_json(R, lambda o: o.__setitem__("seed", "x")), "'seed' should be an integer"),
    ("report-history-value-int", history_lines(lambda ops: [dict(ops[0], value=3)] + ops[1:]),
     "'value' should be an object"),
]


@pytest.mark.parametrize("damage,needle", [(d, n) for _, d, n in REPORT_INPUTS], ids=[i for i, _, _ in REPORT_INPUTS])
def test_report_of_damaged_files_is_one_line(run, damage, needle):
    from harness.report import ReportError, build_report
    damage(run)
    with pytest.raises(ReportError) as e:
        build_report(run)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_report_cli_of_a_damaged_run_is_exit_2_one_line(run):
    write(f"{MODE}/check.json", "[1]")(run)
    r = run_cli("report", str(run))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "check.json: expected a JSON object" in r.stderr and "Traceback" not in r.stderr


def drop_partition(p: int) -> Callable[[Path], None]:
    return remove(f"{MODE}/broker/orders-{p}")


def truncate_log_tail(d: Path) -> None:
    """Cut partition 0's segment at a frame boundary in its middle: a log that lost its tail
    (the processor's positions and the committed offsets now point past its end)."""
    from nodes.broker.log import read_values
    seg = sorted((d / MODE / "broker" / "orders-0").glob("*.log"))[0]
    n = sum(1 for _ in read_values(d / MODE / "broker", 0))
    data = seg.read_bytes()
    # frames are length-prefixed (4 bytes big-endian length, then the frame)
    pos, kept = 0, 0
    while kept < n // 2:
        pos += 4 + int.from_bytes(data[pos:pos + 4], "big")
        kept += 1
    seg.write_bytes(data[:pos])


LOG_DAMAGE: list[tuple[str, Callable[[Path], None], str]] = [
    ("broker-partition-dir-missing", drop_partition(2), "partition 2 of 4 has no segment"),
    ("consumer-offsets-garbage", write(f"{MODE}/broker/consumer-offsets.json", "{\"processor\": 5}"),
     "should map a topic to its offsets"),
]

LOG_TAIL_LOST: list[tuple[str, Callable[[Path], None], str]] = [
    ("broker-log-tail-lost", truncate_log_tail, "beyond the end of the broker log"),
    ("consumer-offsets-beyond-end", edit_json(f"{MODE}/broker/consumer-offsets.json",
                                              lambda o: o["processor"]["orders"].__setitem__("0", 10**6)),
     "beyond the end of the broker log"),
    ("final-status-positions-beyond-end", edit_json(F, lambda o: o["durable_positions"].__setitem__("1", 10**6)),
     "durable_positions[1] is 1000000, beyond the end"),
]


@pytest.mark.parametrize("damage,needle", [(d, n) for _, d, n in LOG_TAIL_LOST], ids=[i for i, _, _ in LOG_TAIL_LOST])
def test_offsets_beyond_the_log_end_are_a_finding_not_an_unreadable_input(run, damage, needle):
    """A broker that lost its log tail (--no-fsync crash, power loss) leaves offsets past its
    end: the audit goes on, the missing records count as lost, and the verdict says why."""
    damage(run)
    data = load_run(run / MODE)
    assert any(needle in line for line in data.log_truncated), data.log_truncated
    report = check(data)
    assert any(r.startswith("note: ") and needle in r for r in report.reasons), report.reasons


@pytest.mark.parametrize("damage,needle", [(d, n) for _, d, n in LOG_DAMAGE], ids=[i for i, _, _ in LOG_DAMAGE])
def test_incomplete_broker_log_is_an_input_error(run, damage, needle):
    damage(run)
    with pytest.raises(InputError) as e:
        load_run(run / MODE)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("key,value", [("events", "x"), ("rate", -1), ("batch_size", 0), ("partitions", 1.5),
                                       ("drain_timeout_s", 0), ("disabled", "dedupe")])
def test_replay_refuses_a_result_config_of_the_wrong_shape(run, key, value):
    edit_json(R, lambda o: o["config"].__setitem__(key, value))(run)
    with pytest.raises(InputError) as e:
        result_file(run / R)
    assert f"config.{key} should be" in str(e.value), str(e.value)


def test_audit_of_an_interrupted_run_judges_only_the_orders_sent(run):
    """An `up` stopped with Ctrl-C: the producer reached 200 of 400 orders. The 200 it never
    sent are not lost (it used to say "broken", exit 1, for them)."""
    from harness.cli_campaign import audit_dir
    edit_json(f"{MODE}/cluster.json", lambda o: o["config"].__setitem__("events", 400))(run)
    row = audit_dir(run / MODE)
    assert row["lost"] == 0 and row["verdict"] == "held", row
    assert any(n.startswith("incomplete: the producer sent 200 of 400 orders") for n in row["notes"]), row["notes"]
