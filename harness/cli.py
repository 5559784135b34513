"""``testbed``: the command line of the delivery-guarantee testbed.

Exit codes (Jepsen's convention): 0 every promise held, 1 a promise was
broken (or a replay did not match), 2 usage or environment error.
"""

from __future__ import annotations

import os

import click
from rich.markup import escape

from harness.cli_common import EXIT_USAGE, err_console, fail
from harness.cli_report import report
from harness.cli_up import up


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """A testbed that shows at-most-once, at-least-once and exactly-once delivery
    under real crashes and network faults.

    \b
    Quick start:
      ./run.sh                 run the default fault campaign over every mode
      ./run.sh up              start a local cluster and stream orders through it
      ./run.sh fault add drop-response --link producer-broker --probability 0.3
    """


cli.add_command(up)
cli.add_command(report)
from harness.cli_scenario import failpoints, scenario, sweep  # noqa: E402  (issue 5)
for _cmd in (failpoints, scenario, sweep):
    cli.add_command(_cmd)

try:  # the proxy's fault commands (issue 3)
    from harness.cli_fault import fault
    cli.add_command(fault)
except ImportError:  # pragma: no cover - only while the proxy is not there
    pass

for _mod, _name in (("harness.cli_campaign", "campaign"), ("harness.cli_campaign", "audit"),
                    ("harness.cli_campaign", "replay"), ("harness.cli_bench", "bench"),
                    ("harness.cli_shrink", "shrink"), ("harness.cli_shrink", "explore"),
                    ("harness.cli_check_node", "check_node_cmd")):
    try:
        cli.add_command(getattr(__import__(_mod, fromlist=[_name]), _name))
    except (ImportError, AttributeError):
        pass


CWD_ENV = "TESTBED_CWD"
"""The directory the user ran ./run.sh from (run.sh cds to the checkout and sets this)."""


def enter_callers_cwd() -> None:
    """Resolve every relative path against the caller's directory, in one place: run.sh
    cds to the checkout, so go back to ``$TESTBED_CWD`` (child processes are started
    with an explicit cwd, and the runs dir is absolute, so nothing else changes)."""
    cwd = os.environ.pop(CWD_ENV, "")
    if cwd:
        try:
            os.chdir(cwd)
        except OSError as e:
            fail(f"cannot enter the directory ./run.sh was started from ({cwd}): {e.strerror or e}")


def main() -> None:
    """Run the CLI; every usage error is ONE line on stderr and exit 2 (no usage dump)."""
    enter_callers_cwd()
    try:
        rv = cli.main(standalone_mode=False, prog_name="testbed")
    except click.exceptions.Abort:
        raise SystemExit(130)
    except click.ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError" and getattr(e, "ctx", None) is not None:
            click.echo(e.ctx.get_help())  # a bare group (`testbed`, `testbed fault`): its help
            raise SystemExit(0)
        where = f"{e.ctx.command_path}: " if getattr(e, "ctx", None) is not None else ""
        msg = " ".join(f"{where}{e.format_message()}".split())
        err_console.print(f"[bold red]error:[/] {escape(msg)}", soft_wrap=True)
        raise SystemExit(e.exit_code)
    except KeyboardInterrupt:
        raise SystemExit(130)
    raise SystemExit(rv if isinstance(rv, int) else 0)


__all__ = ["cli", "main", "EXIT_USAGE"]


if __name__ == "__main__":
    main()
