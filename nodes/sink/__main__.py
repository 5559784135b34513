"""``python -m nodes.sink``: the sink node's command line (click + nodes.common.runtime).

The sink behaves the same in every ``--mode``: the processor picks the RPC
(Apply for at-most-once / at-least-once, Upsert or PreCommit/Commit for
exactly-once). The mode is reported in Status only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from nodes.common.runtime import NodeSpec, common_options, run_node
from nodes.pb import sink_pb2_grpc
from nodes.sink.service import SinkRunner, SinkServicer


@click.command()
@common_options
@click.option("--prepared-timeout-ms", type=click.IntRange(min=0), default=0, show_default=True,
              help="Abort a transaction prepared longer ago than this (ms); 0 = never "
                   "(scenario 5: a later Commit fails with FAILED_PRECONDITION).")
@click.option("--no-txn-dedupe", is_flag=True, default=False,
              help="Ablation: Commit does not remember committed transaction ids, so a "
                   "repeated Commit re-applies the writes (scenario 6 shows duplicates).")
@click.option("--no-epoch-fencing", is_flag=True, default=False,
              help="Ablation (generation-fencing): accept pre-commits, commits and checkpoint saves "
                   "of consumer-group members from any epoch, so a zombie's late transaction is "
                   "applied (nodes/sink/partitions.py).")
@click.option("--sink-strategy", type=click.Choice(["idempotent", "transactional"]), default=None,
              expose_value=False, help="Accepted and ignored: the sink serves both strategies (the "
                                       "harness passes it to a node run by --sink-cmd, docs/contract.md).")
def main(listen: str, data_dir: Path, mode: str, log_level: str, prepared_timeout_ms: int,
         no_txn_dedupe: bool, no_epoch_fencing: bool) -> None:
    """Run the sink node."""

    def make_spec(log: logging.Logger) -> NodeSpec:
        runner = SinkRunner(data_dir, txn_dedupe=not no_txn_dedupe, epoch_fencing=not no_epoch_fencing,
                            prepared_timeout_ms=prepared_timeout_ms, log=log)
        return NodeSpec(
            name="sink",
            register=lambda server: sink_pb2_grpc.add_SinkServicer_to_server(SinkServicer(runner), server),
            recover=runner.open,
            status=runner.status,
            main=runner.expire_prepared if prepared_timeout_ms > 0 else None,
            close=runner.close,
            service_names=("testbed.v1.Sink",),
        )

    run_node(make_spec, name="sink", listen=listen, data_dir=data_dir, mode=mode, log_level=log_level,
             gc_tuned=True)


if __name__ == "__main__":
    main()
