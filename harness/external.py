"""Bring your own node: a user's processor or sink, started by command line (Maelstrom's model).

The harness starts ``COMMAND`` (``shlex.split``, no shell) in place of the
built-in node and treats it like any node: it is held by pid, signalled as a
process group (a wrapper script and its children get the same SIGKILL,
SIGSTOP, SIGTERM), its links go through the proxies, and the run is audited
the same way. The contract it must keep is docs/contract.md; in short:

- it is told where to listen, both as flags appended to the command and as
  environment variables (:func:`node_flags`, :func:`node_env`):
  ``--listen 127.0.0.1:PORT --data-dir DIR --mode MODE`` plus, for a
  processor, ``--broker ADDR --sink ADDR --group G`` and, in exactly-once,
  ``--sink-strategy S``. The harness picks the free port itself, so the
  node needs no stdout protocol; a restart reuses the same port;
- it is ready once the standard health service (``grpc.health.v1.Health/Check``,
  service "") answers SERVING on that address;
- it stops gracefully on SIGTERM (exit 0); exit code 2 means a bad flag or config;
- ``testbed.v1.NodeControl`` (Status, failpoints) is optional: the harness
  probes it once (:meth:`ExternalNodeProcess.probe_control`) and, without it,
  learns a processor's progress from the broker's committed offsets instead.

A start that fails is diagnosed in one line (:class:`harness.process.NodeStartError`):
exited at once (with the tail of its stderr), never SERVING, or the port
answers something that is not a gRPC health service.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.orphan_guard import OrphanGuarded
from harness.process import ROOT, NodeProcess, NodeStartError
from nodes.common.channels import insecure_channel
from nodes.common.control_auth import control_channel
from nodes.pb import node_pb2, node_pb2_grpc

EXTERNAL_NODES = ("processor", "sink")
"""The nodes a user may replace (``--processor-cmd``, ``--sink-cmd``)."""

ENV_PREFIX = "TESTBED_"


class ExternalCommandError(ValueError):
    """A ``--processor-cmd`` / ``--sink-cmd`` value cannot be run (empty, bad quoting,
    executable not found); the message is one line."""


def parse_command(command: str, what: str = "command") -> list[str]:
    """``shlex.split`` a user command and check its executable exists.

    Raises:
        ExternalCommandError: empty, unbalanced quotes, or the executable is not
            found on PATH (nor as a path).
    """
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ExternalCommandError(f"{what}: cannot split {command!r}: {e}") from None
    if not argv:
        raise ExternalCommandError(f"{what}: empty command")
    exe = argv[0]
    if shutil.which(exe) is None:
        where = f"relative to {Path.cwd()}" if "/" in exe else "on PATH"
        raise ExternalCommandError(f"{what}: executable {exe!r} not found ({where}) or not executable")
    return argv


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now (bind to port 0, read it, close).

    The node binds it moments later; between the two another process could take
    it (then the node fails to bind and the start fails with its stderr).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def node_flags(settings: dict[str, str]) -> list[str]:
    """``{"listen": "...", "data_dir": "..."}`` -> ``["--listen", "...", "--data-dir", "..."]``."""
    out: list[str] = []
    for k, v in settings.items():
        if v is not None and v != "":
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def node_env(node: str, settings: dict[str, str]) -> dict[str, str]:
    """The same settings as ``TESTBED_LISTEN``, ``TESTBED_DATA_DIR``... plus ``TESTBED_NODE``."""
    env = {f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in settings.items() if v is not None}
    env[f"{ENV_PREFIX}NODE"] = node
    return env


class ExternalNodeProcess(OrphanGuarded, NodeProcess):
    """A user's node process, started from ``command`` with ``settings`` as flags and env.

    Args:
        name: the node it replaces ("processor" or "sink").
        command: the user's command line (shlex-split, no shell).
        data_dir: its ``--data-dir`` (stdout goes to ``stdout.log``, stderr to ``stderr.log``).
        settings: what the node is told besides listen and data dir (mode, broker,
            sink, group, sink_strategy), in the order of the flags.
        start_timeout_s: the longest any start may wait for SERVING (default: the caller's).

    Attributes:
        control: whether it serves NodeControl.Status (None until probed).
    """

    external = True

    def __init__(self, name: str, command: str, data_dir: Path, settings: dict[str, str], *,
                 start_timeout_s: float | None = None) -> None:
        super().__init__(name, data_dir, name=name)
        self.command_line = command
        try:
            self.argv = parse_command(command, f"--{name}-cmd")
        except ExternalCommandError as e:   # e.g. a replay on a machine without the command
            raise NodeStartError(str(e)) from None
        self.settings = dict(settings)
        self.listen = f"127.0.0.1:{free_port()}"
        self.control: bool | None = None
        self.start_timeout_s = start_timeout_s
        self.cwd = Path.cwd()   # the user's relative paths mean what they meant where they typed them

    def all_settings(self) -> dict[str, str]:
        return {"listen": self.address or self.listen, "data_dir": str(self.data_dir), **self.settings}

    def command(self) -> list[str]:
        return [*self.argv, *node_flags(self.all_settings())]

    async def start_owned(self, timeout_s: float = 30.0) -> str:
        """Start the command and poll the health service until SERVING; return the address.

        Raises:
            NodeStartError: one line: exited (code, stderr tail), not SERVING within
                ``timeout_s`` (what the health check last said), or already running.
        """
        if self.running:
            raise NodeStartError(f"{self.name} is already running (pid {self.pid})")
        timeout_s = min(timeout_s, self.start_timeout_s or timeout_s)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.address = self.address or self.listen
        env = dict(os.environ, PYTHONUNBUFFERED="1", **node_env(self.name, self.all_settings()))
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["TESTBED_PARENT_PID"] = str(os.getpid())
        env.update(self.env)   # the cluster's control token (TESTBED_CONTROL_TOKEN)
        with open(self.data_dir / "stderr.log", "ab") as err, open(self.data_dir / "stdout.log", "ab") as out:
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *self.command(), stdout=out, stderr=err, stdin=asyncio.subprocess.DEVNULL,
                    cwd=str(self.cwd), env=env, start_new_session=True)
            except OSError as e:
                raise NodeStartError(f"{self.name}: cannot run {self.command_line!r}: {e}") from None
        self._end_guard()
        self._start_orphan_guard()
        self.paused = False
        self.exit_cause = None
        self.incarnation += 1
        try:
            await self._wait_healthy(timeout_s)
        except NodeStartError:
            self.kill("start failed")
            await self.wait(5)
            raise
        if self.control is None:
            self.control = await self.probe_control()
        return self.address

    async def _wait_healthy(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            await self._poll_health(exited, deadline, timeout_s)
        finally:
            if not exited.done():
                exited.cancel()

    async def _poll_health(self, exited: asyncio.Future, deadline: float, timeout_s: float) -> None:
        """Health/Check every 100 ms (each with a 0.5 s deadline) until SERVING, the exit, or the deadline."""
        last = "no answer yet"
        async with insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                if exited.done():
                    raise NodeStartError(self._exited_message())
                try:
                    resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    last = f"health says {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}"
                except grpc.aio.AioRpcError as e:
                    last = self._health_error(e)
                if time.monotonic() > deadline:
                    raise NodeStartError(f"{self.name} ({self.command_line}) not SERVING on "
                                         f"{self.address} within {timeout_s:g} s: {last}; stderr: "
                                         f"{self.stderr_tail(3)}")
                await asyncio.wait({exited}, timeout=0.1)

    def _exited_message(self) -> str:
        code = self.proc.returncode if self.proc else None
        what = {2: " (2 = bad flag or config, by the contract)"}.get(code, "")
        return (f"{self.name} ({self.command_line}) exited with code {code}{what} before it was "
                f"SERVING: {self.stderr_tail(3)}")

    def _health_error(self, e: grpc.aio.AioRpcError) -> str:
        code = e.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return "it speaks gRPC but does not serve grpc.health.v1.Health/Check"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and _port_open(self.address):
            return (f"port {self.address} accepts connections but does not answer as a gRPC server "
                    f"({code.name}: {e.details()})")
        if code == grpc.StatusCode.UNAVAILABLE:
            return f"nothing listens on {self.address} (the node must bind the --listen address)"
        return f"health check failed: {code.name}: {e.details()}"

    async def probe_control(self) -> bool:
        """Whether the node serves NodeControl.Status (UNIMPLEMENTED = it does not)."""
        try:
            async with control_channel(self.address) as ch:
                await node_pb2_grpc.NodeControlStub(ch).Status(node_pb2.StatusRequest(), timeout=2.0)
            return True
        except grpc.aio.AioRpcError:
            return False

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the node's process group (it leads one: start_new_session),
        so a wrapper script's children get it too; a no-op once it exited."""
        if self.running:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(self.proc.pid, sig)
                except ProcessLookupError:
                    pass


def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.3):
            return True
    except OSError:
        return False


def check_commands(external: dict[str, str]) -> None:
    """Validate every external command up front (CLI: one line, exit 2).

    Raises:
        ExternalCommandError: an unknown node or an unrunnable command.
    """
    for node, cmd in external.items():
        if node not in EXTERNAL_NODES:
            raise ExternalCommandError(f"only {', '.join(EXTERNAL_NODES)} can be external, not {node!r}")
        parse_command(cmd, f"--{node}-cmd")


__all__ = ["EXTERNAL_NODES", "ExternalCommandError", "ExternalNodeProcess", "check_commands", "free_port",
           "node_env", "node_flags", "parse_command"]
