"""The HTML of the report page: one self-contained file (inline CSS and SVG, no
script, no network), read top-down: what was run, the comparison table, then
per mode the figure, the faults that hit and the anomalies they caused."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from harness.report.timeline import fault_rows

CSS = """
:root { --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; --muted:#57606a; --line:#d0d7de; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color:#1f2328; margin:0; background:#fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 0; }
h3 { font-size: 14px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.sub { color: var(--muted); margin: 0 0 16px; }
.chips { display:flex; flex-wrap:wrap; gap:6px; margin: 8px 0 14px; }
.chip { background: var(--bg); border:1px solid var(--line); border-radius: 999px; padding: 2px 10px; font-size: 13px; }
.chip b { font-weight: 600; }
pre.cmd { background:#0d1117; color:#e6edf3; padding:10px 14px; border-radius:6px; overflow-x:auto; margin:6px 0 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; font-size: 13px; white-space: nowrap; }
td.n, th.n { text-align: right; }
td.hit { background: #ffebe9; color: var(--bad); font-weight: 600; }
.badge { display:inline-block; border-radius: 4px; padding: 1px 8px; font-weight: 600; font-size: 13px; color:#fff; }
.badge.held { background: var(--ok); } .badge.broken { background: var(--bad); }
.badge.not-exercised, .badge.interrupted { background: var(--warn); }
section.mode { border:1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin: 26px 0; }
section.mode header { display:flex; align-items:baseline; gap: 12px; flex-wrap: wrap; margin-bottom: 4px; }
.reasons { color: var(--muted); }
.figure { margin: 10px 0 4px; }
.cols { display:grid; grid-template-columns: 1fr 1fr; gap: 22px; }
@media (max-width: 900px) { .cols { grid-template-columns: 1fr; } }
code, .ids { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.ids { color:#424a53; word-break: break-word; }
.none { color: var(--muted); font-style: italic; }
details { margin-top: 8px; } summary { cursor: pointer; color: var(--muted); }
footer { color: var(--muted); font-size: 12.5px; margin-top: 30px; border-top:1px solid var(--line); padding-top: 10px; }
.hop, .nw { white-space: nowrap; }
td.k-kill { color: #d62728; font-weight:600; } td.k-pause { color: #e36c0a; font-weight:600; }
td.k-link { color: #7a4fb0; font-weight:600; } td.k-fired, td.k-hit { color: #1f1f1f; }
td.k-failpoint { color:#8c564b; font-weight:600; } td.k-crash { color:#7b1113; font-weight:600; }
"""

TABLE_COLUMNS = (("mode", "mode", ""), ("events", "events", "n"), ("acked", "acked", "n"),
                 ("lost", "lost", "n"), ("lost-acked", "lost_acknowledged", "n"),
                 ("duplicated", "duplicated", "n"), ("balances", "balance_ok", ""),
                 ("other anomalies", "other", ""),
                 ("verdict", "verdict", ""), ("events/s", "throughput_eps", "n"),
                 ("p50 ms", "latency_p50_ms", "n"), ("p99 ms", "latency_p99_ms", "n"),
                 ("faults fired", "faults_fired", "n"))
"""(header, result.json key, css class) of the comparison table: the CLI's columns, plus
"other": the anomaly families beyond lost / lost-acknowledged / duplicated (duplicated-in-log,
state-mismatch, ordering...) with their counts, so a broken verdict is explained in its row."""
MAIN_ANOMALIES = ("lost", "lost-acknowledged", "duplicated")


def fmt(v, digits: int = 1) -> str:
    """A figure as the CLI table prints it: thousands separators, one decimal for floats, '-' for None."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def label_of(m: dict) -> str:
    return f"{m['mode']}/{m['sink']}" if m.get("sink") else m["mode"]


def _badge(verdict: str) -> str:
    return f'<span class="badge {escape(verdict)}">{escape(verdict)}</span>'


def comparison_table(modes: list[dict]) -> str:
    head = "".join(f'<th class="{c}">{escape(h)}</th>' for h, _, c in TABLE_COLUMNS)
    rows = []
    for m in modes:
        cells = []
        for _, key, cls in TABLE_COLUMNS:
            v = m.get(key)
            if key == "mode":
                cells.append(f'<td class="nw"><a href="#{escape(m["dir"])}">{escape(label_of(m))}</a></td>')
            elif key == "verdict":
                cells.append(f"<td>{_badge(v or 'interrupted')}</td>")
            elif key == "other":
                other = [(n, a["count"]) for n, a in (m.get("anomalies") or {}).items()
                         if n not in MAIN_ANOMALIES and a.get("count")]
                txt = ", ".join(f"{n} {c:,}" for n, c in other) or "-"
                cells.append(f'<td class="{"hit" if other else ""}">{escape(txt)}</td>')
            elif key == "balance_ok":
                txt = "-" if v is None else ("exact" if v else "off")
                cells.append(f'<td class="{"hit" if v is False else ""}">{txt}</td>')
            else:
                hit = key in ("lost", "lost_acknowledged", "duplicated") and (v or 0) > 0
                cells.append(f'<td class="{cls}{" hit" if hit else ""}">{escape(fmt(v))}</td>')
        rows.append(f'<tr data-mode="{escape(label_of(m))}">{"".join(cells)}</tr>')
    return f'<table class="comparison"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _faults_table(tl) -> str:
    rows = fault_rows(tl) if tl else []
    if not rows:
        return '<p class="none">no fault recorded</p>'
    out = []
    for r in rows:
        kcls = r["kind"]
        dur = "-" if r["duration_ms"] is None else f"{r['duration_ms']:,} ms"
        out.append(f'<tr><td class="n">{r["t_s"]:.2f}</td><td class="nw">{escape(r["lane"])}</td>'
                   f'<td class="k-{kcls}">{escape(r["label"])}</td><td class="n nw">{dur}</td></tr>')
    return ('<table><thead><tr><th class="n">t (s)</th><th>where</th><th>what</th><th class="n">lasted</th>'
            f'</tr></thead><tbody>{"".join(out)}</tbody></table>')


def _anomalies_table(anomalies: dict, deltas: dict) -> str:
    rows = []
    for name, a in anomalies.items():
        if not a.get("count"):
            continue
        hops = "<br>".join(f'<span class="hop">{escape(h)}: {n:,}</span>'
                           for h, n in (a.get("by_hop") or {}).items()) or "-"
        ex = a.get("examples") or []
        more = " …" if a["count"] > len(ex) else ""
        rows.append(f'<tr><td><b>{escape(name)}</b></td><td class="n hit">{a["count"]:,}</td><td>{hops}</td>'
                    f'<td class="ids">{escape(", ".join(ex))}{more}</td></tr>')
    if not rows:
        body = '<p class="none">no anomaly: every order applied exactly once, balances exact</p>'
    else:
        body = ('<table><thead><tr><th>anomaly</th><th class="n">orders</th><th>hop</th>'
                f'<th>first order ids</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    if deltas:
        items = sorted(deltas.items(), key=lambda kv: -abs(kv[1]))
        shown = ", ".join(f"{escape(a)} {d / 100:+,.2f}" for a, d in items[:8])
        body += (f'<p class="reasons">balances off on {len(deltas)} account(s) (sink minus ideal): '
                 f'<span class="ids">{shown}{" …" if len(items) > 8 else ""}</span></p>')
    return body


def mode_section(m: dict, tl, svg: str, anomalies: dict, deltas: dict) -> str:
    reasons = "; ".join(m.get("reasons") or []) or ("interrupted before the audit"
                                                     if not m.get("verdict") else "")
    faults = m.get("faults") or {}
    chips = "".join(f'<span class="chip">{escape(k)} <b>{v}</b></span>' for k, v in faults.items())
    figures = (f'<span class="chip">{fmt(m.get("throughput_eps"))} <b>events/s</b></span>'
               f'<span class="chip">p50 {fmt(m.get("latency_p50_ms"))} / p99 {fmt(m.get("latency_p99_ms"))} '
               f'<b>ms</b> ({escape(m.get("latency_kind") or "-")})</span>'
               f'<span class="chip">elapsed <b>{fmt(m.get("elapsed_s"), 2)} s</b></span>')
    audited = bool(m.get("verdict"))
    cost = _anomalies_table(anomalies, deltas) if audited else \
        '<p class="none">not audited: the campaign stopped during this mode (run testbed audit on it)</p>'
    if not audited:
        figures = ""
    return f"""
<section class="mode" id="{escape(m['dir'])}">
 <header><h2>{escape(label_of(m))}</h2>{_badge(m.get('verdict') or 'interrupted')}
  <span class="reasons">{escape(reasons)}</span></header>
 <div class="chips">{figures}{chips}</div>
 <div class="figure plot" data-mode="{escape(label_of(m))}">{svg}</div>
 <div class="cols">
  <div><h3>faults: what hit where</h3>{_faults_table(tl)}</div>
  <div><h3>anomalies: what it cost</h3>{cost}</div>
 </div>
</section>"""


def _schedule(schedule: dict | None) -> str:
    if not schedule or not schedule.get("steps"):
        return ""
    rows = []
    for i, s in enumerate(schedule["steps"]):
        what = {k: v for k, v in s.items() if k not in ("at", "f", "arm")}
        trig = "armed before the workload" if s.get("arm") else f"producer position ≥ {s['at']:,}"
        rows.append(f'<tr><td class="n">{i}</td><td>{escape(s["f"])}</td><td>{escape(trig)}</td>'
                    f'<td><code>{escape(str(what))}</code></td></tr>')
    return ('<details><summary>fault schedule (schedule.json, '
            f'{len(rows)} steps)</summary><table><thead><tr><th class="n">step</th><th>nemesis</th>'
            f'<th>trigger</th><th>step</th></tr></thead><tbody>{"".join(rows)}</tbody></table></details>')


def render(run_dir, result: dict, sections: list[str], modes: list[dict], schedule: dict | None,
           ablations: list[tuple[str, str]]) -> str:
    """The whole page. ``ablations``: (name, the anomaly it lets through) per disabled mechanism."""
    cfg = result.get("config") or {}
    seed = result.get("seed")
    chips = [("seed", seed), ("events", fmt(cfg.get("events"))), ("rate", f"{fmt(cfg.get('rate'))} events/s"),
             ("batch size", cfg.get("batch_size")), ("partitions", cfg.get("partitions")),
             ("proxies", "on" if cfg.get("proxies", True) else "off")]
    chip_html = "".join(f'<span class="chip">{escape(k)} <b>{escape(str(v))}</b></span>'
                        for k, v in chips if v is not None)
    if ablations:
        abl = "".join(f"<li><b>{escape(n)}</b> off: {escape(why)}</li>" for n, why in ablations)
        abl_html = f"<h3>ablations in effect</h3><ul>{abl}</ul>"
    else:
        abl_html = '<h3>ablations in effect</h3><p class="none">none: every mechanism on</p>'
    status = "" if result.get("complete", True) else \
        '<p><span class="badge interrupted">incomplete</span> the campaign was interrupted; finished modes only.</p>'
    replay_of = f'<p class="sub">replay of <code>{escape(str(result["replay_of"]))}</code></p>' \
        if result.get("replay_of") else ""
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ext = result.get("external_nodes") or {}
    ext_html = "" if not ext else "<h3>your own nodes (docs/contract.md)</h3><ul>" + "".join(
        f"<li><b>{escape(n)}</b>: <code>{escape(str(e.get('command')))}</code> ran in place of the "
        f"{escape(str(e.get('replaces')))}</li>" for n, e in sorted(ext.items())) + "</ul>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>testbed report · {escape(run_dir.name)}</title>
<style>{CSS}</style></head>
<body><main>
<h1>Delivery guarantees under faults · run {escape(run_dir.name)}</h1>
<p class="sub">{escape(str(run_dir))}</p>{replay_of}{status}
<div class="chips">{chip_html}</div>
<h3>comparison</h3>
{comparison_table(modes)}
<p class="reasons">lost: never applied at the sink · lost-acked: the broker acknowledged it, the sink never
applied it · duplicated: applied more than once · balances: every account equals the workload's total.
A red cell is an anomaly; the verdict says whether the mode's promise held with it.</p>
{abl_html}{ext_html}
<h3>replay this run</h3>
<pre class="cmd">./run.sh replay {escape(str(run_dir))}</pre>
{_schedule(schedule)}
{''.join(sections)}
<footer>Written by <code>testbed report</code> on {generated}. Hover a bar or a mark in a timeline to see
the fault. Sources: result.json, schedule.json and per mode nemesis.jsonl, proxy-*/faults.jsonl,
producer/history.jsonl, sink/sink.db, check.json. See docs/report.md.</footer>
</main></body></html>
"""
