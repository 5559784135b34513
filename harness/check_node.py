"""``testbed check-node``: a short conformance run of an external node, before a long campaign.

For each selected mode, a fresh cluster with the user's node in place of the
built-in processor or sink (harness.external) and four small batches, each
produced straight to the broker by this check (a plain, non-idempotent
producer), each followed by a look at the sink through its Snapshot RPC:

1. ``start``: SERVING on the standard health service; NodeControl probed (optional).
2. ``batch 1``: no fault: every order applied exactly once, balances exact.
3. ``graceful restart``: SIGTERM -> exit 0 within 5 s, start again -> SERVING;
   ``batch 2``: exactly once again, and nothing of batch 1 applied a second time
   (a processor resumes from the group's committed offsets; a sink keeps what it
   acknowledged).
4. ``kill -9``: processor: the processor->sink link black-holes every call, batch 3
   is produced, the processor is killed while its write hangs there, the link
   heals, it restarts; sink: batch 3 is drained, the sink is killed -9 and
   restarted. Then the mode's promise must hold (at-least-once: nothing lost,
   and so on), and a sink must still hold every order it acknowledged.
5. ``lost ACKs``: a drop-response armed on each of the node's links (count 1),
   batch 4; the promise must hold and each fault must have fired.

A step that fails ends that mode's run (later steps would only repeat it).
Findings are plain sentences; :class:`CouldNotRun` is the one-line diagnosis
of a node that cannot be run at all (exits at once, never SERVING, answers
something that is not gRPC), the CLI's exit code 2.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from harness.check_node_judge import promise_violation, tally
from harness.checker.external import read_snapshot_rpc
from harness.cluster import Cluster, ClusterConfig
from harness.process import NodeStartError
from harness.proxy_client import ProxyControlClient
from nodes.common.channels import insecure_channel
from nodes.common.modes import AT_MOST_ONCE, EXACTLY_ONCE, TOPIC
from nodes.common.partitioning import partition_for
from nodes.pb import broker_pb2, broker_pb2_grpc
from nodes.producer.workload import generate

MODE_LABELS = ("at-most-once", "at-least-once", "exactly-once/idempotent", "exactly-once/transactional")
BATCHES = 4
LINKS_OF = {"processor": ("processor-broker", "processor-sink"), "sink": ("processor-sink",)}
SETTLE_S = 3.0
"""How long orders may still arrive at the sink after the offsets covering them were committed."""
EO_METHODS = {"idempotent": "Upsert", "transactional": "Commit"}


class CouldNotRun(Exception):
    """The node could not be run at all; the message is a one-line diagnosis."""


class StepFailed(Exception):
    """A step found a violation; the mode's run ends there."""


@dataclass
class Finding:
    step: str
    ok: bool
    text: str


@dataclass
class ModeCheck:
    """One mode's conformance run; ``findings`` in step order."""

    node: str
    command: str
    label: str
    run_dir: Path
    per_batch: int = 40
    timeout_s: float = 15.0
    seed: int = 1
    findings: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        mode, _, sink = self.label.partition("/")
        self.mode, self.sink_strategy = mode, sink or None
        config = ClusterConfig(mode=mode, sink_strategy=self.sink_strategy, seed=self.seed,
                               events=self.per_batch * BATCHES, external={self.node: self.command},
                               external_start_s=self.timeout_s)
        self.cluster = Cluster(config, self.run_dir / self.label.replace("/", "-"))
        self.orders = generate(self.seed, self.per_batch * BATCHES)
        self.produced: list = []

    # ----- the run --------------------------------------------------------------------

    async def run(self) -> list[Finding]:
        """Raises: CouldNotRun: the node never came up (the cluster is stopped)."""
        try:
            await self.cluster.start(start_producer=False)
        except NodeStartError as e:
            raise CouldNotRun(str(e)) from None
        p = self.cluster.nodes[self.node]
        try:
            self.ok("start", f"SERVING on {p.address} (pid {p.pid}); NodeControl "
                             + ("served" if p.control else "not served (optional: process and link faults only)"))
            await self.batch(1, "no fault")
            await self.graceful_restart()
            await self.batch(2, "after a graceful restart")
            await self.kill_step()
            await self.lost_acks()
        except StepFailed:
            self.findings.append(Finding("...", False, "remaining steps skipped"))
        finally:
            await self.cluster.stop()
        return self.findings

    def ok(self, step: str, text: str) -> None:
        self.findings.append(Finding(step, True, text))

    def violation(self, step: str, text: str) -> None:
        self.findings.append(Finding(step, False, text))
        raise StepFailed(text)

    async def batch(self, n: int, when: str) -> None:
        step = f"batch {n}"
        await self.produce(n)
        await self.wait_drained(step, need_all=True)
        lost, dup, other = await self.judge()
        earlier = {o.order_id for o in self.produced[:(n - 1) * self.per_batch]}
        forgotten = [i for i in lost if i in earlier]
        if forgotten:
            self.violation(step, f"{when}: {len(forgotten)} orders applied before the restart are gone "
                                 f"(first: {forgotten[0]}): the {self.node} must keep what it acknowledged "
                                 "(durable in its --data-dir)" if self.node == "sink" else
                                 f"{when}: {len(forgotten)} orders of earlier batches are gone from the sink "
                                 f"(first: {forgotten[0]})")
        if lost:
            self.violation(step, f"{when}: {len(lost)} of {len(self.produced)} orders never reached the sink "
                                 f"(first: {lost[0]}){self.hint_lost(n)}")
        if dup:
            what = ("applied again after the restart: does it resume from the group's committed offsets "
                    "(FetchCommittedOffset)?" if n == 2 and self.node == "processor" else "applied more than once")
            self.violation(step, f"{when}: {len(dup)} orders {what} (first: {dup[0]})")
        if other:
            self.violation(step, f"{when}: {other}")
        await self.check_method(step)
        self.ok(step, f"{when}: {len(self.produced)} orders, each applied exactly once, balances exact")

    async def graceful_restart(self) -> None:
        step = "graceful restart"
        p = self.cluster.nodes[self.node]
        t0 = time.monotonic()
        code = await p.stop(timeout_s=5, cause="check-node: SIGTERM")
        ms = (time.monotonic() - t0) * 1000
        if code == -9:
            self.violation(step, "did not exit within 5 s of SIGTERM (killed): SIGTERM must stop it gracefully")
        if code != 0:
            self.violation(step, f"exited with code {code} on SIGTERM: a graceful stop must exit 0; "
                                 f"stderr: {p.stderr_tail(2)}")
        await self.restart(step)
        self.ok(step, f"SIGTERM: exit 0 after {ms:.0f} ms; SERVING again on {p.address}")

    async def restart(self, step: str) -> None:
        try:
            await self.cluster.nodes[self.node].start(timeout_s=self.timeout_s)
        except NodeStartError as e:
            self.violation(step, f"did not come back after the restart: {e}")

    async def kill_step(self) -> None:
        step = "kill -9"
        p = self.cluster.nodes[self.node]
        if self.node == "processor":
            async with ProxyControlClient(self.cluster.proxies["processor-sink"].address) as px:
                fid = await px.add("partition")
                await self.produce(3)
                if not await self.wait_fired(px, fid):
                    self.violation(step, f"batch 3: the processor made no call to the sink within "
                                         f"{self.timeout_s:g} s of the batch reaching the broker")
                p.kill("check-node: kill -9")
                await p.wait(5)
                await px.remove(fid)
            what = "killed -9 while its sink write hung in a black-holed link, then restarted"
            await self.restart(step)
        else:
            await self.produce(3)
            await self.wait_drained(step, need_all=True)
            p.kill("check-node: kill -9")
            await p.wait(5)
            what = "killed -9 after acknowledging batch 3, then restarted"
            await self.restart(step)
        await self.wait_drained(step, need_all=self.mode != AT_MOST_ONCE)
        self.judge_promise(step, what, *await self.judge())
        self.ok(step, f"{what}: the {self.mode} promise held")

    async def lost_acks(self) -> None:
        step = "lost ACKs"
        fids = {}
        for link in LINKS_OF[self.node]:
            async with ProxyControlClient(self.cluster.proxies[link].address) as px:
                fids[link] = await px.add("drop-response", count=1)
        await self.produce(4)
        await self.wait_drained(step, need_all=self.mode != AT_MOST_ONCE)
        for link, fid in fids.items():
            async with ProxyControlClient(self.cluster.proxies[link].address) as px:
                fired = {f["fault_id"]: f["fired"] for f in await px.list()}.get(fid, 0)
                await px.heal()
            if not fired:
                self.violation(step, f"the drop-response on {link} never fired: no call on that link during "
                                     "batch 4")
        self.judge_promise(step, "a lost ACK on " + " and ".join(fids), *await self.judge())
        self.ok(step, f"a lost ACK on {' and '.join(fids)}: the {self.mode} promise held")

    # ----- helpers --------------------------------------------------------------------

    async def produce(self, n: int) -> None:
        """Produce batch ``n`` straight to the broker (producer id -1: plain appends)."""
        batch = self.orders[(n - 1) * self.per_batch:n * self.per_batch]
        parts: dict[int, list] = defaultdict(list)
        for o in batch:
            parts[partition_for(o.account, self.cluster.config.partitions)].append(o)
        async with insecure_channel(self.cluster.nodes["broker"].address) as ch:
            stub = broker_pb2_grpc.BrokerStub(ch)
            for part, orders in sorted(parts.items()):
                await stub.Produce(broker_pb2.ProduceRequest(
                    topic=TOPIC, partition=part, producer_id=-1, records=[
                        broker_pb2.Record(key=o.account.encode(), value=o.SerializeToString())
                        for o in orders]), timeout=5.0)
        self.produced += batch

    async def wait_fired(self, px: ProxyControlClient, fid: str) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if {f["fault_id"]: f["fired"] for f in await px.list()}.get(fid, 0):
                return True
            await asyncio.sleep(0.05)
        return False

    async def progress(self) -> tuple[dict[int, int], dict[int, int]]:
        c = self.cluster
        prog = await (c.status("processor") if c.has_status("processor") else c.committed_progress())
        if "durable_positions" not in prog:   # a Status without it: the committed offsets
            prog = await c.committed_progress()
        return ({int(k): v for k, v in prog.get("durable_positions", {}).items()}, await c.high_watermarks())

    async def wait_drained(self, step: str, need_all: bool) -> None:
        """Until the processor's durable positions reach the log end (and, with ``need_all``,
        the sink holds every produced order), polling every 100 ms up to the timeout."""
        deadline = time.monotonic() + self.timeout_s
        why = "no answer"
        caught_up_at = None
        while True:
            try:
                durable, hw = await self.progress()
                behind = {p: (durable.get(p, 0), o) for p, o in hw.items() if durable.get(p, 0) < o}
                missing = 0
                if need_all and not behind:
                    counts, _ = await read_snapshot_rpc(self.cluster.nodes["sink"].address, 5.0)
                    missing = sum(1 for o in self.produced if counts.get(o.order_id, 0) == 0)
                    # Offsets committed to the log end but orders missing: writes still in
                    # flight may land for a while (SETTLE_S); after that they are lost, for the
                    # judge to say so, rather than a timeout.
                    caught_up_at = caught_up_at or time.monotonic()
                    if missing and time.monotonic() - caught_up_at > SETTLE_S:
                        return
                else:
                    caught_up_at = None
                if not behind and not missing:
                    return
                why = (f"committed offsets behind the log end {behind} (partition: (committed, end))"
                       if behind else f"{missing} of {len(self.produced)} orders not at the sink")
            except grpc.aio.AioRpcError as e:
                why = f"{e.code().name}: {e.details()}"
            if time.monotonic() > deadline:
                p = self.cluster.nodes[self.node]
                dead = "" if p.running else (f"; the {self.node} exited with code "
                                             f"{p.proc.returncode if p.proc else None}: {p.stderr_tail(2)}")
                self.violation(step, f"not drained within {self.timeout_s:g} s: {why}{dead}")
            await asyncio.sleep(0.1)

    async def judge(self) -> tuple[list[str], list[str], str]:
        """(lost ids, duplicated ids, other problem in words) of the orders produced so far."""
        try:
            counts, balances = await read_snapshot_rpc(self.cluster.nodes["sink"].address, 5.0)
        except grpc.aio.AioRpcError as e:
            self.violation("snapshot", f"Sink.Snapshot failed: {e.code().name}: {e.details()}")
        return tally(counts, balances, self.produced)

    def judge_promise(self, step: str, what: str, lost: list[str], dup: list[str], other: str) -> None:
        text = promise_violation(self.mode, self.node, what, lost, dup, other)
        if text:
            self.violation(step, text)

    def hint_lost(self, n: int) -> str:
        if self.node == "sink":
            return ": the sink must apply every order it acknowledges"
        return (": does it Fetch every partition from the committed offsets and write every record to the "
                "sink, then commit the offsets?")

    async def check_method(self, step: str) -> None:
        """exactly-once: the processor must write with Upsert or PreCommit/Commit, never Apply."""
        if self.node != "processor" or self.mode != EXACTLY_ONCE:
            return
        async with ProxyControlClient(self.cluster.proxies["processor-sink"].address) as px:
            methods = {m.rsplit("/", 1)[-1]: s["calls"] for m, s in (await px.stats())["methods"].items()}
        want = EO_METHODS[self.sink_strategy or "idempotent"]
        if methods.get("Apply"):
            self.violation(step, f"exactly-once/{self.sink_strategy}: it wrote with Apply (non-idempotent); "
                                 f"this strategy writes with {'Upsert' if want == 'Upsert' else 'PreCommit then Commit'}")
        if not methods.get(want):
            self.violation(step, f"exactly-once/{self.sink_strategy}: it never called {want} "
                                 f"(calls seen: {methods or 'none'})")


async def check_node(node: str, command: str, labels: list[str], run_dir: Path, *, per_batch: int = 40,
                     timeout_s: float = 15.0, progress=lambda *_: None) -> dict[str, list[Finding]]:
    """Run :class:`ModeCheck` for each label in turn; {label: findings}.

    Raises:
        CouldNotRun: the node could not be run in the first mode (the diagnosis).
    """
    out: dict[str, list[Finding]] = {}
    for i, label in enumerate(labels):
        progress(label, "checking")
        try:
            out[label] = await ModeCheck(node, command, label, run_dir, per_batch, timeout_s).run()
        except CouldNotRun as e:
            if i == 0:
                raise
            out[label] = [Finding("start", False, f"did not start in {label} (it did in {labels[0]}): {e}")]
    return out
