"""The life of a node process: bind, recover, serve, stop.

Every node (``python -m nodes.<name>``) runs through :func:`run_node`:

1. check the data dir is writable (else a one-line error, exit code 2);
2. start a grpc.aio server on ``--listen`` (port 0 picks a free port) with the
   standard health service reporting NOT_SERVING, and print exactly one line
   to stdout: ``{"event": "listening", "node": ..., "address": "127.0.0.1:PORT",
   "pid": ..., "data_dir": ...}``; nothing else is ever printed to stdout but the
   storage-error line below;
3. run the node's recovery; until it finishes every call except health
   checks is refused with UNAVAILABLE ("recovering");
4. report SERVING and start the node's main task (producer, processor);
5. on SIGTERM or SIGINT: NOT_SERVING, stop the server with a grace period,
   close the node (flush, fsync), exit 0. A main task that raises ends the
   process with exit code 1 after logging the error.
6. a full disk or an I/O error on a durable write (ENOSPC, EIO...; nodes/common/
   storage_fault.py): stop as in 5, print ``{"event": "storage-error", "node",
   "errno", "file"}`` to stdout and ``NODE: storage error: ... on FILE`` to
   stderr, exit code 3.

Every server gets :class:`nodes.common.wireguard.WireGuard`: malformed protobuf
bytes answer INVALID_ARGUMENT and an unmapped servicer exception INTERNAL (logged),
never UNKNOWN.

A recovery that finds the node's durable state unusable (a corrupt file, a file
shorter than its own recovery point, state that vanished since the node last
ran) raises :class:`RefuseToStart`: one line on stderr naming the file, exit
code 2, never SERVING. Any other recovery error exits 1.

Every node also serves NodeControl: ``Status`` and the failpoint RPCs
``ArmFailpoint`` / ``DisarmFailpoint`` / ``ListFailpoints``
(nodes/common/failpoints.py); ``--failpoint NAME=ACTION[@N][xCOUNT]``
(repeatable) or ``$TESTBED_FAILPOINTS`` arms failpoints at start.

The node logic itself lives in plain classes; this module and the servicers
are the thin shell around them (aiohttp's web_runner lifecycle).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import click
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nodes.common import control_auth, storage_fault
from nodes.common.channels import SERVER_OPTIONS
from nodes.common.failpoints import ENV_VAR as FAILPOINTS_ENV
from nodes.common.failpoints import FAILPOINTS, REGISTRY as FAILPOINT_NAMES, Arming, FailpointSpecError
from nodes.common.jsonlog import setup_logging
from nodes.common.modes import MODES
from nodes.common.wireguard import WireGuard
from nodes.pb import node_pb2, node_pb2_grpc

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

HEALTH_PREFIX = "/grpc.health.v1.Health/"


class DataDirError(Exception):
    """The data dir cannot be created or written."""


class RefuseToStart(Exception):
    """Raised by a node's recovery: its durable state is corrupt or inconsistent, and
    serving from it would serve wrong data or lose acknowledged data. The message is
    one line naming the file; the node exits 2 without ever reporting SERVING."""


def check_data_dir(data_dir: Path) -> Path:
    """Create ``data_dir`` if needed and prove it is writable.

    Raises:
        DataDirError: not creatable or not writable (run_node prints one line, exit code 2).
    """
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise DataDirError(f"data dir {data_dir} is not writable: {e.strerror or e}") from None
    return data_dir


def _arm_failpoints(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    """--failpoint callback: arm each spec (and those of $TESTBED_FAILPOINTS) at once."""
    specs = [s for s in os.environ.get(FAILPOINTS_ENV, "").split(";") if s.strip()] + list(value)
    try:
        FAILPOINTS.arm_specs(specs)
    except FailpointSpecError as e:
        raise click.BadParameter(str(e)) from None


_CONTROL_TOKEN: dict[str, str | None] = {"token": None}


def _set_control_token(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--control-token callback (also $TESTBED_CONTROL_TOKEN): kept for serve()."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty")
    _CONTROL_TOKEN["token"] = value


def common_options(f: Callable) -> Callable:
    """The click options every node takes: --listen, --data-dir, --mode, --log-level,
    --failpoint (armed by its callback; not passed to the node's function)."""
    f = click.option("--failpoint", multiple=True, expose_value=False, callback=_arm_failpoints,
                     metavar="NAME=ACTION[(MS)][@N][xCOUNT]",
                     help="Arm a failpoint at start (repeatable; also $TESTBED_FAILPOINTS, "
                          "';'-separated). See `testbed failpoints`.")(f)
    f = click.option("--control-token", envvar=control_auth.TOKEN_ENV, expose_value=False,
                     callback=_set_control_token, metavar="TOKEN",
                     help="Require this token (gRPC metadata x-testbed-token) on NodeControl and "
                          "ProxyControl calls; else UNAUTHENTICATED. Also $TESTBED_CONTROL_TOKEN.")(f)
    f = click.option("--log-level", default="INFO", show_default=True,
                     type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))(f)
    f = click.option("--mode", type=click.Choice(MODES), default="at-least-once", show_default=True,
                     help="Delivery guarantee mode (shared/DESIGN.md).")(f)
    f = click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Directory for this node's durable state and logs.")(f)
    f = click.option("--listen", default="127.0.0.1:0", show_default=True,
                     help="host:port to bind; port 0 picks a free port, reported on stdout.")(f)
    return f


class _ReadyGate(grpc.aio.ServerInterceptor):
    """Refuse every non-health call with UNAVAILABLE until recovery finished."""

    def __init__(self) -> None:
        self.ready = False

        async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "recovering: node not ready yet")

        self._refuse_handler = grpc.unary_unary_rpc_method_handler(_refuse)

    async def intercept_service(self, continuation, handler_call_details):
        if self.ready or handler_call_details.method.startswith(HEALTH_PREFIX):
            return await continuation(handler_call_details)
        return self._refuse_handler


class _StatusServicer(node_pb2_grpc.NodeControlServicer):
    def __init__(self, node: str, mode: str, status: Callable[[], dict]) -> None:
        self._node, self._mode, self._status = node, mode, status

    async def Status(self, request, context):
        return node_pb2.StatusResponse(node=self._node, mode=self._mode,
                                       status_json=json.dumps(self._status(), default=str))

    async def ArmFailpoint(self, request, context):
        """NOT_FOUND: unknown failpoint name; INVALID_ARGUMENT: bad action or value."""
        try:
            a = FAILPOINTS.arm(Arming(request.name, request.action, delay_ms=request.delay_ms,
                                      timeout_ms=request.timeout_ms, nth=request.nth or 1,
                                      count=request.count))
        except FailpointSpecError as e:
            code = grpc.StatusCode.NOT_FOUND if request.name not in FAILPOINT_NAMES \
                else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(e))
        return node_pb2.ArmFailpointResponse(spec=a.spec())

    async def DisarmFailpoint(self, request, context):
        if not request.name:
            was = bool(FAILPOINTS.armed)
            FAILPOINTS.disarm_all()
        else:
            was = FAILPOINTS.disarm(request.name) is not None
        return node_pb2.DisarmFailpointResponse(was_armed=was)

    async def ListFailpoints(self, request, context):
        return node_pb2.ListFailpointsResponse(
            failpoints=[node_pb2.FailpointInfo(**f) for f in FAILPOINTS.listing()])


@dataclass
class NodeSpec:
    """What a node plugs into the runtime.

    Attributes:
        name: node name ("broker", ...), also the log file's name.
        register: adds the node's servicers to the server.
        recover: awaited before SERVING (replay the log, load a checkpoint...).
        status: returns a JSON-able dict for the NodeControl.Status RPC.
        main: optional long-running task started once SERVING.
        close: awaited on graceful stop, after the server stopped.
        service_names: full service names to report in the health service.
        bind: optional; awaited once the gRPC server is bound, before the stdout
            line; its dict is added to that line (the TCP proxy's ``data_address``).
            An OSError it raises is one stderr line and exit code 2.
        address: the bound gRPC address ("host:port"), set by ``serve`` before ``bind``.
    """

    name: str
    register: Callable[[grpc.aio.Server], None]
    recover: Callable[[], Awaitable[None]] = field(default=None)  # type: ignore[assignment]
    status: Callable[[], dict] = field(default=lambda: {})
    main: Callable[[], Awaitable[None]] | None = None
    close: Callable[[], Awaitable[None]] | None = None
    service_names: tuple[str, ...] = ()
    bind: Callable[[], Awaitable[dict]] | None = None
    address: str = ""


async def serve(spec: NodeSpec, *, listen: str, data_dir: Path, mode: str,
                log: logging.Logger, grace_s: float = 2.0) -> int:
    """Run a node until SIGTERM/SIGINT or until its main task fails; return the exit code."""
    gate = _ReadyGate()
    token_check = control_auth.ControlTokenCheck(_CONTROL_TOKEN["token"])
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[token_check, gate, WireGuard(log)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    node_pb2_grpc.add_NodeControlServicer_to_server(_StatusServicer(spec.name, mode, spec.status), server)
    spec.register(server)
    names = ("",) + tuple(spec.service_names)
    for n in names:
        await health_servicer.set(n, health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as e:
        print(f"{spec.name}: error: cannot bind {listen}: {e}", file=sys.stderr)
        return EXIT_USAGE
    await server.start()
    warning = control_auth.bind_warning(spec.name, listen, _CONTROL_TOKEN["token"])
    if warning:
        print(warning, file=sys.stderr, flush=True)
        log.warning("not loopback", extra={"listen": listen})
    host = listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    spec.address = address
    extra: dict = {}
    if spec.bind is not None:
        try:
            extra = await spec.bind()
        except OSError as e:
            print(f"{spec.name}: error: cannot bind: {e.strerror or e}", file=sys.stderr)
            await server.stop(0)
            return EXIT_USAGE
    sys.stdout.write(json.dumps({"event": "listening", "node": spec.name, "address": address,
                                 "pid": os.getpid(), "data_dir": str(data_dir), **extra}) + "\n")
    sys.stdout.flush()
    log.info("listening", extra={"address": address, "mode": mode, "pid": os.getpid()})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphan_watch = asyncio.ensure_future(_watch_parent(stop, log))
    storage_fault.REPORTER.bind(loop, stop)  # a full disk / I/O error stops the node (exit 3)

    exit_code = EXIT_OK
    main_task: asyncio.Task | None = None
    try:
        if spec.recover is not None:
            recover = asyncio.ensure_future(spec.recover())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({recover, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if recover not in done:
                recover.cancel()
                log.info("stopped during recovery")
                await server.stop(0)
                return EXIT_OK
            stopper.cancel()
            recover.result()
        gate.ready = True
        for n in names:
            await health_servicer.set(n, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving")
        if spec.main is not None:
            main_task = asyncio.ensure_future(spec.main())
        stopper = asyncio.ensure_future(stop.wait())
        waiters = {stopper} | ({main_task} if main_task else set())
        while True:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                break
            if main_task in done:
                waiters.discard(main_task)
                exc = main_task.exception()
                if exc is not None:
                    storage_fault.failed(exc)
                    log.error("main task failed: %r", exc, exc_info=exc)
                    print(f"{spec.name}: fatal: {exc}", file=sys.stderr)  # one line for the harness
                    exit_code = EXIT_FAILURE
                    break
                log.info("main task finished")
        stopper.cancel()
    except RefuseToStart as e:  # unusable durable state: one line naming the file, exit 2
        log.error("refusing to start: %s", e, extra={"json_only": True})
        print(f"{spec.name}: error: {e}", file=sys.stderr, flush=True)
        # Nothing was served and nothing durable is open for writing: leave at once, so that
        # stopping the server does not print grpc's tracebacks of the harness's health watch.
        for h in logging.getLogger().handlers:
            h.flush()
        os._exit(EXIT_USAGE)
    except Exception as e:  # recovery failed: fail loudly, never serve
        storage_fault.failed(e)
        log.error("fatal: %s", e, exc_info=True)
        print(f"{spec.name}: fatal: {e}", file=sys.stderr)
        exit_code = EXIT_FAILURE
    finally:
        orphan_watch.cancel()
        await health_servicer.enter_graceful_shutdown()
        if main_task is not None and not main_task.done():
            main_task.cancel()
            try:
                await main_task
            except (asyncio.CancelledError, Exception):
                pass
        await server.stop(grace_s)
        if spec.close is not None:
            try:
                await spec.close()
            except Exception:
                log.exception("close failed")
                exit_code = exit_code or EXIT_FAILURE
        exit_code = _storage_exit(spec.name, log, exit_code, data_dir)
        log.info("stopped", extra={"exit_code": exit_code})
    return exit_code


def _storage_exit(name: str, log: logging.Logger, exit_code: int, data_dir: Path) -> int:
    """EXIT_STORAGE and the one stderr line if a storage error stopped the node."""
    err = storage_fault.REPORTER.error
    if err is None:
        return exit_code
    what, path = storage_fault.describe(err)
    if path in ("?", "the SQLite database"):
        path = f"{'the SQLite database' if path != '?' else 'a file'} in {data_dir}"
    log.error("storage error", extra={"errno": what.split(" ", 1)[0], "file": path, "error": str(err)})
    try:  # stdout is the harness's pipe: it gets through when the disk (and stderr.log) is full
        sys.stdout.write(json.dumps({"event": "storage-error", "node": name, "errno": what,
                                     "file": path}) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        print(f"{name}{storage_fault.LINE_MARK}{what} on {path}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr.log on the full disk
        pass
    return storage_fault.EXIT_STORAGE


PARENT_ENV = "TESTBED_PARENT_PID"
"""Set by the harness to its pid: a node whose parent is gone stops by itself."""


async def _watch_parent(stop: asyncio.Event, log: logging.Logger, every_s: float = 0.5) -> None:
    """Stop gracefully when the harness that started this node has died (kill -9 of
    the harness, a crashed CI runner): its nodes must not live on as orphans."""
    try:
        parent = int(os.environ.get(PARENT_ENV, "0"))
    except ValueError:
        return
    if parent <= 0:
        return
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the harness (pid %d) is gone; stopping", parent)
            stop.set()
            return
        await asyncio.sleep(every_s)


GC_THRESHOLD_0 = 20_000
"""Allocations between two young-generation collections in a node with ``tune_gc`` (CPython's
default: 700)."""


def tune_gc() -> None:
    """Fewer cyclic-GC passes on the per-record paths (issue 16): freeze what start-up
    allocated (modules, grpc, the node's objects: never scanned again) and collect the young
    generation every GC_THRESHOLD_0 allocations instead of 700. Reference counting still frees
    everything acyclic at once; only cycles wait longer. A Fetch of 1,000 records folded by the
    processor: 1.24 -> 0.98 us of CPU per record (GC off: 0.98)."""
    _, g1, g2 = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_0, g1, g2)


def run_node(make_spec: Callable[[logging.Logger], NodeSpec], *, name: str, listen: str,
             data_dir: Path, mode: str, log_level: str = "INFO", uvloop: bool = False,
             gc_tuned: bool = False) -> None:
    """Process entry point: set up the data dir and logging, serve, exit with the code
    (on uvloop when ``uvloop``, see :func:`use_uvloop`; :func:`tune_gc` when ``gc_tuned``)."""
    try:
        data_dir = check_data_dir(data_dir)
    except DataDirError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    log = setup_logging(name, data_dir, log_level)
    try:
        spec = make_spec(log)
    except click.UsageError:
        raise
    except (ValueError, OSError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    main = serve(spec, listen=listen, data_dir=data_dir, mode=mode, log=log)
    if gc_tuned and os.environ.get("TESTBED_GC_TUNE") != "0":  # =0: CPython's defaults, to compare
        tune_gc()
    if use_uvloop(default=uvloop):
        import uvloop as _uvloop
        sys.exit(_uvloop.run(main))
    sys.exit(asyncio.run(main))


def use_uvloop(*, default: bool) -> bool:
    """Whether this node runs on uvloop (libuv's event loop, a drop-in for asyncio's):
    the node's default (the proxy: True; every other node: False), overridden by
    ``TESTBED_UVLOOP=1`` / ``=0`` in the environment. The proxy's CPU per forwarded call
    is 15-20% lower on uvloop (issue 16, docs/bench.md); the other nodes showed no
    difference outside the noise."""
    env = os.environ.get("TESTBED_UVLOOP")
    return default if env not in ("0", "1") else env == "1"
