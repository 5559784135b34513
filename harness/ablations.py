"""Ablations: switch off one delivery mechanism to watch the anomaly it prevents.

Each entry maps a user-facing name (``--disable NAME``) to the node flag that
switches the mechanism off. They are the negative controls of the testbed: a
run with an ablation must be caught by the checker (issue: ablations caught).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ablation:
    name: str
    node: str            # "broker", "producer", "processor", "sink"
    flags: tuple[str, ...]
    prevents: str        # the anomaly the mechanism prevents, in one line
    also: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Further (node, flags) when one mechanism spans two nodes (generation-fencing)."""


ABLATIONS: dict[str, Ablation] = {a.name: a for a in (
    Ablation("broker-dedupe", "broker", ("--no-dedupe",),
             "a retried batch appended twice (duplicated) despite the idempotent producer"),
    Ablation("broker-fsync", "broker", ("--no-fsync",),
             "an ACKed record lost when the broker crashes before the flush (lost-acknowledged)"),
    Ablation("offset-commit-monotonic", "broker", ("--no-monotonic-commits",),
             "a late offset commit sets the committed offset back: a restarted consumer re-reads (duplicated)"),
    Ablation("producer-retry", "producer", ("--no-retry",),
             "a batch whose ACK never came is given up (lost)"),
    Ablation("commit-after-sink", "processor", ("--commit-before-sink",),
             "offsets committed before the sink ACK: a processor crash skips records (lost)"),
    Ablation("sink-retry", "processor", ("--no-sink-retry",),
             "a failed sink write is dropped (lost)"),
    Ablation("checkpointing", "processor", ("--no-checkpoint",),
             "operator state and sink transactions not tied to input offsets (duplicated or state lost)"),
    Ablation("drain-before-checkpoint", "processor", ("--no-drain-before-checkpoint",),
             "a checkpoint taken with sink writes in flight: a crash loses them (lost)"),
    Ablation("2pc-commit-after-checkpoint", "processor", ("--twopc-order", "commit-before-checkpoint"),
             "commit before the checkpoint is durable: a crash in between replays a committed batch (duplicated)"),
    Ablation("2pc-precommit-before-checkpoint", "processor", ("--twopc-order", "checkpoint-before-precommit"),
             "checkpoint persisted before pre-commit: a crash in between loses the batch (lost)"),
    Ablation("sink-txn-dedupe", "sink", ("--no-txn-dedupe",),
             "a repeated commit of one transaction id re-applies it (duplicated)"),
    Ablation("generation-fencing", "broker", ("--no-generation-fencing",),
             "a zombie consumer (stalled past its session timeout, its partitions moved) commits "
             "offsets or a transaction for partitions it no longer owns (duplicated)",
             also=(("sink", ("--no-epoch-fencing",)),)),
)}


def flags_for(node: str, disabled: list[str] | tuple[str, ...]) -> list[str]:
    """The extra command-line flags of ``node`` for the disabled mechanisms.

    Raises:
        KeyError: an unknown ablation name (the CLI validates names first).
    """
    out: list[str] = []
    for name in disabled:
        a = ABLATIONS[name]
        if a.node == node:
            out.extend(a.flags)
        for other, flags in a.also:
            if other == node:
                out.extend(flags)
    return out
