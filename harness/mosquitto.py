"""One mosquitto MQTT broker on loopback, started and ended by pid like any node.

Its data dir is ``<run>/mosquitto/``: ``mosquitto.conf`` written here, the persistence
file ``mosquitto.db`` (mosquitto writes it at each autosave and at a graceful shutdown,
never per message), ``stderr.log``. One free loopback port, chosen once and kept across
restarts. Healthy = it answers an MQTT CONNECT with a CONNACK.

``autosave`` (``--mqtt-autosave``) is mosquitto's knob that decides what a kill -9
loses: ``"default"`` keeps mosquitto's own ``autosave_interval 1800`` (seconds; the db is
written every 30 min and at shutdown), ``"<N>"`` sets ``autosave_interval N``, ``"always"``
sets ``autosave_on_changes true`` with ``autosave_interval 1`` (the db is written after
every change to it: each message received, queued or acknowledged). mosquitto 2.0's
manual, mosquitto.conf(5).

The config lifts two per-client limits a pipeline would otherwise hit silently:
``max_inflight_messages 0`` (mosquitto's default 20 QoS 1/2 messages unacknowledged per
client: a processor that acknowledges after the sink would receive 20 at a time) and
``max_queued_messages 0`` (default 1000: past that, messages for a disconnected persistent
session are DROPPED without a word to the publisher). docs/brokers.md says so.

The binary is Debian's ``mosquitto`` package (``/usr/sbin/mosquitto``); ``run.sh``
installs it when run as root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from harness.nats_cluster import free_port
from harness.orphan_guard import OrphanGuarded
from harness.process import NodeProcess, NodeStartError

AUTOSAVE_DEFAULT_S = 1800
"""mosquitto's own autosave_interval (seconds)."""
INSTALL_HINT = "mosquitto not found: install Debian's package (as root: apt-get install mosquitto)"
CLIENT_ID_PREFIX = "testbed-"


def mosquitto_binary() -> str:
    """Path of ``mosquitto``. Raises: FileNotFoundError (with :data:`INSTALL_HINT`)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def check_autosave(value: str) -> str:
    """Validate ``--mqtt-autosave``: "default", "always" or an integer of seconds >= 1.

    Raises:
        ValueError: anything else (the CLI says it in one line, exit 2).
    """
    if value in ("default", "always"):
        return value
    if value.isdigit() and int(value) >= 1:
        return str(int(value))
    raise ValueError(f"--mqtt-autosave: expected default, always or a number of seconds >= 1, got {value!r}")


class MosquittoServer(OrphanGuarded, NodeProcess):
    """The mosquitto process (a NodeProcess: signal, kill, pause, stop by pid).

    Args:
        data_dir: ``<run>/mosquitto``: config, persistence file and stderr.log.
        autosave: "default" | "always" | "<seconds>" (:func:`check_autosave`).
    """

    def __init__(self, data_dir: Path, autosave: str = "default") -> None:
        super().__init__("mosquitto", data_dir, name="mosquitto")
        self.autosave = check_autosave(autosave)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def config_text(self) -> str:
        if self.autosave == "always":
            save = "autosave_interval 1\nautosave_on_changes true\n"
        else:
            interval = AUTOSAVE_DEFAULT_S if self.autosave == "default" else int(self.autosave)
            save = f"autosave_interval {interval}\n"
        # As root, mosquitto switches to user "mosquitto" (which cannot write the run dir):
        # "user root" keeps it as the harness's user, as it is for everyone else.
        user = "user root\n" if os.geteuid() == 0 else ""
        return (f"{user}listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                f"persistence true\npersistence_location {self.data_dir}/\npersistence_file mosquitto.db\n"
                f"{save}max_inflight_messages 0\nmax_queued_messages 0\n"
                "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
                "log_type information\nconnection_messages true\nlog_timestamp_format %H:%M:%S\n")

    def command(self) -> list[str]:
        return [mosquitto_binary(), "-c", str(self.data_dir / "mosquitto.conf")]

    async def start_owned(self, timeout_s: float = 30.0) -> str:
        """Write the config, start mosquitto, wait until it answers a CONNECT."""
        if self.running:
            raise NodeStartError(f"{self.name} is already running (pid {self.pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "mosquitto.conf").write_text(self.config_text())
        with open(self.data_dir / "stderr.log", "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), stdout=asyncio.subprocess.DEVNULL, stderr=err,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        self._start_orphan_guard()   # it does not watch the harness's pid itself
        self.paused, self.exit_cause = False, None
        self.incarnation += 1
        try:
            await asyncio.wait_for(self._wait_healthy(), timeout_s)
        except (asyncio.TimeoutError, NodeStartError) as e:
            self.kill("start failed")
            await self.wait(5)
            self.start_error = (f"{self.name} not healthy within {timeout_s} s "
                                f"({type(e).__name__}): {self.stderr_tail()}")
            raise NodeStartError(self.start_error) from None
        self.start_error = None
        return self.address

    async def _wait_healthy(self) -> None:
        while True:
            if self.proc.returncode is not None:
                raise NodeStartError(f"{self.name} exited with code {self.proc.returncode}")
            if await connack("127.0.0.1", self.port):
                return
            await asyncio.sleep(0.05)   # polling the broker's own port until it answers


async def connack(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if an MQTT 3.1.1 CONNECT (clean session, client id ``testbed-health``) is
    answered with CONNACK return code 0; then DISCONNECT."""
    cid = b"testbed-health"
    var = b"\x00\x04MQTT\x04\x02\x00\x0a" + len(cid).to_bytes(2, "big") + cid
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        w.write(bytes([0x10, len(var)]) + var)
        ack = await asyncio.wait_for(r.readexactly(4), timeout_s)
        w.write(b"\xe0\x00")
        await w.drain()
        return ack[0] == 0x20 and ack[3] == 0
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        w.close()
