"""One figure per mode, rendered by matplotlib to an inline SVG string.

Three panels share the time axis (s since the run's start):

1. the fault timeline: one lane per node and per link; kills (red) and pauses
   (orange) as bars from the nemesis's invoke to its ok (a kill's bar covers the
   downtime and the restart to SERVING), link faults as translucent bars while
   armed, with a cross each time one fired on a call; failpoints as translucent
   brown bars while armed, a triangle per hit, a dark red bar while a node that
   crashed at one is down; the final heal as a dashed line across every panel;
2. throughput in events/s over a sliding window: produced (first sends) and
   applied at the sink (first applications);
3. latency p50 / p99 in ms of the orders applied in the window (end to end,
   or the produce ACK latency when the sink keeps no apply times).

Kills, pauses and crashes are also shaded across panels 2 and 3, so what a fault cost
reads straight down. Each bar and mark carries an SVG ``<title>``: hovering
it in a browser shows what it was (no script needed).
"""

from __future__ import annotations

import html
import io
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from harness.report.timeline import Interval, Timeline  # noqa: E402

COLORS = {"kill": "#d62728", "pause": "#ff7f0e", "link": "#9467bd", "failpoint": "#8c564b", "crash": "#7b1113",
          "fired": "#1f1f1f", "produced": "#4c72b0", "applied": "#2ca02c",
          "p50": "#4c72b0", "p99": "#c44e52", "heal": "#555555",
          "owns": "#9ecae1", "zombie": "#ff7f0e", "add-processor": "#17becf"}
RC = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
      "axes.grid": True, "grid.alpha": 0.25, "axes.titlesize": 10, "axes.labelsize": 9,
      "font.family": ["DejaVu Sans", "sans-serif"]}


def _slots(intervals: list[Interval]) -> dict[int, tuple[int, int]]:
    """index -> (slot, slots in its lane): overlapping faults on one lane are drawn
    as thinner bars side by side instead of hiding each other."""
    out: dict[int, tuple[int, int]] = {}
    by_lane: dict[str, list[int]] = {}
    for k, iv in enumerate(intervals):
        by_lane.setdefault(iv.lane, []).append(k)
    for ks in by_lane.values():
        ends: list[float] = []
        mine: dict[int, int] = {}
        for k in sorted(ks, key=lambda k: intervals[k].start):
            slot = next((s for s, e in enumerate(ends) if e <= intervals[k].start), len(ends))
            if slot == len(ends):
                ends.append(0.0)
            ends[slot] = intervals[k].end
            mine[k] = slot
        for k, slot in mine.items():
            out[k] = (slot, len(ends))
    return out


def _owns_text(label: str) -> str:
    """"processor-2-2 generation 3: partitions [0, 1]" -> "g3 [0, 1]"."""
    head, _, parts = label.partition(": partitions ")
    return f"g{head.rsplit(' ', 1)[-1]} {parts}" if parts else label


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _fault_panel(ax, tl: Timeline, titles: dict[str, str], prefix: str) -> None:
    ypos = {lane: len(tl.lanes) - 1 - i for i, lane in enumerate(tl.lanes)}
    slots = _slots(tl.intervals)
    for k, iv in enumerate(tl.intervals):
        slot, n = slots[k]
        h = 0.7 / n
        y = ypos.get(iv.lane, 0) - 0.35 + slot * h
        alpha = 0.35 if iv.kind in ("link", "failpoint") else 0.9
        bars = ax.broken_barh([(iv.start, max(iv.end - iv.start, tl.end / 400))], (y, h * 0.92),
                              facecolors=COLORS.get(iv.kind, "#7f7f7f"), alpha=alpha,
                              hatch="//" if iv.outcome == "info" else None, edgecolor="none")
        gid = f"{prefix}-fault-{len(titles)}"
        bars.set_gid(gid)
        titles[gid] = f"{iv.start:.2f}-{iv.end:.2f} s: {iv.label}"
        if iv.kind == "owns":   # a group member's assignment (group_lanes.py): say it on the bar
            bars.set_edgecolor("#ffffff")
            bars.set_linewidth(1.5)
            ax.text(iv.start + tl.end / 200, y + h * 0.46, _owns_text(iv.label), fontsize=6.5,
                    va="center", clip_on=True)
    for m in tl.marks:
        if m.kind == "heal":
            continue
        marker = "x" if m.kind == "fired" else "v"
        (pt,) = ax.plot([m.t], [ypos.get(m.lane, 0)], marker=marker, linestyle="none", markersize=6,
                        color=COLORS["fired" if m.kind == "fired" else "failpoint"], markeredgewidth=1.5)
        gid = f"{prefix}-fault-{len(titles)}"
        pt.set_gid(gid)
        titles[gid] = f"{m.t:.2f} s: {m.label}"
    ax.set_yticks(list(ypos.values()), list(ypos.keys()))
    ax.set_ylim(-0.6, len(tl.lanes) - 0.4)
    ax.grid(axis="y", alpha=0)
    for lane, y in ypos.items():
        ax.axhline(y - 0.5, color="#000000", alpha=0.06, linewidth=0.8)
    ax.set_title("faults: what hit where", loc="left")


def _shade(ax, tl: Timeline) -> None:
    for iv in tl.intervals:
        if iv.kind in ("kill", "pause", "crash"):
            ax.axvspan(iv.start, iv.end, color=COLORS[iv.kind], alpha=0.08, linewidth=0)


def mode_figure_svg(tl: Timeline, title: str, salt: str) -> str:
    """The three-panel figure of one mode as an ``<svg>`` element (no XML header,
    width 100%, ids salted with ``salt`` so several figures can share a page).
    ``title`` becomes the SVG's accessible ``<title>``."""
    titles: dict[str, str] = {}
    with plt.rc_context(RC | {"svg.hashsalt": salt}):
        fig, (ax_f, ax_t, ax_l) = plt.subplots(
            3, 1, sharex=True, figsize=(11, 6.4), gridspec_kw={"height_ratios": [1.35, 1, 1]},
            layout="constrained")
        _fault_panel(ax_f, tl, titles, re.sub(r"[^A-Za-z0-9_-]", "-", salt))
        s = tl.series
        ax_t.plot(s.t, s.produced_eps, color=COLORS["produced"], linewidth=1.4, label="produced")
        ax_t.fill_between(s.t, s.applied_eps, color=COLORS["applied"], alpha=0.18, linewidth=0)
        ax_t.plot(s.t, s.applied_eps, color=COLORS["applied"], linewidth=1.4, label="applied at sink")
        ax_t.set_ylabel("events/s")
        ax_t.set_ylim(bottom=0)
        ax_t.set_title(f"throughput (window {s.width_s:g} s)", loc="left")
        ax_t.legend(loc="lower right", bbox_to_anchor=(1, 1), frameon=False, ncols=2, borderaxespad=0)
        p50, p99 = _nan(s.p50_ms), _nan(s.p99_ms)
        ax_l.plot(s.t, p50, color=COLORS["p50"], linewidth=1.4, label="p50")
        ax_l.plot(s.t, p99, color=COLORS["p99"], linewidth=1.4, label="p99")
        finite = [v for v in p50 + p99 if not math.isnan(v) and v > 0]
        if finite and max(finite) / max(min(finite), 0.1) > 30:
            ax_l.set_yscale("log")
        ax_l.set_ylabel("ms")
        ax_l.set_title(f"latency ({s.latency_kind}) of orders applied in the window", loc="left")
        ax_l.legend(loc="lower right", bbox_to_anchor=(1, 1), frameon=False, ncols=2, borderaxespad=0)
        ax_l.set_xlabel("seconds since the run started")
        ax_l.set_xlim(0, max(tl.end, 0.5) * 1.01)
        for ax in (ax_t, ax_l):
            _shade(ax, tl)
        for m in tl.marks:
            if m.kind == "heal":
                for ax in (ax_f, ax_t, ax_l):
                    ax.axvline(m.t, color=COLORS["heal"], linestyle="--", linewidth=1)
        handles = [Patch(color=COLORS["kill"], label="kill -9 (down + restart)"),
                   Patch(color=COLORS["pause"], label="pause (SIGSTOP)"),
                   Patch(color=COLORS["link"], alpha=0.35, label="link fault armed"),
                   Line2D([], [], marker="x", color=COLORS["fired"], linestyle="none", label="link fault fired")]
        kinds = {i.kind for i in tl.intervals} | {m.kind for m in tl.marks}
        if kinds & {"failpoint", "crash"}:  # only when the run used failpoints
            handles += [Patch(color=COLORS["failpoint"], alpha=0.35, label="failpoint armed"),
                        Line2D([], [], marker="v", color=COLORS["failpoint"], linestyle="none",
                               label="failpoint hit"),
                        Patch(color=COLORS["crash"], label="crash at failpoint (down + restart)")]
        handles.append(Line2D([], [], color=COLORS["heal"], linestyle="--", label="final heal"))
        fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6), frameon=False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
    return _inline(buf.getvalue(), titles, title)


def _inline(svg: str, titles: dict[str, str], title: str) -> str:
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"([^>]*)>',
                 lambda m: f'<svg{m[1]} width="100%"{m[2]} role="img"><title>{html.escape(title)}</title>',
                 svg, count=1)
    for gid, text in titles.items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(text)}</title>', 1)
    return svg
