"""Options and helpers shared by the testbed's commands."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable

import click
from rich.console import Console

from harness import interrupt
from harness.ablations import ABLATIONS
from nodes.common.modes import MODES, SINK_STRATEGIES

EXIT_HELD = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; use a wider page.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, highlight=False)


def fail(msg: str, code: int = EXIT_USAGE) -> None:
    """Print a one-line error and exit (2 = usage or environment)."""
    err_console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
    sys.exit(code)


def positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter("must be > 0")
    return value


MAX_EVENTS = 5_000_000
"""Upper bound of --events: the producer keeps its workload in memory (~300 bytes an order)."""


def events_range(ctx, param, value):
    if value is not None and not 0 < value <= MAX_EVENTS:
        raise click.BadParameter(f"must be between 1 and {MAX_EVENTS:,} (the producer keeps the "
                                 "workload in memory)")
    return value


def non_negative(ctx, param, value):
    if value is not None and value < 0:
        raise click.BadParameter("must be >= 0")
    return value


def parse_disabled(ctx, param, value) -> list[str]:
    names: list[str] = []
    for item in value or ():
        for name in filter(None, (s.strip() for s in item.split(","))):
            if name not in ABLATIONS:
                raise click.BadParameter(f"unknown ablation {name!r}; choose from: {', '.join(ABLATIONS)}")
            names.append(name)
    return names


ABLATION_HELP = "Switch a mechanism off (repeatable or comma-separated): " + ", ".join(ABLATIONS) + "."

mode_option = click.option("--mode", type=click.Choice(MODES), default="at-least-once", show_default=True,
                           help="Delivery guarantee mode.")
sink_option = click.option("--sink", "sink_strategy", type=click.Choice(SINK_STRATEGIES), default=None,
                           help="exactly-once sink strategy (default idempotent).")
disable_option = click.option("--disable", multiple=True, callback=parse_disabled, metavar="ABLATION",
                              help=ABLATION_HELP)


storage_option = click.option(
    "--storage", type=click.Choice(["direct", "lazy"]), default=None,
    help="direct: data dirs on the real file system; lazy: each node's data dir on a FUSE file system "
         "that drops unsynced writes on power loss (Jepsen's LazyFS; needs fuse3). "
         "[default: lazy if a step needs it, else direct]")


def broker_options(fn):
    """``--broker builtin|nats|mosquitto``, ``--nats-sync default|always``
    (harness/nats_cluster.py), ``--nats-url URL[,URL...]`` (harness/nats_external.py) and
    ``--mqtt-autosave`` / ``--mqtt-subscribe-qos`` (harness/mosquitto.py)."""
    fn = nats_url_option(fn)
    fn = click.option("--mqtt-subscribe-qos", type=click.Choice(["0", "1", "2"]), default=None,
                      help="--broker mosquitto: the processor subscribes at this QoS instead of the "
                           "mode's (e.g. 1 in exactly-once: redelivery after a processor crash, "
                           "duplicates left to the idempotent sink).")(fn)
    fn = click.option("--mqtt-autosave", default="default", show_default=True, metavar="default|always|SECONDS",
                      help="--broker mosquitto: when mosquitto writes its persistence file (default: "
                           "mosquitto's autosave_interval, 1800 s, and at shutdown; always: after every "
                           "change; SECONDS: autosave_interval). A kill -9 loses what was not saved.")(fn)
    fn = click.option("--nats-sync", type=click.Choice(["default", "always"]), default="default",
                      show_default=True,
                      help="--broker nats: JetStream sync_interval (default: fsync every 2 min; "
                           "always: fsync each write).")(fn)
    return click.option("--broker", "broker", type=click.Choice(BROKERS), default="builtin",
                        show_default=True,
                        help="The log under test: the testbed's broker, a 3-server NATS JetStream "
                             "cluster, or one mosquitto MQTT broker, on loopback (docs/brokers.md).")(fn)


BROKERS = ["builtin", "nats", "mosquitto"]


def broker_flag_conflict(broker: str, nats_url: str | None, nats_sync: str, mqtt_autosave: str,
                         mqtt_subscribe_qos: str | None) -> str | None:
    """Why the user's broker flags contradict each other (one line), or None: a flag of
    one broker given with another was silently ignored (campaign, up)."""
    if nats_url and broker not in ("builtin", "nats"):
        return f"--nats-url audits a NATS cluster: it cannot go with --broker {broker}"
    if nats_sync != "default" and nats_url:
        return "--nats-sync sets the testbed's own NATS servers; with --nats-url your servers' config decides"
    if nats_sync != "default" and broker != "nats":
        return f"--nats-sync applies to --broker nats only (not {broker})"
    if broker != "mosquitto" and (mqtt_autosave != "default" or mqtt_subscribe_qos is not None):
        flag = "--mqtt-autosave" if mqtt_autosave != "default" else "--mqtt-subscribe-qos"
        return f"{flag} applies to --broker mosquitto only (not {'nats' if nats_url else broker})"
    return None


def check_broker(broker: str, mqtt_autosave: str = "default") -> str:
    """Exit 2 with one line if ``broker`` cannot run here (mosquitto missing) or
    ``--mqtt-autosave`` is malformed; returns the autosave value normalised."""
    if broker != "mosquitto":
        return mqtt_autosave
    from harness.mosquitto import check_autosave, mosquitto_binary
    try:
        mosquitto_binary()
        return check_autosave(str(mqtt_autosave))
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))


def _nonempty_url(ctx, param, value: str | None) -> str | None:
    """An empty ``--nats-url`` was taken as absent: a builtin run the user did not ask for."""
    if value is not None and not value.strip(" ,"):
        raise click.BadParameter("empty; expected nats://HOST:PORT[,nats://HOST:PORT...]")
    return value


nats_url_option = click.option(
    "--nats-url", default=None, metavar="URL[,URL...]", callback=_nonempty_url,
    help="Audit a NATS JetStream cluster you run elsewhere (implies --broker nats): no server is "
         "started, a TCP fault proxy goes in front of each url; link faults only. The testbed "
         "creates streams orders-<p> and bucket offsets there (docs/brokers.md).")


def resolve_nats_url(nats_url: str | None, schedule: dict, storage: str) -> str | None:
    """The checked, normalised --nats-url (None without it); exits 2 with one line if a url
    is malformed or unreachable, a step needs the servers, or a stream is the user's."""
    if not nats_url:
        return None
    from harness.nats_external import ExternalRefused, validate_external
    try:
        return validate_external(nats_url, schedule, storage,
                                 note=lambda line: err_console.print(line, soft_wrap=True, markup=False))
    except ExternalRefused as e:
        fail(str(e))


def resolve_storage(storage: str | None, schedule: dict, default: str = "direct") -> str:
    """The storage to run with; exits 2 (one line) if lazy storage is needed but
    unavailable, or a storage fault is scheduled with --storage direct."""
    from harness.schedule import STORAGE_STEPS, needs_lazy_storage
    from harness.storage import fuse_missing
    needed = needs_lazy_storage(schedule)
    if storage == "direct" and needed:
        fail(f"the schedule has storage faults ({', '.join(STORAGE_STEPS)}): they need --storage lazy")
    storage = storage or ("lazy" if needed else default)
    if storage == "lazy":
        missing = fuse_missing()
        if missing:
            fail(f"--storage lazy: {missing}")
    return storage


def run_async(coro_fn: Callable[[], Awaitable[int]]) -> int:
    """Run the command's coroutine. Ctrl-C (SIGINT) and SIGTERM cancel it, so its
    cleanup (stopping every process it started) runs before the exit: 130 for
    SIGINT, 143 for SIGTERM."""
    terminated = False

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None

        def on_signal(term: bool) -> None:
            nonlocal terminated
            terminated = terminated or term
            if interrupt.requested():
                return  # already stopping: let the cleanup finish
            interrupt.request()
            task.cancel()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, on_signal, True)
        loop.add_signal_handler(signal.SIGINT, on_signal, False)
        return await coro_fn()

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        err_console.print(("terminated" if terminated else "interrupted") + ": every process was stopped")
        return 143 if terminated else 130


def exit_if_interrupted(code: int, run_dir: Path) -> None:
    """After :func:`run_async`: on Ctrl-C (130) or SIGTERM (143), say where the partial
    run is and exit with that code; otherwise return."""
    if code in (130, 143):
        # one line, copyable: no wrap at the console width, no markup in the path
        err_console.print(f"the partial run is readable in {run_dir}", soft_wrap=True, markup=False,
                          highlight=False)
        sys.exit(code)
