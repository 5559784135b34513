"""``python -m nodes.processor``: the processor node process (a thin shell over Processor).

    python -m nodes.processor --listen 127.0.0.1:0 --data-dir DIR --mode exactly-once \\
        --broker 127.0.0.1:7001 --sink 127.0.0.1:7002 --sink-strategy transactional

Serves only the NodeControl.Status RPC (and health); its work is the main
task: consume topic ``orders`` from the broker and write to the sink. Status
JSON fields:

- ``positions``: {"<partition>": next offset consumed}
- ``durable_positions``: {"<partition>": offset whose effects are durable in the
  sink AND recorded (committed offset in at-most/at-least-once; the last completed
  checkpoint's offsets in exactly-once)}. Drained = equal to the broker's high watermarks.
- ``high_watermarks``: as last seen in a Fetch / ListOffsets
- ``state``: {account: cents}; ``records``: orders processed this incarnation;
  ``bad_records``: poison records (undecodable, invalid, overflowing the state);
  ``dead_lettered``: records stored in the sink's dead-letter table (nodes/processor/poison.py);
  ``dead_letter_pending``: not yet sent; ``sink_refused``: orders the sink refused
  (INVALID_ARGUMENT), isolated and dead-lettered
- ``checkpoints``: completed this incarnation; ``last_checkpoint_id``: id or null;
  ``pending_transaction``: pre-committed, not yet committed txn id or null
- ``sink_writes``, ``sink_retries``, ``sink_errors``, ``sink_dropped``, ``sink_in_flight``,
  ``fetch_errors``, ``commits_kept`` (partitions of offset commits the broker answered
  as below its committed offset, kept), ``incarnation``, ``phase`` (recovered/starting/running/failed/stopped)
- ``restore_behind``: exactly-once/idempotent restarted from a checkpoint older than the
  group's committed offsets: {"<partition>": [restored offset, committed offset]}
  (nodes/processor/restore_check.py)
- ``group``: with ``--member``: {member_id, generation, assignment, joins, fenced, assignments:
  [{generation, partitions, time}]} (nodes/processor/membership.py); null otherwise

Exit codes: 0 after SIGTERM, 1 when processing fails (a pending transaction the
sink no longer knows, a permanent error from the broker or the sink, e.g.
OUT_OF_RANGE on a commit beyond the log end), 2 for a bad flag, or a checkpoint it
refuses to start from (corrupt or empty ``checkpoint.json``; exactly-once/transactional
with a missing or older checkpoint than the group's committed offsets): one line
naming the file; 3 a storage error (nodes/common/storage_fault.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from nodes.common.channels import insecure_channel
from nodes.common.modes import SINK_STRATEGIES, SINK_IDEMPOTENT
from nodes.logclient import open_client
from nodes.common.runtime import NodeSpec, RefuseToStart, common_options, run_node
from nodes.processor.checkpoint import CheckpointCorruptError
from nodes.processor.processor import TWOPC_ORDERS, TWOPC_SAFE, Processor, ProcessorConfig
from nodes.processor.restore_check import check_restored


def make_spec(log: logging.Logger, data_dir: Path, broker: str, sink: str,
              config: ProcessorConfig) -> NodeSpec:
    config.validate()
    holder: dict = {}

    async def recover() -> None:
        holder["broker"] = open_client(broker, mode=config.mode)
        holder["sink"] = insecure_channel(sink)
        proc = Processor(config, data_dir, holder["broker"], holder["sink"], log)
        try:
            proc.recover_local()
        except CheckpointCorruptError as e:  # an empty or garbled checkpoint.json: exit 2
            raise RefuseToStart(str(e)) from None
        holder["proc"] = proc
        # exactly-once: a lost or rolled-back checkpoint is refused or replayed consistently
        if proc.member is None:  # a group member restores per partition (group_loop.py)
            proc.restore_behind = await check_restored(proc)

    async def main() -> None:
        await holder["proc"].run()

    async def close() -> None:
        proc = holder.get("proc")
        if proc is not None and proc.member is not None:
            await proc.member.leave()
        for key in ("broker", "sink"):
            if key in holder:
                await holder[key].close()

    def status() -> dict:
        proc = holder.get("proc")
        return proc.status() if proc is not None else {"phase": "recovering"}

    return NodeSpec(name="processor", register=lambda server: None, recover=recover,
                    status=status, main=main, close=close)


@click.command()
@common_options
@click.option("--broker", required=True,
              help="host:port of the broker (or its proxy), or nats://host:port[,...] (nodes/logclient).")
@click.option("--sink", required=True, help="host:port of the sink (or its proxy).")
@click.option("--group", default="processor", show_default=True, help="Consumer group; prefix of txn ids.")
@click.option("--sink-strategy", type=click.Choice(SINK_STRATEGIES), default=SINK_IDEMPOTENT,
              show_default=True, help="exactly-once only: Upsert or two-phase commit.")
@click.option("--checkpoint-records", type=int, default=1000, show_default=True,
              help="exactly-once: checkpoint after this many records.")
@click.option("--checkpoint-ms", type=int, default=500, show_default=True,
              help="exactly-once: checkpoint at least this often (ms) when anything changed.")
@click.option("--sink-inflight", type=int, default=4, show_default=True,
              help="idempotent strategy: concurrent Upsert RPCs.")
@click.option("--sink-batch", type=int, default=500, show_default=True, help="Max orders per write RPC.")
@click.option("--sink-timeout-ms", type=int, default=1000, show_default=True, help="Deadline of a sink RPC.")
@click.option("--rpc-timeout-ms", type=int, default=2000, show_default=True, help="Deadline of a broker RPC.")
@click.option("--retry-backoff-ms", type=int, default=50, show_default=True,
              help="Base of the exponential retry backoff (capped at 1 s).")
@click.option("--fetch-max-records", type=int, default=500, show_default=True, help="Per partition per Fetch.")
@click.option("--fetch-group", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="at-most-once/at-least-once: process K records of one partition per step, partitions "
                   "in turn (record counts, not timing, decide what a step covers); 0 = one Fetch per step.")
@click.option("--fetch-max-wait-ms", type=int, default=500, show_default=True, help="Fetch long-poll wait.")
@click.option("--commit-before-sink", is_flag=True,
              help="Ablation (at-least-once): commit offsets before the sink ACK -> loss on crash.")
@click.option("--no-sink-retry", is_flag=True, help="Ablation: a failed Apply/Upsert is dropped.")
@click.option("--no-checkpoint", is_flag=True,
              help="Ablation (exactly-once): no checkpoints; offsets committed after each sink ACK, "
                   "state not persisted; transactional: each batch committed right away.")
@click.option("--twopc-order", type=click.Choice(TWOPC_ORDERS), default=TWOPC_SAFE, show_default=True,
              help="Ablation (transactional): commit-before-checkpoint -> duplicates on a crash; "
                   "checkpoint-before-precommit -> loss on a crash.")
@click.option("--no-drain-before-checkpoint", is_flag=True,
              help="Ablation (idempotent): checkpoint while Upserts are in flight -> loss on a crash.")
@click.option("--member", default="", metavar="CLIENT_ID",
              help="Join consumer group --group as a member (e.g. processor-2) and process only the "
                   "partitions the broker's group coordinator assigns; default: the standalone "
                   "consumer of every partition.")
@click.option("--session-timeout-ms", type=click.IntRange(100, 300_000), default=2000, show_default=True,
              help="With --member: the coordinator removes this member when silent this long.")
def main(listen: str, data_dir: Path, mode: str, log_level: str, broker: str, sink: str,
         **knobs) -> None:
    """The processor node: a Flink-like stateful engine between the broker and the sink."""
    config = ProcessorConfig(mode=mode, **knobs)
    run_node(lambda log: make_spec(log, data_dir, broker, sink, config), name="processor",
             listen=listen, data_dir=data_dir, mode=mode, log_level=log_level, gc_tuned=True)


if __name__ == "__main__":
    main()
