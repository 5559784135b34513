"""Run the lazy filesystem (Jepsen LazyFS's model) in the foreground, or talk to one.

    python -m nodes.storage.lazyfs --backing DIR --mount DIR --state-dir DIR \\
        [--write-through NAME ...]
    python -m nodes.storage.lazyfs ctl --mount DIR COMMAND...   (clear-cache, stats, ...)

The daemon mounts ``--mount`` (FUSE, libfuse3 through mfusepy), prints one JSON
line ``{"mount": ..., "backing": ..., "control": ..., "pid": ...}`` to stdout
once the mount answers, and serves until unmounted (``fusermount3 -u``) or
SIGTERM. Mount options: no writeback cache (every write reaches this process),
attribute and entry timeouts 0 (the kernel never serves a stale size after a
power loss), ``hard_remove``. ``--state-dir`` gets ``faults.jsonl`` (see
nodes.storage.faults). Exit codes: 0 unmounted, 2 bad usage or FUSE missing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

EXIT_USAGE = 2
PARENT_ENV = "TESTBED_PARENT_PID"


def fuse_missing() -> str | None:
    """None when a lazy filesystem can be mounted here, else one line saying what
    is missing and how to install it."""
    if not os.path.exists("/dev/fuse"):
        return "FUSE is unavailable: no /dev/fuse (load the fuse module, or give the container --device /dev/fuse)"
    if shutil.which("fusermount3") is None:
        return "FUSE is unavailable: no fusermount3 (install it: apt-get install fuse3)"
    if os.geteuid() != 0:
        return "FUSE lazy storage needs root here (mounts are made as root; run as root or use --storage direct)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, EnvironmentError) as e:
        return f"FUSE is unavailable: mfusepy cannot load libfuse3 ({e}); install fuse3 and pip install mfusepy"
    return None


def _unmount(mount: str) -> None:
    subprocess.run(["fusermount3", "-uz", mount], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def _announce_when_mounted(mount: str, backing: str, address: str) -> None:
    """Print the ready line once the mount point is this filesystem (a new st_dev)."""
    parent_dev = os.stat(os.path.dirname(os.path.realpath(mount))).st_dev
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if os.stat(mount).st_dev != parent_dev:
                print(json.dumps({"mount": mount, "backing": backing, "control": address.lstrip("\0"),
                                  "pid": os.getpid()}), flush=True)
                return
        except OSError:
            pass
        time.sleep(0.01)


def _watch_parent(mount: str) -> None:
    """Unmount (which ends this process) when the harness that started it has died."""
    try:
        parent = int(os.environ.get(PARENT_ENV, "0"))
    except ValueError:
        return
    while parent > 0:
        if os.getppid() != parent:
            _unmount(mount)
            return
        time.sleep(0.5)


def serve(backing: str, mount: str, state_dir: str, write_through: list[str]) -> int:
    import mfusepy as fuse

    from nodes.storage import control
    from nodes.storage.faults import FaultState
    from nodes.storage.fs import LazyOps

    faults = FaultState(Path(state_dir))
    ops = LazyOps(backing, faults, frozenset(write_through))
    address = control.control_address(mount)
    control.serve(address, lambda line: control.handle_command(line, ops, faults))
    threading.Thread(target=_announce_when_mounted, args=(mount, backing, address), daemon=True).start()
    threading.Thread(target=_watch_parent, args=(mount,), daemon=True).start()
    fuse.FUSE(ops, mount, foreground=True, nothreads=False, hard_remove=True, attr_timeout=0,
              entry_timeout=0, negative_timeout=0, max_threads=16, fsname="lazyfs", subtype="testbed")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        p = argparse.ArgumentParser(prog="python -m nodes.storage.lazyfs ctl")
        p.add_argument("--mount", required=True)
        p.add_argument("command", nargs="+")
        a = p.parse_args(argv[1:])
        from nodes.storage.control import ControlError, send
        try:
            print(json.dumps(send(a.mount, " ".join(a.command))))
        except ControlError as e:
            print(f"lazyfs: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        return 0
    p = argparse.ArgumentParser(prog="python -m nodes.storage.lazyfs", description=__doc__.splitlines()[0])
    p.add_argument("--backing", required=True, help="backing directory (what is on disk)")
    p.add_argument("--mount", required=True, help="mount point (an empty directory)")
    p.add_argument("--state-dir", required=True, help="where faults.jsonl is written")
    p.add_argument("--write-through", action="append", default=[],
                   help="a file name at the mount root written straight through (repeatable)")
    a = p.parse_args(argv)
    missing = fuse_missing()
    if missing:
        print(f"lazyfs: {missing}", file=sys.stderr)
        return EXIT_USAGE
    for d in (a.backing, a.mount, a.state_dir):
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            print(f"lazyfs: error: cannot create {d}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s lazyfs %(levelname)s %(message)s")
    try:
        return serve(os.path.realpath(a.backing), os.path.realpath(a.mount), a.state_dir, a.write_through)
    except RuntimeError as e:
        print(f"lazyfs: error: mount of {a.mount} failed ({e})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
