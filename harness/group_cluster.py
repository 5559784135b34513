"""Several processors in one consumer group (``--processors N``): names, links, progress.

With ``processors`` = 1 (the default) nothing here is used and the cluster is the
single-processor pipeline. With N > 1 the cluster runs N processor processes, each
a member of consumer group ``processor`` (``--member``, nodes/processor/group_loop.py)
with its own data dir and its own two proxied links:

    member 1: node "processor",    data dir processor/,    links processor-broker, processor-sink
    member k: node "processor-k",  data dir processor-k/,  links processor-k-broker, processor-k-sink

Member 1 keeps the name ``processor`` so that every schedule, failpoint step and
audit input that names "processor" still works (it addresses member 1).

The pipeline is drained when every member answers Status, every member is in the
group's latest generation (no rebalance in progress), the producer is done and, per
partition, the highest durable position any member reports has reached the broker's
high watermark. The merged Status (:func:`merge_statuses`) is what ``processor`` means
to the drain and the audit: durable positions (max per partition), operator state
(exactly-once: each member holds the accounts of its partitions; union), per-member
assignments under ``members``.
"""

from __future__ import annotations

import grpc

PROCESSOR = "processor"
DEFAULT_SESSION_TIMEOUT_MS = 2000


def member_names(processors: int) -> list[str]:
    """Node names of the processors: ``["processor", "processor-2", ...]``."""
    return [PROCESSOR] + [f"{PROCESSOR}-{i}" for i in range(2, processors + 1)]


def is_processor(name: str) -> bool:
    return name == PROCESSOR or (name.startswith(PROCESSOR + "-") and name[len(PROCESSOR) + 1:].isdigit())


def member_links(names: list[str]) -> dict[str, tuple[str, str]]:
    """The proxied links of the members after the first: {link: (client, server)}."""
    out: dict[str, tuple[str, str]] = {}
    for n in names:
        if n != PROCESSOR:
            out[f"{n}-broker"] = (n, "broker")
            out[f"{n}-sink"] = (n, "sink")
    return out


def member_args(name: str, session_timeout_ms: int) -> list[str]:
    """Extra processor flags of a group member."""
    return ["--member", name, "--session-timeout-ms", str(session_timeout_ms)]


def merge_statuses(statuses: dict[str, dict]) -> dict:
    """One processor progress from the members' Status JSONs ({node name: status}).

    Returns a Status-shaped dict (``durable_positions``, ``positions``, ``state``,
    ``records``, ``checkpoints``, ``phase``...) plus ``members``: {node name: {member_id,
    generation, assignment, phase, fenced, assignments}} and ``stable``: every member
    answered and all are in one generation. A member that did not answer is
    {"error": code} and the merge carries ``error`` too (not drained).
    """
    out: dict = {"durable_positions": {}, "positions": {}, "state": {}, "records": 0, "checkpoints": 0,
                 "members": {}, "high_watermarks": {}}
    generations = set()
    for name, st in sorted(statuses.items()):
        if "error" in st:
            out["error"] = f"{name}: {st['error']}"
            out["members"][name] = {"error": st["error"]}
            continue
        g = st.get("group") or {}
        generations.add(g.get("generation"))
        out["members"][name] = {"phase": st.get("phase"), **g}
        owned = {str(p) for p in g.get("assignment", [])}
        for key in ("durable_positions", "positions"):
            for p, off in (st.get(key) or {}).items():
                if p in owned:
                    out[key][p] = max(out[key].get(p, 0), off)
        for p, off in (st.get("high_watermarks") or {}).items():
            out["high_watermarks"][p] = max(out["high_watermarks"].get(p, 0), off)
        out["state"].update(st.get("state") or {})
        out["records"] += st.get("records", 0)
        out["checkpoints"] += st.get("checkpoints", 0)
        for key in ("mode", "sink_strategy"):
            out.setdefault(key, st.get(key))
    out["stable"] = "error" not in out and len(generations) == 1 and None not in generations
    if not out["stable"] and "error" not in out:
        out["error"] = f"rebalance in progress (member generations {sorted(map(str, generations))})"
    out["phase"] = "running" if out["stable"] else "rebalancing"
    return out


async def group_status(cluster) -> dict:
    """The merged Status of every processor of ``cluster`` (see :func:`merge_statuses`)."""
    statuses: dict[str, dict] = {}
    for name in cluster.processor_names():
        try:
            statuses[name] = await cluster.status(name)
        except (grpc.aio.AioRpcError, KeyError) as e:
            statuses[name] = {"error": e.code().name if isinstance(e, grpc.aio.AioRpcError) else "not started"}
    return merge_statuses(statuses)


def processors_option(default: int | None = 1):
    """``--processors N`` (1..16) for campaign, up and scenario run."""
    import click
    from nodes.proxy.links import MAX_MEMBERS
    return click.option("--processors", type=click.IntRange(1, MAX_MEMBERS), default=default,
                        show_default=default is not None,
                        help="Processor processes in one consumer group (each its own data dir, links "
                             "and member id; the broker assigns the partitions). 1 = the single "
                             "standalone processor." + ("" if default else " Default: the scenario's "
                                                        "'processors' key, else 1."))


def check_processors(processors: int, *, external: dict, broker: str) -> str | None:
    """Why ``processors`` > 1 cannot run with these settings (one line), or None."""
    if processors > 1 and "processor" in external:
        return "--processors > 1 needs the built-in processor (not --processor-cmd)"
    if processors > 1 and broker != "builtin":
        return "--processors > 1 needs the builtin broker (its group coordinator)"
    return None


def ablation_problem(disabled, processors: int) -> str | None:
    """Why ``--disable generation-fencing`` would do nothing here (one line), or None: the
    fencing only acts in a consumer group, so with one processor the run silently tested
    every mechanism on."""
    if "generation-fencing" in (disabled or ()) and processors < 2:
        return "--disable generation-fencing acts only in a consumer group: add --processors 2 or more"
    return None


async def add_member(cluster):
    """Start one more processor (``processor-K``, K = one more than the highest) with its two
    proxied links, mid-run (scale out). Returns its NodeProcess.

    Raises:
        ValueError: already MAX_MEMBERS processors, or the cluster is not a consumer group.
        harness.process.NodeStartError: it did not reach SERVING.
    """
    from harness.proxy_process import GrpcProxyProcess
    from nodes.proxy.links import MAX_MEMBERS
    names = cluster.processor_names()
    if cluster.config.processors < 2:
        raise ValueError("add-processor needs a consumer group (--processors 2 or more)")
    if len(names) >= MAX_MEMBERS:
        raise ValueError(f"already {len(names)} processors (at most {MAX_MEMBERS})")
    name = f"{PROCESSOR}-{max(int(n.rsplit('-', 1)[1]) if n != PROCESSOR else 1 for n in names) + 1}"
    if cluster.config.proxies:
        for link, (client, server) in member_links([name]).items():
            proxy = GrpcProxyProcess(link, cluster.nodes[server].address,
                                     cluster.run_dir / f"proxy-{link}", seed=cluster.config.seed,
                                     control_token=cluster.control_token)
            cluster.proxies[link] = proxy
            await proxy.start()
    return await cluster._start_node(name)
