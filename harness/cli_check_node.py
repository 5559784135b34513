"""``testbed check-node``: a short conformance run of your own processor or sink (harness/check_node.py).

Exit codes: 0 every step passed, 1 the node violated the contract (each
violation said in words), 2 it could not be run at all (one-line diagnosis),
or a usage error.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click

from harness.check_node import MODE_LABELS, CouldNotRun, check_node
from harness.cli_common import EXIT_BROKEN, EXIT_HELD, console, exit_if_interrupted, fail, run_async
from harness.cli_external import external_nodes, external_options
from harness.runs import RunDirError, new_run_dir


@click.command("check-node")
@external_options
@click.option("--mode", "modes", multiple=True, type=click.Choice(MODE_LABELS),
              help="Check only these modes (repeatable; default: all four). Pick the ones your node implements.")
@click.option("--batch", "per_batch", type=click.IntRange(1, 10_000), default=40, show_default=True,
              help="Orders per batch (four batches per mode).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1.0), default=15.0, show_default=True,
              help="Seconds allowed for the node to become SERVING, and for each batch to drain.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default ./runs).")
@click.option("--quiet", "-q", is_flag=True)
def check_node_cmd(processor_cmd, sink_cmd, modes, per_batch, timeout_s, out, quiet) -> None:
    """Start your node (--processor-cmd or --sink-cmd) in a small cluster and check it keeps the
    contract (docs/contract.md): SERVING on the health service, one batch per mode applied
    exactly once, a graceful restart (SIGTERM -> exit 0, resumes where it was), a kill -9
    (processor: while its sink write hangs), a lost ACK on each of its links.

    Exit 0: every step passed; 1: the node violated something (said in words);
    2: it could not be run (exits at once, never SERVING, not a gRPC server).
    """
    external = external_nodes(processor_cmd, sink_cmd)
    if len(external) != 1:
        fail("give exactly one of --processor-cmd COMMAND or --sink-cmd COMMAND")
    (node, command), = external.items()
    labels = list(modes) or list(MODE_LABELS)
    try:
        run_dir = new_run_dir(out, label=f"check-{node}")
    except RunDirError as e:
        fail(str(e))
    holder: dict = {}

    def progress(label: str, msg: str) -> None:
        if not quiet:
            console.print(f"[dim]{label}: {msg}[/]")

    async def main() -> int:
        try:
            holder["r"] = await check_node(node, command, labels, run_dir, per_batch=per_batch,
                                           timeout_s=timeout_s, progress=progress)
        except CouldNotRun as e:
            fail(f"the {node} could not be run: {e} (run data in {run_dir})")
        return 0

    exit_if_interrupted(run_async(main), run_dir)
    results = holder["r"]
    (run_dir / "check-node.json").write_text(json.dumps(
        {"node": node, "command": command, "modes": {k: [asdict(f) for f in v] for k, v in results.items()}},
        indent=1) + "\n")
    bad = 0
    console.print(f"[bold]check-node[/]: external {node} {command!r}")
    for label, findings in results.items():
        for f in findings:
            mark = "[green]ok  [/]" if f.ok else "[bold red]FAIL[/]"
            bad += not f.ok and f.step != "..."
            console.print(f"  {mark} {label:<27} {f.step:<17} {f.text}", soft_wrap=True)
    console.print(f"details: {run_dir}/check-node.json")
    if bad:
        console.print(f"[bold red]the {node} violated the contract[/] ({bad} step(s) failed)")
        sys.exit(EXIT_BROKEN)
    console.print(f"[bold green]every step passed[/] in {', '.join(labels)}")
    sys.exit(EXIT_HELD)
