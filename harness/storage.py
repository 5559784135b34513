"""Lazy storage for a node: one lazy filesystem daemon (nodes.storage.lazyfs) per data dir.

With ``--storage lazy`` every node's data dir is a FUSE mount that keeps
unsynced writes in memory (Jepsen's LazyFS model). Layout, for node ``broker``
in a mode dir:

    broker/           the backing dir: what is on "disk" (after the run it holds
                      every file, as with direct storage; readers look here)
    broker.mnt/       the mount point = the node's --data-dir while it runs
    broker.lazyfs/    the daemon's own dir: faults.jsonl, stderr.log

The daemon is a process owned by pid like a node; :meth:`LazyMount.stop` and
:meth:`LazyMount.kill_now` always end with ``fusermount3 -uz`` so that no mount
outlives the harness. A power loss (:meth:`LazyMount.power_loss`) drops the
unsynced writes (``clear-cache``, reporting what was dropped), kills the daemon
(its memory is the page cache), unmounts and mounts a fresh daemon over the
same backing dir, so the kernel holds no page or size of the old mount either.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.process import NodeStartError
from nodes.storage.control import ControlError, send
from nodes.storage.lazyfs import fuse_missing

ROOT = Path(__file__).resolve().parent.parent
STORAGE_KINDS = ("direct", "lazy")

__all__ = ["LazyMount", "StorageError", "fuse_missing", "STORAGE_KINDS", "write_through_for", "ControlError"]


class StorageError(NodeStartError):
    """A lazy filesystem did not mount (the message quotes its stderr); a NodeStartError,
    so the commands report it like a node that did not start (one line, exit 2)."""


def write_through_for(node: str) -> list[str]:
    """The testbed's own records in a node's data dir, written straight through."""
    return ["stderr.log", f"{node}.log", "history.jsonl"]


def _unmount(mount: Path) -> None:
    subprocess.run(["fusermount3", "-uz", str(mount)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def is_mounted(path: Path) -> bool:
    """True if ``path`` is a mount point in /proc/mounts."""
    target = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            return any(line.split()[1] == target for line in f)
    except OSError:
        return False


class LazyMount:
    """One lazy filesystem: backing dir ``<parent>/<name>``, mount ``<name>.mnt``.

    Args:
        parent: the mode dir.
        name: the node name.
    """

    def __init__(self, parent: Path, name: str) -> None:
        self.name = name
        parent = Path(parent).absolute()   # lazyfs and the node resolve paths from their own cwd
        self.backing = parent / name
        self.mount = parent / f"{name}.mnt"
        self.state_dir = parent / f"{name}.lazyfs"
        self.proc: asyncio.subprocess.Process | None = None
        self.incarnation = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout_s: float = 30.0) -> None:
        """Mount and wait until the mount answers.

        Raises:
            StorageError: the daemon exited or stayed silent (it is killed and unmounted).
        """
        for d in (self.backing, self.mount, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        if is_mounted(self.mount):  # a dead mount of an earlier daemon
            _unmount(self.mount)
        env = dict(os.environ, PYTHONUNBUFFERED="1", TESTBED_PARENT_PID=str(os.getpid()))
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.state_dir / "stderr.log", "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nodes.storage.lazyfs", "--backing", str(self.backing),
                "--mount", str(self.mount), "--state-dir", str(self.state_dir),
                *[a for n in write_through_for(self.name) for a in ("--write-through", n)],
                stdout=asyncio.subprocess.PIPE, stderr=err, stdin=asyncio.subprocess.DEVNULL,
                cwd=str(ROOT), env=env, start_new_session=True)
        self.incarnation += 1
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
            json.loads(line)
        except (asyncio.TimeoutError, ValueError):
            self.kill_now()
            await self.proc.wait()
            raise StorageError(f"lazy filesystem for {self.name} did not mount: {self.stderr_tail()}") from None

    def stderr_tail(self, n: int = 3) -> str:
        try:
            lines = (self.state_dir / "stderr.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no stderr)"
        lines = [line for line in lines if "max threads" not in line]
        return " | ".join(lines[-n:]) or "(empty stderr)"

    async def control(self, command: str) -> dict:
        """Send a control command (nodes.storage.control); return the answer.

        Raises:
            ControlError: the daemon refused it or did not answer.
        """
        return await asyncio.to_thread(send, self.mount, command)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Clean unmount (the daemon writes its overlays back, as at a clean shutdown);
        kill -9 if it hangs. Always ends with the mount gone."""
        if self.running:
            await asyncio.to_thread(_unmount, self.mount)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except asyncio.TimeoutError:
                self.kill_now()
                await self.proc.wait()
        await asyncio.to_thread(_unmount, self.mount)

    async def power_loss(self) -> dict:
        """Drop every unsynced write, then mount a fresh daemon over the same backing
        dir; return what was dropped: {files, dropped_bytes, paths}.

        Raises:
            ControlError: the daemon did not answer (it is restarted all the same).
            StorageError: the fresh daemon did not mount.
        """
        try:
            dropped = await self.control("clear-cache")
        finally:
            self.kill_now()
            if self.proc is not None:
                await self.proc.wait()
        await self.start()
        return {k: dropped[k] for k in ("files", "dropped_bytes", "paths")}

    def kill_now(self) -> None:
        """kill -9 the daemon (its memory, the unsynced writes, is gone) and unmount."""
        if self.running:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _unmount(self.mount)
