"""``python -m nodes.broker``: the Kafka-like broker node (see nodes/broker/__init__.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from nodes.broker.broker import Broker
from nodes.broker.log import fix_partition_count
from nodes.broker.partition_log import DEFAULT_SEGMENT_BYTES
from nodes.broker.service import BrokerServicer
from nodes.common.modes import DEFAULT_PARTITIONS
from nodes.broker.segment import SegmentCorruptError
from nodes.common.runtime import NodeSpec, RefuseToStart, common_options, run_node
from nodes.pb import broker_pb2_grpc


@click.command()
@common_options
@click.option("--partitions", type=click.IntRange(1, 1024), default=DEFAULT_PARTITIONS, show_default=True,
              help="Partitions of topic 'orders'; fixed at first start (a different value later exits 2).")
@click.option("--segment-bytes", type=click.IntRange(4096), default=DEFAULT_SEGMENT_BYTES, show_default=True,
              help="Roll a partition's active segment file once it holds this many bytes.")
@click.option("--checkpoint-interval-ms", type=click.IntRange(0), default=10_000, show_default=True,
              help="Persist the recovery point (segment indexes + producer-state snapshot) this often, "
                   "so a restart after kill -9 scans only the log written since; 0 = only on graceful stop.")
@click.option("--no-dedupe", is_flag=True,
              help="ABLATION: append idempotent-producer batches without the (producer id, partition, "
                   "sequence) dedupe check; retried batches become duplicate records.")
@click.option("--no-fsync", is_flag=True,
              help="ABLATION: acknowledge Produce at once and never fsync; records reach the file by a "
                   "delayed write() (--writeback-ms), like unflushed page cache, so a kill -9 loses "
                   "acknowledged records (scenario 2). Fetch still serves up to the appended end. Committed "
                   "offsets and producer epochs stay fsynced (the ablation is about the log).")
@click.option("--no-monotonic-commits", is_flag=True,
              help="ABLATION: an offset commit below the committed offset overwrites it (the last "
                   "commit wins), so a late or reordered CommitOffset sets a group back and a "
                   "restarted consumer re-reads what it processed (incident 9).")
@click.option("--no-generation-fencing", is_flag=True,
              help="ABLATION: accept offset commits from any member and generation of a consumer "
                   "group (no ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / NOT_OWNER): a zombie "
                   "consumer's late commit counts (incident 11).")
@click.option("--writeback-ms", type=click.IntRange(0, 600_000), default=1000, show_default=True,
              help="With --no-fsync: delay before buffered records are written to the segment file.")
def main(listen: str, data_dir: Path, mode: str, log_level: str, partitions: int, segment_bytes: int,
         checkpoint_interval_ms: int, no_dedupe: bool, no_fsync: bool, no_monotonic_commits: bool,
         writeback_ms: int, no_generation_fencing: bool) -> None:
    """Broker: a partitioned, CRC-framed, append-only log with an idempotent producer.

    Serves testbed.v1.Broker (InitProducer, Produce, Fetch, CommitOffset,
    FetchCommittedOffset, ListOffsets, JoinGroup, Heartbeat, LeaveGroup) and NodeControl.Status. Exit codes:
    0 graceful stop, 1 storage failure while running, 2 bad flags / unwritable data
    dir / partition count differing from the stored one / a log it refuses to serve
    (corruption in the middle of a segment, bytes failing the recovery point's CRC32,
    a segment shorter than its recovery point: one line naming the file).
    """

    def make_spec(log: logging.Logger) -> NodeSpec:
        fix_partition_count(data_dir, partitions)
        broker: Broker | None = None

        async def recover() -> None:
            nonlocal broker
            broker = Broker(data_dir, partitions, mode, segment_bytes=segment_bytes, dedupe=not no_dedupe,
                            fsync=not no_fsync, checkpoint_interval_s=checkpoint_interval_ms / 1000,
                            writeback_ms=writeback_ms, monotonic_commits=not no_monotonic_commits,
                            generation_fencing=not no_generation_fencing)
            servicer.broker = broker
            try:
                await asyncio.to_thread(broker.recover)
            except SegmentCorruptError as e:  # never SERVING with an unreadable partition
                raise RefuseToStart(str(e)) from None
            broker.start()

        async def close() -> None:
            if broker is not None:
                await broker.close()

        async def main_task() -> None:
            assert broker is not None
            await broker.wait_fatal()

        servicer = BrokerServicer(None)  # type: ignore[arg-type]  # broker set by recover()
        return NodeSpec(name="broker",
                        register=lambda server: broker_pb2_grpc.add_BrokerServicer_to_server(servicer, server),
                        recover=recover, close=close, main=main_task,
                        status=lambda: broker.status() if broker is not None else {"recovering": True},
                        service_names=("testbed.v1.Broker",))

    run_node(make_spec, name="broker", listen=listen, data_dir=data_dir, mode=mode, log_level=log_level,
             gc_tuned=True)


if __name__ == "__main__":
    main()
