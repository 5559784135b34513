"""Run directories: ``runs/<id>/`` per run, ``runs/latest`` pointing to the newest."""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = Path(os.environ.get("TESTBED_RUNS") or ROOT / "runs")
"""The runs directory (``$TESTBED_RUNS`` overrides ``<checkout>/runs``; tests use it)."""


class RunDirError(Exception):
    """The runs directory cannot be created or written."""


def new_run_dir(base: Path | None = None, label: str = "") -> Path:
    """Create ``<base>/<YYYYmmdd-HHMMSS>[-label][-n]/`` and point ``<base>/latest`` at it.

    Raises:
        RunDirError: ``base`` is not writable (message names the path).
    """
    base = Path(base) if base else DEFAULT_RUNS
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{label}" if label else stamp
    try:
        base.mkdir(parents=True, exist_ok=True)
        run = base / name
        n = 1
        while True:
            try:
                run.mkdir()
                break
            except FileExistsError:
                n += 1
                run = base / f"{name}-{n}"
        link_latest(run)
    except OSError as e:
        raise RunDirError(f"cannot create a run directory under {base}: {e.strerror or e}") from None
    return run


def link_latest(run: Path) -> None:
    """Atomically point ``<run's parent>/latest`` at ``run`` (a relative symlink)."""
    latest = run.parent / "latest"
    tmp = run.parent / f".latest.{os.getpid()}"
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(run.name, tmp)
    os.replace(tmp, latest)
