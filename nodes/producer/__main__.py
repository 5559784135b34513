"""``python -m nodes.producer``: the producer node (click CLI + runtime shell).

    python -m nodes.producer --listen 127.0.0.1:0 --data-dir DIR --mode exactly-once \\
        --broker 127.0.0.1:7001 [--seed 1 --count 10000 --accounts 16 | --workload FILE.jsonl] \\
        [--rate 0] [--batch-size 100] [--ack-timeout-ms 1000] [--retry-backoff-ms 50] [--no-retry]

Exit codes: 0 after SIGTERM; 1 when fenced by the broker (a newer producer
owns the producer id) or on another fatal error; 2 on a bad flag, a bad
workload file (one line: ``FILE:LINE: ...``) or a data dir whose persisted
state belongs to another workload. The node keeps serving Status after the
workload is done (``done: true``) until SIGTERM.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from nodes.common.cli_types import FiniteFloat
from nodes.common.runtime import NodeSpec, common_options, run_node
from nodes.logclient import open_client
from nodes.producer.history import HistoryWriter
from nodes.producer.producer import Producer, ProducerConfig
from nodes.producer.state import StateStore
from nodes.producer.workload import GeneratedWorkload, identity, load_jsonl


def make_spec(log: logging.Logger, *, data_dir: Path, broker: str, config: ProducerConfig,
              seed: int, count: int, accounts: int, workload: Path | None) -> NodeSpec:
    """Load the workload and the persisted state (errors here exit 2), return the NodeSpec.

    Raises:
        WorkloadError, WorkloadMismatch (ValueError): exit code 2 with one line.
    """
    if workload is not None:
        orders = load_jsonl(workload)
        ident = identity(workload_file=workload)
    else:
        orders = GeneratedWorkload(seed, count, accounts)   # made batch by batch: flat memory
        ident = identity(seed=seed, count=count, accounts=accounts)
    store = StateStore(data_dir)
    state = store.load(ident, len(orders))
    node: dict = {}

    async def recover() -> None:
        state.incarnation += 1
        store.save(state)
        history = HistoryWriter(data_dir, state.incarnation)
        client = open_client(broker, mode=config.mode)   # the log, whichever system it is
        node.update(history=history, channel=client)
        node["producer"] = Producer(orders, state, store, history, client, config)
        log.info("recovered", extra={"position": state.position, "total": len(orders),
                                     "incarnation": state.incarnation, "broker": broker})

    async def main() -> None:
        await node["producer"].run()

    def status() -> dict:
        if "producer" in node:
            return node["producer"].status()
        return {"position": state.position, "total": len(orders), "done": False,
                "incarnation": state.incarnation, "recovering": True}

    async def close() -> None:
        if "channel" in node:
            await node["channel"].close()
        if "history" in node:
            node["history"].close()

    return NodeSpec(name="producer", register=lambda server: None, recover=recover,
                    status=status, main=main, close=close)


@click.command()
@common_options
@click.option("--broker", required=True,
              help="host:port of the broker (or of its proxy), or nats://host:port[,...] (nodes/logclient).")
@click.option("--seed", type=int, default=1, show_default=True, help="Workload seed.")
@click.option("--count", type=click.IntRange(min=0), default=10000, show_default=True,
              help="Number of orders in the generated workload.")
@click.option("--accounts", type=click.IntRange(min=1), default=16, show_default=True,
              help="Number of accounts in the generated workload.")
@click.option("--workload", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSONL workload file; replaces --seed/--count/--accounts.")
@click.option("--rate", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help="Events per second; 0 = as fast as possible.")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True,
              help="Events per batch (split by partition into one Produce each).")
@click.option("--ack-timeout-ms", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Deadline of each Produce; a miss is recorded as info and retried.")
@click.option("--retry-backoff-ms", type=click.IntRange(min=0), default=50, show_default=True,
              help="Pause before re-sending a failed or timed-out batch.")
@click.option("--max-in-flight", type=click.IntRange(min=1), default=64, show_default=True,
              help="at-most-once: bound on concurrent fire-and-forget sends (back-pressure).")
@click.option("--no-retry", is_flag=True, default=False,
              help="Ablation: a timed-out or failed batch is given up instead of retried.")
@click.option("--sequential-sends", is_flag=True, default=False,
              help="at-least-once/exactly-once: send a batch's partitions one after another, not "
                   "concurrently, so that a broker crash at a failpoint's Nth hit catches one send "
                   "in flight in every run (exact replay).")
def cli(listen, data_dir, mode, log_level, broker, seed, count, accounts, workload, rate,
        batch_size, ack_timeout_ms, retry_backoff_ms, max_in_flight, no_retry, sequential_sends) -> None:
    """The producer: emits the workload's orders into the broker, per the delivery mode."""
    config = ProducerConfig(mode=mode, rate=rate, batch_size=batch_size,
                            ack_timeout_ms=ack_timeout_ms, retry_backoff_ms=retry_backoff_ms,
                            no_retry=no_retry, max_in_flight=max_in_flight, sequential_sends=sequential_sends)
    run_node(lambda log: make_spec(log, data_dir=data_dir, broker=broker, config=config, seed=seed,
                                   count=count, accounts=accounts, workload=workload),
             name="producer", listen=listen, data_dir=data_dir, mode=mode, log_level=log_level, gc_tuned=True)


if __name__ == "__main__":
    cli()
