"""Start again on fresh ports when a port chosen for a server was taken before it bound.

nats-server, mosquitto and the TCP fault proxies are given fixed loopback ports
(harness/nats_cluster.py ``free_port``): a port is free when chosen and bound by the
server a moment later. Another run on the same machine (a test suite beside a fidelity
pass) can bind it in between; the server then exits with "address already in use" and a
30-minute measurement ended at its first cluster start. Only a first start is retried,
with every port chosen again: a restarted server keeps its ports (its peers, proxies and
clients know them).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from harness.process import NodeStartError

T = TypeVar("T")
ATTEMPTS = 3
log = logging.getLogger("harness.port_retry")


def port_taken(error: BaseException) -> bool:
    """Whether a start failed because a port it was given was bound by someone else."""
    return "address already in use" in str(error).lower()


def empty_dir(path: Path) -> None:
    """Remove what a failed first start wrote under ``path`` (kept: it may be a mount point)."""
    for child in Path(path).iterdir() if Path(path).is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


async def start_on_fresh_ports(make: Callable[[], T], start: Callable[[T], Awaitable[None]],
                               undo: Callable[[T], Awaitable[None]], what: str,
                               attempts: int = ATTEMPTS) -> T:
    """``make()`` a server (choosing its ports), ``start`` it; when it failed on a taken
    port, ``undo`` it (stop what started, clear what it wrote) and try again with a new
    ``make()``, ``attempts`` times in all.

    Returns: the started server.
    Raises: NodeStartError: another start failure, or the ports were taken every time.
    """
    for attempt in range(1, attempts + 1):
        server = make()
        try:
            await start(server)
            return server
        except NodeStartError as e:
            if not port_taken(e) or attempt == attempts:
                raise
            log.warning("%s: a port was taken before the server bound it (attempt %d of %d): "
                        "starting again on new ports", what, attempt, attempts)
            await undo(server)
    raise AssertionError("unreachable")
