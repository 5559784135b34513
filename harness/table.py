"""The comparison table (the seed's table, measured) printed after a campaign."""

from __future__ import annotations

from rich.table import Table

VERDICT_STYLE = {"held": "bold green", "broken": "bold red", "not-exercised": "yellow", "stalled": "bold magenta"}


def _fmt(v, suffix: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}{suffix}"
    return f"{v:,}{suffix}"


def result_table(result: dict, title: str | None = None) -> Table:
    t = Table(title=title or f"seed {result.get('seed')}", title_justify="left")
    for col, just in (("mode", "left"), ("events", "right"), ("acked", "right"), ("lost", "right"),
                      ("lost-acked", "right"), ("duplicated", "right"), ("balances", "left"),
                      ("verdict", "left"), ("events/s", "right"), ("p50 ms", "right"),
                      ("p99 ms", "right"), ("faults", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for m in result.get("modes", []):
        label = f"{m['mode']}/{m['sink']}" if m.get("sink") else m["mode"]
        v = m["verdict"]
        t.add_row(label, _fmt(m["events"]), _fmt(m["acked"]), _fmt(m["lost"]),
                  _fmt(m["lost_acknowledged"]), _fmt(m["duplicated"]),
                  "exact" if m["balance_ok"] else "[red]off[/]",
                  f"[{VERDICT_STYLE.get(v, '')}]{v}[/]", _fmt(m.get("throughput_eps")),
                  _fmt(m.get("latency_p50_ms")), _fmt(m.get("latency_p99_ms")),
                  _fmt(m.get("faults_fired")))
    return t


def anomaly_lines(result: dict) -> list[str]:
    """One line per anomaly with its first order ids and hops, for every mode."""
    lines = []
    for m in result.get("modes", []):
        label = f"{m['mode']}/{m['sink']}" if m.get("sink") else m["mode"]
        for name, a in (m.get("anomalies") or {}).items():
            hops = ", ".join(f"{h}: {n}" for h, n in (a.get("by_hop") or {}).items())
            ex = ", ".join(a.get("examples", [])[:5])
            lines.append(f"{label}: {a['count']} {name}" + (f" ({hops})" if hops else "") + f": {ex}"
                         + (" ..." if a["count"] > 5 else ""))
    return lines
