"""What a run with an external node (harness/external.py) records and says.

- :func:`record_final_state`: after the drain, the processor's final status and an
  external sink's Snapshot, the inputs of the audit (harness/checker/external.py);
- :func:`describe`: ``external_nodes`` in result.json (which command ran in place of which node);
- :func:`external_notes`, :func:`unreachable_steps`: the notes under the result table.
"""

from __future__ import annotations

from pathlib import Path


def describe(external: dict[str, str]) -> dict[str, dict]:
    """result.json's ``external_nodes``: {node: {"command": ..., "replaces": "built-in <node>"}}."""
    return {n: {"command": c, "replaces": f"built-in {n} (nodes/{n}/)"} for n, c in sorted(external.items())}



async def record_final_state(cluster, mode_dir: Path) -> None:
    """After the drain, while every node still runs: write ``processor/final-status.json``
    (the processor's Status, or for an external processor without NodeControl the group's
    committed offsets, which carry no operator state) and, for an external sink, its
    ``sink/snapshot.json`` through the Snapshot RPC (harness/checker/external.py).

    Raises:
        grpc.aio.AioRpcError: the processor's Status or the sink's Snapshot failed.
    """
    import json
    from harness.checker.external import capture_snapshot
    if cluster.config.processors > 1:   # a consumer group: the members' merged Status
        from harness.group_cluster import group_status
        final = await group_status(cluster)
    elif cluster.has_status("processor"):
        final = await cluster.status("processor")
    else:
        final = dict(await cluster.committed_progress(), external=True)
    (mode_dir / "processor").mkdir(parents=True, exist_ok=True)
    (mode_dir / "processor" / "final-status.json").write_text(json.dumps(final, indent=1, allow_nan=False))
    if "sink" in cluster.config.external:
        await capture_snapshot(cluster.nodes["sink"].address, mode_dir / "sink")


def external_notes(config) -> list[str]:
    """What a run with external nodes should say under its table: which command ran in
    place of which node, and what of the built-in node's configuration it did not get."""
    notes = []
    for node, cmd in sorted(config.external.items()):
        notes.append(f"external {node}: {cmd!r} ran in place of the built-in {node}")
        dropped = list(config.extra_args.get(node, []))
        from harness.ablations import flags_for
        dropped += flags_for(node, config.disabled)
        if dropped:
            notes.append(f"external {node}: not given the built-in {node}'s flags {' '.join(dropped)}")
    return notes


def unreachable_steps(mode_dir: Path) -> list[str]:
    """Schedule steps that could not reach an external node (a failpoint step aimed at a
    node without NodeControl), one note each, from the nemesis history."""
    from harness.history import read_history
    return [f"step {op['value'].get('step')} ({op['f']} {op['value'].get('name') or ''}) not applied: "
            + op["error"].split(": ", 1)[-1]
            for op in read_history(mode_dir / "nemesis.jsonl")
            if op.get("type") == "info" and str(op.get("error", "")).startswith("NoNodeControl:")]
