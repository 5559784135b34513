"""``--processor-cmd`` / ``--sink-cmd``: run a user's node in place of a built-in one.

Shared by ``campaign``, ``up``, ``scenario run``, ``sweep`` and ``check-node``
(harness/external.py starts the process; docs/contract.md is what it must do).
"""

from __future__ import annotations

from typing import Callable

import click

from harness.ablations import ABLATIONS
from harness.cli_common import fail
from harness.external import ExternalCommandError, check_commands

PROCESSOR_HELP = ("Run COMMAND (split like a shell, no shell) in place of the built-in processor; it gets "
                  "--listen, --data-dir, --mode, --broker, --sink, --group [--sink-strategy] as flags and "
                  "TESTBED_* variables (docs/contract.md).")
SINK_HELP = ("Run COMMAND in place of the built-in sink; it gets --listen, --data-dir, --mode "
             "[--sink-strategy] as flags and TESTBED_* variables (docs/contract.md).")


def external_options(f: Callable) -> Callable:
    """Add ``--processor-cmd COMMAND`` and ``--sink-cmd COMMAND`` (exposed as processor_cmd, sink_cmd)."""
    f = click.option("--sink-cmd", metavar="COMMAND", default=None, help=SINK_HELP)(f)
    f = click.option("--processor-cmd", metavar="COMMAND", default=None, help=PROCESSOR_HELP)(f)
    return f


def external_nodes(processor_cmd: str | None, sink_cmd: str | None,
                   disabled: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """{node: command} from the options; exits 2 with one line when a command cannot run
    or an ablation (``--disable``) names a mechanism of a node the user replaced."""
    external = {n: c for n, c in (("processor", processor_cmd), ("sink", sink_cmd)) if c is not None}
    try:
        check_commands(external)
    except ExternalCommandError as e:
        fail(str(e))
    for name in disabled:
        node = ABLATIONS[name].node
        if node in external:
            fail(f"--disable {name} switches off a mechanism of the built-in {node}; --{node}-cmd "
                 f"replaces that node (build the ablation into your own node instead)")
    return external
