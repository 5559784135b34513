"""``python -m harness.bench.profile``: sample every node of one pipeline run with py-spy.

Starts a cluster like :mod:`harness.bench.pipeline`, attaches ``py-spy record
--format raw`` (collapsed stacks, 200 samples/s, ``--nonblocking``) to each node and
proxy by pid, runs the workload to the drain, stops the cluster (each py-spy
ends with its process and writes ``<out>/<node>.txt``), then prints each node's
top functions by own samples ("self") and by samples with the function
anywhere on the stack ("total"). py-spy is not a dependency of the testbed:
``.venv/bin/pip install py-spy`` (it needs ptrace rights on the node processes,
which a process of the same user has unless ``kernel.yama.ptrace_scope`` forbids it).
``--native`` adds C/C++/Cython frames (grpc's Cython call handling, upb, SQLite: what a
Python frame such as asyncio's ``Handle._run`` spends in native code; py-spy then pauses the
process at each sample, which slows the run);
``--gil`` samples only the thread holding the GIL (Python CPU: no fsync, select or grpc
poller waits, which py-spy otherwise counts as busy); ``--svg`` writes flame graphs
(``<out>/<node>.svg``) instead of the collapsed stacks and the table.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path

import click

from harness.bench.pipeline import _procs
from harness.bench.runner import split_mode
from harness.check_node import MODE_LABELS
from harness.cluster import Cluster, ClusterConfig


def top_functions(collapsed: Path, n: int = 12) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(total samples, top ``n`` by self samples, top ``n`` by total samples) of a py-spy raw file.

    Idle samples (the asyncio loop waiting in select/epoll) are counted in the total.
    """
    own: Counter = Counter()
    anywhere: Counter = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        own[frames[-1]] += c
        for f in set(frames):
            anywhere[f] += c
    return total, own.most_common(n), anywhere.most_common(n)


def find_pyspy() -> str | None:
    """The py-spy executable (on PATH or next to this Python), or None."""
    here = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(here) if here.is_file() else None)


async def profile_run(out: Path, *, mode: str, sink: str | None, proxies: bool, events: int,
                      batch_size: int, rate_hz: int = 200, gil: bool = False,
                      svg: bool = False, native: bool = False) -> dict[str, Path]:
    pyspy = find_pyspy() or "py-spy"
    cluster = Cluster(ClusterConfig(mode=mode, sink_strategy=sink, events=events, batch_size=batch_size,
                                    rate=0.0, proxies=proxies), out / "run")
    spies: list[asyncio.subprocess.Process] = []
    files: dict[str, Path] = {}

    async def attach(name: str, pid: int) -> None:
        f = out / f"{name.replace(':', '-')}.{'svg' if svg else 'txt'}"
        files[name] = f
        spies.append(await asyncio.create_subprocess_exec(
            pyspy, "record", "--pid", str(pid), "--rate", str(rate_hz), "--format", "flamegraph" if svg else "raw",
            *(["--native"] if native else ["--nonblocking"]),  # native stacks need the process paused
            *(["--gil"] if gil else []), "--output", str(f), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))

    try:
        await cluster.start(start_producer=False)
        for name, p in _procs(cluster).items():
            await attach(name, p.pid)
        producer = await cluster.start_producer()
        await attach("producer", producer.pid)
        await cluster.wait_drained(300, poll_s=0.05)
    finally:
        await cluster.stop()
        for s in spies:
            try:
                await asyncio.wait_for(s.wait(), 30)
            except asyncio.TimeoutError:
                s.kill()
                await s.wait()
    return files


@click.command()
@click.option("--mode", default="at-least-once", show_default=True, type=click.Choice(MODE_LABELS))
@click.option("--proxies", is_flag=True, help="Through the proxies.")
@click.option("--events", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--gil", is_flag=True,
              help="Sample only the thread holding the GIL (py-spy --gil): Python CPU, without the "
                   "time spent waiting in fsync, select or grpc's poller, or preempted on a loaded machine.")
@click.option("--svg", is_flag=True, help="Write <out>/<node>.svg flame graphs (py-spy's renderer) instead "
                                         "of the collapsed stacks and the top-functions table.")
@click.option("--native", is_flag=True,
              help="Also sample C/C++/Cython frames (py-spy --native): what grpc's Cython call handling, "
                   "protobuf (upb) and SQLite spend under a Python frame such as asyncio's Handle._run.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def cli(mode, proxies, events, batch_size, top, gil, svg, native, out) -> None:
    """Profile one pipeline run with py-spy; print each node's hottest functions."""
    from harness.cli_common import fail
    if (out / "run").exists():
        # the cluster would resume the old run's data: the producer at its end, nothing to sample
        fail(f"{out} already holds a profiled run ({out / 'run'}): give a new --out directory, or remove that one")
    if not find_pyspy():   # checked before anything starts: else a traceback after the cluster was up
        fail("py-spy not found: install it (.venv/bin/pip install py-spy); it is not a dependency of the testbed")
    out.mkdir(parents=True, exist_ok=True)
    m, sink = split_mode(mode)
    files = asyncio.run(profile_run(out, mode=m, sink=sink, proxies=proxies, events=events,
                                    batch_size=batch_size, gil=gil, svg=svg,
                                    native=native))
    for name, f in files.items():
        if svg:
            print(f"== {name}: {f if f.exists() else 'no flame graph written (py-spy failed to attach?)'}")
            continue
        if not f.exists():
            print(f"== {name}: no profile written (py-spy failed to attach?)")
            continue
        total, own, anywhere = top_functions(f, top)
        print(f"== {name}: {total} samples")
        print("   self:  " + "\n          ".join(f"{c * 100 / total:5.1f}% {fn}" for fn, c in own))
        print("   total: " + "\n          ".join(f"{c * 100 / total:5.1f}% {fn}" for fn, c in anywhere))


def main() -> None:
    """Every usage error is one line on stderr and exit 2, as in ``testbed`` (no usage dump)."""
    from harness.cli_common import fail
    try:
        cli.main(standalone_mode=False, prog_name="python -m harness.bench.profile")
    except click.ClickException as e:
        fail(" ".join(e.format_message().split()), e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        raise SystemExit(130)


if __name__ == "__main__":
    main()
