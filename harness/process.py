"""One node OS process, owned by pid: start, wait for SERVING, signal, stop.

The harness never kills by process name: every process it starts is held in a
:class:`NodeProcess` and ended through its pid. Readiness is learned from the
node itself (its one stdout line with the bound address, then the standard
gRPC health service's Watch stream), never from a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness import storage_watch
from nodes.common.channels import insecure_channel

ROOT = Path(__file__).resolve().parent.parent


class NodeStartError(RuntimeError):
    """A node process exited or stayed silent before it reported SERVING."""


class NodeProcess:
    """A node process (``python -m nodes.<module> ...``) started and owned by the harness.

    Args:
        module: node module under ``nodes`` ("broker", "sink", ...).
        data_dir: the node's ``--data-dir``; its stderr goes to ``data_dir/stderr.log``.
        args: extra command-line arguments (mode, peers, ablation flags).
        listen: ``host:port``; port 0 on the first start. A restart reuses the
            port the first start bound, so peers and proxies keep their address.
        name: label used in errors and in the nemesis history.
    """

    def __init__(self, module: str, data_dir: Path, args: Sequence[str] = (), *,
                 listen: str = "127.0.0.1:0", name: str | None = None) -> None:
        self.module = module
        self.name = name or module
        # absolute: the process runs in the checkout (cwd=ROOT), the harness in the caller's
        # directory; a relative --out from elsewhere put the nodes' files in the checkout
        self.data_dir = Path(data_dir).absolute()
        self.args = list(args)
        self.listen = listen
        self.address: str | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.paused = False
        self._drain: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._guard: subprocess.Popen | None = None
        self.incarnation = 0
        """How many times this node was started (1 after the first start)."""
        self.exit_cause: str | None = None
        """Why the harness ended the current incarnation ("kill step", "stop step",
        "cluster stop"...), set before it signals; None = any exit is the node's own."""
        self.env: dict[str, str] = {}
        """Extra environment of the process (the cluster's control token)."""
        self.storage_fault_injected = False
        """True while a scheduled storage fault (fsync-error, disk-full) is armed on this
        node: its storage-error exit is the expected reaction, not a campaign-ending one."""
        self.info: dict = {}
        """The node's stdout line of its last start ({"event": "listening", "address", ...})."""
        self.storage_error: dict | None = None
        """The node's ``{"event": "storage-error", "node", "errno", "file"}`` line, if it printed one."""
        self._log_mark = 0  # size of the node's JSON log when the last start began
        self.start_error: str | None = None
        """Why the last start failed (NodeStartError's message); None after a good start."""
        self.once_env: dict[str, str] = {}
        """Environment variables for the next start only (e.g. failpoints armed before the
        node's first start: ``TESTBED_FAILPOINTS``); cleared when that start begins."""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def command(self) -> list[str]:
        listen = self.address or self.listen
        return [sys.executable, "-m", f"nodes.{self.module}", "--listen", listen,
                "--data-dir", str(self.data_dir), *self.args]

    @contextlib.asynccontextmanager
    async def exclusive(self):
        """Own this node's lifecycle for the ``async with`` block: one owner per node
        restart, whichever nemesis asks (a kill step and a crash failpoint's watcher
        never start the node twice at once). Inside, use :meth:`start_owned`."""
        async with self._lock:
            yield self

    async def start(self, timeout_s: float = 30.0) -> str:
        """Start the process and wait until it reports SERVING; return its address.

        Raises:
            NodeStartError: the process exited, or did not report SERVING within
                ``timeout_s`` (it is killed in that case), or it is already running.
                The message quotes the tail of its stderr.
        """
        async with self._lock:
            return await self.start_owned(timeout_s)

    async def start_if_down(self, timeout_s: float = 30.0) -> bool:
        """Start the node unless it is running (someone else restarted it); True if
        this call started it."""
        async with self._lock:
            if self.running:
                return False
            await self.start_owned(timeout_s)
            return True

    async def start_owned(self, timeout_s: float = 30.0) -> str:
        """:meth:`start` for a caller inside :meth:`exclusive` (the lock is held)."""
        if self.running:
            raise NodeStartError(f"{self.name} is already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / f"{self.module}.log"
        self._log_mark = log_file.stat().st_size if log_file.exists() else 0
        stderr = open(self.data_dir / "stderr.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["TESTBED_PARENT_PID"] = str(os.getpid())  # the node stops if this process dies
        env.update(self.env)
        env.update(self.once_env)
        self.once_env = {}
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), stdout=asyncio.subprocess.PIPE, stderr=stderr,
                stdin=asyncio.subprocess.DEVNULL, cwd=str(ROOT), env=env,
                start_new_session=True)
        finally:
            stderr.close()
        self._end_guard()
        self.paused = False
        self.exit_cause = None
        self.incarnation += 1
        storage_watch.PROCESSES.add(self)  # a storage-error exit stops the campaign
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
            if not line:
                await self.proc.wait()
                raise NodeStartError(f"{self.name} exited with code {self.proc.returncode} "
                                     f"before listening: {self.stderr_tail()}")
            info = json.loads(line)
            self.address = info["address"]
            self.info = info
            self._drain = asyncio.ensure_future(self._drain_stdout())
            await asyncio.wait_for(self._wait_serving(), timeout_s)
        except (asyncio.TimeoutError, NodeStartError, ValueError, KeyError) as e:
            self.kill("start failed")
            await self.wait(5)
            if not isinstance(e, NodeStartError):
                e = NodeStartError(f"{self.name} did not report SERVING within {timeout_s} s "
                                   f"({type(e).__name__}): {self.stderr_tail()}")
            self.start_error = str(e)
            raise e from None
        self.start_error = None
        return self.address

    async def _drain_stdout(self) -> None:
        """Read the node's stdout to its end, keeping the storage-error line a node prints
        there (a pipe: readable when its disk is full) in ``storage_error``."""
        assert self.proc is not None
        while line := await self.proc.stdout.readline():
            if b'"storage-error"' in line:
                try:
                    self.storage_error = json.loads(line)
                except ValueError:
                    pass

    async def _wait_serving(self) -> None:
        """Follow the health service's Watch stream until it says SERVING, racing
        the process's exit so that a node dying in recovery is reported at once."""
        assert self.proc is not None
        watch = asyncio.ensure_future(self._watch_health())
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            done, _ = await asyncio.wait({watch, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (watch, exited):
                if not t.done():
                    t.cancel()
        if watch in done:
            watch.result()
            return
        if self._served_since_start():
            return  # it reached SERVING and died at once (a crash failpoint on its first step):
            #         started, as far as start() goes; whoever watches the process sees the exit
        raise NodeStartError(f"{self.name} exited with code {self.proc.returncode} "
                             f"during recovery: {self.stderr_tail()}")

    async def _watch_health(self) -> None:
        async with insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    async for resp in stub.Watch(health_pb2.HealthCheckRequest(service=""),
                                                 wait_for_ready=True):
                        if resp.status == health_pb2.HealthCheckResponse.SERVING:
                            return
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        raise NodeStartError(f"{self.name}: health watch failed: {e.details()}")
                    # The server went away mid-watch; the exit race in _wait_serving reports
                    # an exit, otherwise watch again (wait_for_ready blocks until it is back).

    def _served_since_start(self) -> bool:
        """Whether the node's JSON log says "serving" after this start's first byte."""
        try:
            with open(self.data_dir / f"{self.module}.log", "rb") as f:
                f.seek(self._log_mark)
                return any(b'"msg": "serving"' in line for line in f)
        except OSError:
            return False

    def stderr_tail(self, n: int = 5) -> str:
        try:
            lines = (self.data_dir / "stderr.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no stderr)"
        return " | ".join(lines[-n:]) or "(empty stderr)"

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process (by pid); a no-op if it already exited."""
        if self.running:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, cause: str = "killed by the harness") -> None:
        """kill -9: no cleanup, no flush, exactly what a crash leaves. ``cause`` (why
        the harness kills it) is kept in :attr:`exit_cause`: an exit the harness caused
        is never reported as the node's own."""
        if self.running:
            self.exit_cause = cause
        self.signal(signal.SIGKILL)
        self._end_guard()
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process freezes; its sockets stay open, calls to it hang.

        A pause guard (harness/pause_guard.py) is started first, so that the node
        is resumed and stopped if the harness dies while holding it stopped."""
        if not self.running:
            return
        if self._guard is None:
            self._guard = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("pause_guard.py")), str(os.getpid()),
                 str(self.proc.pid)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause` (and end the pause guard)."""
        self.signal(signal.SIGCONT)
        self._end_guard()
        self.paused = False

    @property
    def guard_pid(self) -> int | None:
        """The pid of the pause guard while the node is paused."""
        return self._guard.pid if self._guard else None

    def _end_guard(self) -> None:
        g, self._guard = self._guard, None
        if g is not None:
            g.kill()
            g.wait()

    async def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the process to exit; return its exit code (None on timeout)."""
        if self.proc is None:
            return None
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        except asyncio.TimeoutError:
            return None
        if self._drain is not None:
            await asyncio.wait({self._drain}, timeout=1)
        return code

    async def stop(self, timeout_s: float = 10.0, cause: str = "stopped by the harness") -> int | None:
        """SIGTERM (graceful stop), then SIGKILL if it has not exited after ``timeout_s``."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.exit_cause = cause
        if self.paused:
            self.resume()
        self.signal(signal.SIGTERM)
        code = await self.wait(timeout_s)
        if code is None:
            self.kill(cause)
            code = await self.wait(5)
        return code

    async def restart(self, timeout_s: float = 30.0) -> str:
        """Start again on the same address, after a kill or a stop (stopping it first
        if it runs); holds the node's lifecycle lock (see :meth:`exclusive`)."""
        async with self._lock:
            if self.running:
                await self.stop()
            return await self.start_owned(timeout_s)

    def kill_now(self) -> None:
        """Synchronous kill -9 (for atexit and signal handlers)."""
        self.kill("harness exit")
