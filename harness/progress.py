"""The progress display of long commands (campaign, replay; scenario, sweep and
bench can reuse it): a rich live display on a terminal, plain lines on stderr
otherwise, nothing with ``--quiet``.

Usage::

    with progress_display(quiet, total=len(modes)) as progress:
        progress("at-least-once", "workload running, 8 faults scheduled")
        ...
        progress("at-least-once", "verdict held")   # a "verdict ..." message ends a unit

On a terminal the display shows a spinner, the current unit (a mode, a
scenario, a failpoint) and its step, a bar of the units done out of ``total``
and the elapsed time; each verdict is printed above it and stays on screen.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

VERDICT_STYLE = {"held": "green", "broken": "bold red", "not-exercised": "yellow"}

ProgressFn = Callable[[str, str], None]
"""progress(unit label, message)"""


@contextmanager
def progress_display(quiet: bool, total: int | None = None, console: Console | None = None,
                     unit: str = "modes") -> Iterator[ProgressFn]:
    """Yield a ``progress(label, msg)`` function for the duration of a long command.

    Args:
        quiet: no output at all (``--quiet``).
        total: how many units the command runs (the bar); None shows no bar.
        console: the rich console to draw on (default: stdout's); when it is not a
            terminal, each message is one plain ``[label] msg`` line on stderr.
        unit: what ``total`` counts, shown after the count.
    """
    if quiet:
        yield lambda label, msg: None
        return
    if console is None:
        from harness.cli_common import console as default_console
        console = default_console
    if not console.is_terminal:
        yield lambda label, msg: print(f"[{label}] {msg}", file=sys.stderr, flush=True)
        return
    columns = [SpinnerColumn(), TextColumn("[bold]{task.fields[label]}[/]: {task.description}")]
    if total:
        columns += [BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn(unit)]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=total or None, label="")

        def show(label: str, msg: str) -> None:
            bar.update(task, description=msg, label=label)
            if msg.startswith("verdict"):
                verdict = msg.split(" ", 1)[1] if " " in msg else ""
                style = VERDICT_STYLE.get(verdict, "")
                bar.console.print(f"  {label}: [{style}]{msg}[/]" if style else f"  {label}: {msg}")
                bar.advance(task)
        yield show
