"""``testbed``: the command line of the delivery-guarantee testbed.

Exit codes (Jepsen's convention): 0 every promise held, 1 a promise was
broken (or a replay did not match), 2 usage or environment error.
"""

from __future__ import annotations

import click

from harness.cli_common import EXIT_USAGE
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
                    ("harness.cli_check_node", "check_node_cmd")):
    try:
        cli.add_command(getattr(__import__(_mod, fromlist=[_name]), _name))
    except (ImportError, AttributeError):
        pass


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        raise SystemExit(130)


__all__ = ["cli", "main", "EXIT_USAGE"]


if __name__ == "__main__":
    main()
