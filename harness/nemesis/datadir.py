"""Storage faults on a stopped node's data dir, with plain file operations (no FUSE).

What a disk, a backup tool or an operator can do to a node's files between two
runs of it (Jepsen's file-corruption nemesis, reduced to one node): flip a bit,
cut a file short, restore an old copy of the directory, or empty it. Each step
stops the node (kill -9 unless ``"stop": "term"``), changes its files, and starts
it again on the same address; ``nemesis.jsonl`` records exactly what was done
(file, byte offset, bit, sizes, snapshot id and path). Power loss, fsync errors
and a full disk need a filesystem in the middle and live elsewhere.

Step shapes (``node``: producer | broker | processor | sink)::

    {"at": 300, "f": "corrupt", "node": "broker", "file": "orders-0/*.log", "how": "flip",
     "offset": 1000, "bit": 3}                       # offset/bit omitted: drawn from "seed"
    {"at": 300, "f": "corrupt", "node": "processor", "file": "checkpoint.json",
     "how": "truncate", "size": 0}                   # or "drop_bytes": 40 (cut from the end)
    {"at": 200, "f": "snapshot", "node": "processor", "id": "early"}   # "stop": "none" = live copy
    {"at": 700, "f": "rollback", "node": "processor", "id": "early"}
    {"at": 700, "f": "wipe", "node": "sink"}

``file`` is a glob relative to the data dir; of its matches (sorted by name) the
last is used (``"pick": "first"`` for the first): for the broker, the newest
segment. ``offset`` may be ``"middle"``. Snapshots are copies under
``<mode dir>/snapshots/<node>-<id>/``. A snapshot copies a stopped node's dir
by default: a copy of a live dir (``"stop": "none"``) is what a backup tool
without a filesystem snapshot takes, and may hold files from different moments.

Never touched (they are the harness's record of the run, not the node's
state): the node's JSON log ``<node>.log``, ``stderr.log`` and the producer's
``history.jsonl``.

A node that refuses to start again (exit 2, one line naming the file) is the
safe outcome of many of these steps: the step is recorded ``ok`` with
``"restart": {"ok": false, "exit_code": 2, "stderr": ...}`` plus an ``info``
op ``node-refused-start``; the node stays down, and the campaign reports the
mode as not drained at once (harness.cluster), instead of waiting out the drain timeout.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

from harness.nemesis.base import Nemesis
from harness.process import NodeProcess, NodeStartError

KINDS = ("corrupt", "snapshot", "rollback", "wipe")
KEEP = ("stderr.log", "history.jsonl")


class DataDirError(ValueError):
    """A data-dir step is invalid or cannot be applied (no matching file, unknown snapshot)."""


def is_nats(step: dict) -> bool:
    """A step aimed at a NATS server ("nats" by role, or "nats-<i>"), not a built-in node."""
    return str(step.get("node", "")).startswith("nats")


def validate_step(step: dict) -> str | None:
    """What is wrong with a data-dir step, or None (harness.schedule.validate_steps calls it)."""
    if step.get("node") is None:
        return f"'{step['f']}' needs a 'node'"
    if is_nats(step):
        if step["f"] != "corrupt":
            return f"'{step['f']}' is not available for a NATS server (corrupt is)"
        return None  # harness/nemesis/corrupt.py: "path", "bytes", "role"
    if step.get("stop", "kill") not in ("kill", "term", "none"):
        return f"'stop' must be kill, term or none, not {step.get('stop')!r}"
    if step["f"] == "corrupt":
        if not step.get("file"):
            return "'corrupt' needs 'file' (a glob relative to the node's data dir)"
        if step.get("how", "flip") not in ("flip", "truncate"):
            return f"'how' must be flip or truncate, not {step.get('how')!r}"
        if step.get("how") == "truncate" and ("size" in step) == ("drop_bytes" in step):
            return "'truncate' needs exactly one of 'size' and 'drop_bytes'"
    if step["f"] in ("snapshot", "rollback") and not step.get("id"):
        return f"'{step['f']}' needs an 'id'"
    return None


def _kept(p: NodeProcess, path: Path) -> bool:
    return path.parent == p.data_dir and (path.name in KEEP or path.name == f"{p.module}.log")


def _state_files(p: NodeProcess) -> list[Path]:
    return sorted(f for f in p.data_dir.rglob("*") if f.is_file() and not _kept(p, f))


class DataDirNemesis(Nemesis):
    """Carries out ``corrupt``, ``snapshot``, ``rollback`` and ``wipe`` steps (module doc)."""

    async def invoke(self, step: dict) -> dict:
        error = validate_step(step)
        if error:
            raise DataDirError(error)
        if is_nats(step):  # a NATS server's files: corrupt.py picks the server by role
            from harness.nemesis.corrupt import CorruptNemesis
            from harness.nemesis.quiesce import quiesce, release
            waited = await quiesce(self.ctx.cluster, step["quiesce"]) if step.get("quiesce") else None
            out = await CorruptNemesis(self.ctx).invoke(step)
            if waited is not None:  # logical: the producer paused and the pipeline drained first
                await release(self.ctx.cluster, step, waited)
                out["quiesce"] = waited
            return out
        from harness.nemesis.logical import acted, hand_next_pause, wait_paused
        waited = await wait_paused(self.ctx, step) if step.get("pause_at") else None  # a logical trigger
        p = self.ctx.cluster.nodes[step["node"]]
        async with p.exclusive():  # one owner per node restart (harness/process.py)
            stopped = await self._stop(p, step.get("stop", "kill"), step["f"])
            result = {"stopped": stopped} | ({"pause_at": waited} if waited else {})
            result.update(getattr(self, f"_{step['f']}")(p, step))
            if stopped is not None and not stopped.get("already_down"):
                await asyncio.sleep(int(step.get("down_ms", 100)) / 1000)
                hand_next_pause(p, step)
                result["restart"] = await self._start(p)
        if waited is not None:
            acted(self.ctx, step)
        return result

    async def _stop(self, p: NodeProcess, how: str, f: str) -> dict | None:
        if how == "none" or not p.running:
            return None if how == "none" else {"pid": p.pid, "already_down": True}
        pid = p.pid
        if how == "term":
            code = await p.stop(timeout_s=10, cause=f"{f} step")
        else:
            p.kill(f"{f} step")
            code = await p.wait(10)
        return {"pid": pid, "signal": "SIGTERM" if how == "term" else "SIGKILL", "exit_code": code}

    async def _start(self, p: NodeProcess) -> dict:
        try:
            await p.start_owned()
        except NodeStartError as e:
            code = p.proc.returncode if p.proc else None
            tail = p.stderr_tail(1)
            self.ctx.history.record("info", "node-refused-start",
                                    {"node": p.name, "exit_code": code, "stderr": tail}, error=str(e))
            return {"ok": False, "exit_code": code, "stderr": tail}
        self.ctx.cluster.write_manifest()
        return {"ok": True, "new_pid": p.pid}

    # -- the four operations (synchronous file work on a stopped node) --------------------
    def _corrupt(self, p: NodeProcess, step: dict) -> dict:
        matches = [f for f in sorted(p.data_dir.glob(step["file"])) if f.is_file() and not _kept(p, f)]
        if not matches:
            raise DataDirError(f"no file matches {step['file']!r} in {p.data_dir}")
        path = matches[0] if step.get("pick") == "first" else matches[-1]
        size = path.stat().st_size
        out = {"file": str(path.relative_to(p.data_dir)), "size_before": size}
        if step.get("how", "flip") == "truncate":
            new = int(step["size"]) if "size" in step else max(0, size - int(step["drop_bytes"]))
            with open(path, "r+b") as f:
                f.truncate(min(new, size))
            return out | {"how": "truncate", "size_after": path.stat().st_size,
                          "bytes_dropped": size - path.stat().st_size}
        if size == 0:
            raise DataDirError(f"{path} is empty: no bit to flip")
        rng = random.Random(f"{step.get('seed', self.ctx.cluster.config.seed)}:{out['file']}")
        offset = step.get("offset")
        offset = size // 2 if offset == "middle" else (rng.randrange(size) if offset is None else int(offset))
        if not 0 <= offset < size:
            raise DataDirError(f"offset {offset} outside {path} ({size} bytes)")
        bit = int(step["bit"]) if "bit" in step else rng.randrange(8)
        with open(path, "r+b") as f:
            f.seek(offset)
            before = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([before ^ (1 << bit)]))
        return out | {"how": "flip", "offset": offset, "bit": bit,
                      "byte_before": before, "byte_after": before ^ (1 << bit)}

    def _snapshot_dir(self, p: NodeProcess, snap_id: str) -> Path:
        return self.ctx.cluster.run_dir / "snapshots" / f"{p.name}-{snap_id}"

    def _snapshot(self, p: NodeProcess, step: dict) -> dict:
        dest = self._snapshot_dir(p, step["id"])
        if dest.exists():
            shutil.rmtree(dest)
        files = _state_files(p)
        for f in files:
            target = dest / f.relative_to(p.data_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        return {"id": step["id"], "path": str(dest), "files": len(files),
                "bytes": sum(f.stat().st_size for f in files), "live": step.get("stop") == "none"}

    def _clear(self, p: NodeProcess) -> list[tuple[str, int]]:
        """Delete every state file (not the kept ones); return [(relative path, bytes)]."""
        files = [(f, f.stat().st_size) for f in _state_files(p)]
        for f, _ in files:
            f.unlink()
        for d in sorted((d for d in p.data_dir.rglob("*") if d.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
        return [(str(f.relative_to(p.data_dir)), n) for f, n in files]

    def _rollback(self, p: NodeProcess, step: dict) -> dict:
        src = self._snapshot_dir(p, step["id"])
        if not src.is_dir():
            raise DataDirError(f"no snapshot {step['id']!r} of {p.name} (take one with a 'snapshot' step first)")
        removed = self._clear(p)
        restored = sorted(f for f in src.rglob("*") if f.is_file())
        for f in restored:
            target = p.data_dir / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
        return {"id": step["id"], "path": str(src), "removed": len(removed), "restored": len(restored),
                "bytes": sum(f.stat().st_size for f in restored)}

    def _wipe(self, p: NodeProcess, step: dict) -> dict:
        removed = self._clear(p)
        return {"removed": [f for f, _ in removed][:50], "files": len(removed),
                "bytes": sum(n for _, n in removed)}

    async def heal(self) -> None:
        """Nothing to undo: the files stay as the steps left them (the node was restarted,
        or refused to start and is reported by the kill nemesis's heal and the drain)."""
