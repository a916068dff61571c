"""The ops dashboard: one page of server-side SVG charts from ``Monitor.status()`` and its
throughput history, refreshed by the browser every few seconds. No script library and no
CDN: the SVG is drawn here, so the page works on a machine with no network but the broker.

Charts: throughput per stage (events/s out, the last minutes), latency p50/p95/p99 per
stage, consumer lag per group and topic, first-pass denial rate by payer and by category,
the $ flow, A/R aging and the denial queues' depth.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from engine.ops.metrics import STAGES, ThroughputHistory

REFRESH_S = 3
WIDTH, HEIGHT, PAD = 460, 200, 34
COLOURS = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")


def _e(value: object) -> str:
    return html.escape(str(value))


TOP = 40  # the plot starts below the title and the legend


def _nice_max(value: float) -> float:
    """The axis top: 1, 2 or 5 × a power of ten at or above ``value`` (any magnitude)."""
    if value <= 0:
        return 1.0
    scale: float = 10 ** math.floor(math.log10(value))
    return next(step * scale for step in (1, 2, 5, 10) if value <= step * scale * (1 + 1e-9))


def _fmt(value: float) -> str:
    """Compact axis and tile numbers: 950, 1.2k, 3.4M, 0.05."""
    for bound, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            return f"{value / bound:.3g}{suffix}"
    return f"{value:.3g}"


def _frame(title: str, top: float, unit: str, body: str, legend: Sequence[tuple[str, str]] = (),
           axis: bool = True) -> str:
    items = "".join(f'<tspan fill="{c}">■ {_e(n)}</tspan>  ' for n, c in legend)
    axes = (f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 6}" y2="{HEIGHT - PAD}" stroke="#999"/>'
            f'<line x1="{PAD}" y1="{TOP}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
            f'<text x="{PAD - 3}" y="{TOP + 6}" font-size="9" text-anchor="end">{_fmt(top)}</text>'
            f'<text x="{PAD - 3}" y="{HEIGHT - PAD}" font-size="9" text-anchor="end">0</text>'
            f'<text x="9" y="{HEIGHT / 2}" font-size="9" text-anchor="middle" '
            f'transform="rotate(-90 9 {HEIGHT / 2})">{_e(unit)}</text>') if axis else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{_e(title)}" class="chart">'
            f'<text x="{PAD}" y="14" font-size="13" font-weight="bold">{_e(title)}</text>'
            f'<text x="{PAD}" y="29" font-size="10">{items}</text>{axes}{body}</svg>')


def line_chart(title: str, unit: str, series: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    """Lines over time (x: seconds, as sampled), one per series."""
    points = [p for s in series.values() for p in s]
    if not points:
        return _frame(title, 1.0, unit, f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="11" '
                                        f'text-anchor="middle">waiting for data…</text>')
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    top = _nice_max(max(p[1] for p in points))
    span_x = max(x1 - x0, 1e-9)
    inner_w, inner_h = WIDTH - PAD - 10, HEIGHT - PAD - TOP
    body, legend = [], []
    for (name, line), colour in zip(series.items(), COLOURS, strict=False):  # series past the palette: undrawn
        coords = " ".join(f"{PAD + (x - x0) / span_x * inner_w:.1f},{HEIGHT - PAD - y / top * inner_h:.1f}"
                          for x, y in line)
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{coords}"/>')
        legend.append((name, colour))
    body.append(f'<text x="{WIDTH - 6}" y="{HEIGHT - PAD + 14}" font-size="9" text-anchor="end">now</text>'
                f'<text x="{PAD}" y="{HEIGHT - PAD + 14}" font-size="9">−{span_x:.0f} s</text>')
    return _frame(title, top, unit, "".join(body), legend)


def bar_chart(title: str, unit: str, groups: Mapping[str, Mapping[str, float]]) -> str:
    """Grouped bars: one group per label, one bar per series in it."""
    series = list(dict.fromkeys(name for bars in groups.values() for name in bars))
    values = [v for bars in groups.values() for v in bars.values()]
    if not groups:
        return _frame(title, 1.0, unit, f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="11" '
                                        f'text-anchor="middle">nothing yet</text>')
    top = _nice_max(max(values, default=0.0))
    inner_w, inner_h = WIDTH - PAD - 10, HEIGHT - PAD - TOP
    slot = inner_w / len(groups)
    bar_w = max(slot * 0.8 / max(len(series), 1), 1.0)
    body = []
    for g, (label, bars) in enumerate(groups.items()):
        x = PAD + g * slot + slot * 0.1
        for s, name in enumerate(series):
            value = bars.get(name, 0.0)
            h = value / top * inner_h
            body.append(f'<rect x="{x + s * bar_w:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar_w - 1:.1f}" '
                        f'height="{h:.1f}" fill="{COLOURS[s % len(COLOURS)]}"><title>{_e(label)} {_e(name)}: '
                        f'{_fmt(value)}</title></rect>')
        body.append(f'<text x="{PAD + g * slot + slot / 2:.1f}" y="{HEIGHT - PAD + 12}" font-size="9" '
                    f'text-anchor="middle">{_e(label[:16])}</text>')
    legend = [(name, COLOURS[i % len(COLOURS)]) for i, name in enumerate(series)] if len(series) > 1 else []
    return _frame(title, top, unit, "".join(body), legend)


def hbar_chart(title: str, unit: str, values: Mapping[str, float], fmt: Callable[[float], str] = _fmt) -> str:
    """Horizontal bars, a row per label: for many or long labels (queues, categories, lag)."""
    if not values:
        return _frame(title, 1.0, unit, f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="11" '
                                        f'text-anchor="middle">nothing yet</text>', axis=False)
    label_w, top = 150, _nice_max(max(values.values()))
    row_h = min(16.0, (HEIGHT - TOP - 6) / len(values))
    body = []
    for row, (label, value) in enumerate(values.items()):
        y = TOP + row * row_h
        w = value / top * (WIDTH - label_w - 60)
        body.append(f'<text x="{label_w - 4}" y="{y + row_h * 0.75:.1f}" font-size="{min(10, row_h * 0.8):.1f}" '
                    f'text-anchor="end">{_e(label)}</text>'
                    f'<rect x="{label_w}" y="{y + 1:.1f}" width="{w:.1f}" height="{row_h - 2:.1f}" '
                    f'fill="{COLOURS[0]}"><title>{_e(label)}: {fmt(value)} {_e(unit)}</title></rect>'
                    f'<text x="{label_w + w + 3:.1f}" y="{y + row_h * 0.75:.1f}" '
                    f'font-size="{min(10, row_h * 0.8):.1f}">'
                    f'{fmt(value)}</text>')
    return _frame(title, top, unit, "".join(body), axis=False)


#: Short names of the engine's groups on the lag chart.
def _group_name(group: str) -> str:
    return "payer" if group.endswith("-payer") else "coder" if "coder" in group else "engine"


def charts(status: Mapping[str, Any], history: ThroughputHistory) -> list[str]:
    """Every chart of the dashboard, as SVG strings, in reading order."""
    latency = {stage: {q: v or 0.0 for q, v in figures.items() if q in ("p50", "p95", "p99")}
               for stage, figures in status["latency_s"].items()}
    lag = {f"{_group_name(group)} · {topic}": float(n)
           for group, topics in status["lag"].items() for topic, n in topics.items()}
    categories: dict[str, float] = {}
    for by_category in status["first_pass_denial_rate_by_category"].values():
        for category, rate in by_category.items():
            categories[category] = categories.get(category, 0.0) + rate
    payers = len(status["first_pass_denial_rate_by_category"]) or 1
    return [
        line_chart("Throughput per stage (events out / s)", "events/s",
                   {stage: history.series(stage) for stage in STAGES}),
        bar_chart("Latency per stage (s)", "seconds", latency),
        hbar_chart("Consumer lag (records behind)", "records", lag),
        bar_chart("First-pass denial rate by payer", "share",
                  {p: {"rate": r} for p, r in status["first_pass_denial_rate"].items()}),
        hbar_chart("First-pass denial rate by category (mean over payers)", "of claims",
                   {c: r / payers for c, r in sorted(categories.items(), key=lambda kv: -kv[1])},
                   fmt=lambda v: f"{v:.2%}"),
        bar_chart("$ flow by payer", "dollars",
                  {payer: {kind.replace("_", " ").replace("patient responsibility", "patient")
                           .replace(" in denial queues", ""): float(Decimal(v)) for kind, v in kinds.items()}
                   for payer, kinds in status["amounts_by_payer"].items()}),
        bar_chart("A/R aging (simulated days)", "dollars",
                  {b: {"$": float(Decimal(v))} for b, v in status["ar_aging"].items()}),
        hbar_chart("Denial queues: open items", "items",
                   {q.removeprefix("denials."): float(f["open"]) for q, f in status["denial_queues"].items()}),
    ]


def tiles(status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The figures at a glance, above the charts."""
    stages = status["stages"]
    clean = status["clean_claim_rate"]
    e2e = status["latency_s"]["end_to_end"]["p95"]
    return [
        ("encounters in / s", f"{stages['coding']['in_per_s']:,.1f}"),
        ("claims out / s", f"{stages['claims']['out_per_s']:,.1f}"),
        ("remittances posted / s", f"{stages['posting']['in_per_s']:,.1f}"),
        ("end-to-end p95", "–" if e2e is None else f"{e2e:,.2f} s"),
        ("consumer lag", f"{status['lag_total']:,}"),
        ("dead-letter rate", f"{status['dead_letter_rate']:.2%}"),
        ("coding-review rate", f"{status['coding_review_rate']:.2%}"),
        ("clean-claim rate", "–" if clean is None else f"{clean:.2%}"),
        ("$ at risk in queues", f"{Decimal(status['amounts']['at_risk_in_denial_queues']):,.2f}"),
    ]


def dashboard_page(status: Mapping[str, Any], history: ThroughputHistory, queues_href: str = "/") -> str:
    tile_html = "".join(f'<div class="tile"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
                        for k, v in tiles(status))
    chart_html = "".join(f'<div class="card">{svg}</div>' for svg in charts(status, history))
    rules = ", ".join(f"{_e(r)} {n}" for r, n in status["top_coding_rules"].items()) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_S}">
<title>Claimflow — ops dashboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem 1.5rem; color: #111; }}
nav a {{ margin-right: 1rem; }}
.tiles {{ display: flex; flex-wrap: wrap; gap: .5rem; margin: .8rem 0; }}
.tile {{ border: 1px solid #ddd; border-radius: 6px; padding: .4rem .8rem; min-width: 9rem; }}
.tile .v {{ font-size: 1.4rem; font-weight: 600; }} .tile .k {{ font-size: .8rem; color: #555; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: .8rem; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: .3rem; }}
.chart {{ width: 100%; height: auto; }}
</style></head><body>
<nav><a href="{_e(queues_href)}">denial queues</a><a href="/status">status (JSON)</a>\
<a href="/metrics">metrics</a></nav>
<h1>Claimflow — ops dashboard</h1>
<p>as of {_e(status["at"])} UTC · refreshes every {REFRESH_S} s · top coding rules: {rules}</p>
<div class="tiles">{tile_html}</div>
<div class="grid">{chart_html}</div>
</body></html>"""


def ops_routes(monitor: Any, queues_href: str = "/") -> list[Any]:
    """The dashboard, the JSON status and Prometheus ``/metrics``, for an aiohttp app."""
    from aiohttp import web
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    registry = monitor.registry()

    async def dashboard(request: web.Request) -> web.Response:
        return web.Response(text=dashboard_page(monitor.status(), monitor.history, queues_href),
                            content_type="text/html")

    async def status(request: web.Request) -> web.Response:
        return web.json_response(monitor.status())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/dashboard", dashboard), web.get("/status", status), web.get("/metrics", metrics)]
