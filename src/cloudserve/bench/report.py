"""Render a :class:`CompareReport`: a Rich table, and a self-contained HTML page.

The HTML page has no external resources (no CDN, fonts or images): CSS, the SVG charts and
the little script that toggles series are inline, so it renders offline and can be mailed or
attached to a ticket as one file. Charts: latency by percentile per target (HDR style, the
x axis spreads the tail: 90%, 99%, 99.9% …) and cost per hour against p99 latency. A target
whose price is unknown is listed under the chart, never drawn at $0.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from cloudserve.bench.compare import CompareReport, TargetResult

__all__ = ["render_html", "rich_table"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
_W, _H = 760, 360
_ML, _MR, _MT, _MB = 70, 170, 20, 50


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def _money(value: float | None, currency: str, digits: int = 3) -> str:
    return "unknown" if value is None else f"{value:,.{digits}f} {currency}"


def _slo(r: TargetResult) -> str:
    return {True: "met", False: "missed", None: "—"}[r.slo_met]


def _errors(r: TargetResult) -> str:
    if r.load is None:
        return "—"
    if not r.load.errors:
        return "0"
    return ", ".join(f"{k}: {v}" for k, v in sorted(r.load.errors.items()))


def _row(r: TargetResult) -> list[str]:
    load = r.load
    return [
        r.target,
        r.provider or "—",
        r.instance_type or "—",
        _ms(load.p50_ms if load else None),
        _ms(load.p95_ms if load else None),
        _ms(load.p99_ms if load else None),
        _errors(r),
        "—" if load is None else f"{load.throughput_rps:,.1f}",
        _money(r.hourly, r.currency),
        _money(r.cost_per_1k, r.currency, 5),
        _slo(r),
        "—" if r.cold_start_s is None else f"{r.cold_start_s:,.1f} s",
    ]


HEADERS = [
    "target",
    "provider",
    "instance",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "req/s",
    "per hour",
    "per 1k predictions",
    "SLO",
    "cold start",
]


def rich_table(report: CompareReport) -> Table:
    """The results as a Rich table; failed targets show their error in the caption."""
    slo = f", SLO p99 ≤ {report.slo_p99_ms:g} ms" if report.slo_p99_ms else ""
    table = Table(*HEADERS, title=f"compare {report.model}{slo}")
    for r in report.results:
        table.add_row(*_row(r), style="red" if r.error else None)
    problems = [f"{r.target}: {r.error}" for r in report.results if r.error]
    problems += [
        f"{r.target}: price unknown — {r.price_unknown_reason}"
        for r in report.results
        if r.price_unknown_reason
    ]
    if problems:
        table.caption = "\n".join(problems)
    return table


# -- HTML -------------------------------------------------------------------------------------


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def _pct_x(p: float) -> float:
    # "Nines" axis: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3 …; the maximum sits at 4.5.
    if p >= 100:
        return 4.5
    return min(math.log10(100 / (100 - p)), 4.0)


def _frame(
    x_ticks: list[tuple[float, str]], y_ticks: list[tuple[float, str]], x_label: str, y_label: str
) -> list[str]:
    pw, ph = _W - _ML - _MR, _H - _MT - _MB
    out = [f'<rect x="{_ML}" y="{_MT}" width="{pw}" height="{ph}" class="plot"/>']
    for frac, label in x_ticks:
        x = _ML + frac * pw
        out.append(f'<line x1="{x:.1f}" y1="{_MT}" x2="{x:.1f}" y2="{_MT + ph}" class="grid"/>')
        out.append(
            f'<text x="{x:.1f}" y="{_MT + ph + 18}" class="tick" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    for frac, label in y_ticks:
        y = _MT + ph - frac * ph
        out.append(f'<line x1="{_ML}" y1="{y:.1f}" x2="{_ML + pw}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{_ML - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<text x="{_ML + pw / 2}" y="{_H - 8}" class="axis" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(16 {_MT + ph / 2}) rotate(-90)" class="axis" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return out


def _y_ticks(top: float, fmt: str) -> list[tuple[float, str]]:
    return [(i / 5, format(top * i / 5, fmt)) for i in range(6)]


def _legend(names: list[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        y = _MT + 14 + i * 20
        x = _W - _MR + 16
        color = COLORS[i % len(COLORS)]
        out.append(
            f'<g class="legend" data-series="{i}"><rect x="{x}" y="{y - 10}" width="14" '
            f'height="10" fill="{color}"/><text x="{x + 20}" y="{y}" class="tick">'
            f"{escape(name)}</text></g>"
        )
    return out


def latency_chart(results: list[TargetResult], slo_p99_ms: float | None) -> str:
    """SVG: latency (ms) by percentile, one line per target that ran."""
    ran = [r for r in results if r.load is not None and r.load.curve]
    top = _nice_max(max([p for r in ran for _, p in r.load.curve] + [slo_p99_ms or 0]))  # type: ignore[union-attr]
    pw, ph = _W - _ML - _MR, _H - _MT - _MB
    x_ticks = [
        (_pct_x(p) / 4.5, label)
        for p, label in (
            (0, "0%"),
            (90, "90%"),
            (99, "99%"),
            (99.9, "99.9%"),
            (99.99, "99.99%"),
            (100, "max"),
        )
    ]
    parts = _frame(x_ticks, _y_ticks(top, ".0f"), "percentile", "latency (ms)")
    if slo_p99_ms:
        y = _MT + ph - slo_p99_ms / top * ph
        parts.append(
            f'<line x1="{_ML}" y1="{y:.1f}" x2="{_ML + pw}" y2="{y:.1f}" class="slo"/>'
            f'<text x="{_ML + 4}" y="{y - 4:.1f}" class="slo-label">SLO '
            f"{slo_p99_ms:g} ms</text>"
        )
    for i, r in enumerate(results):
        if r.load is None or not r.load.curve:
            continue
        pts = " ".join(
            f"{_ML + _pct_x(p) / 4.5 * pw:.1f},{_MT + ph - ms / top * ph:.1f}"
            for p, ms in r.load.curve
        )
        color = COLORS[i % len(COLORS)]
        parts.append(
            f'<g class="series" data-series="{i}"><polyline points="{pts}" '
            f'fill="none" stroke="{color}" stroke-width="2.5"/>'
        )
        for p, ms in r.load.curve:
            cx, cy = _ML + _pct_x(p) / 4.5 * pw, _MT + ph - ms / top * ph
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}">'
                f"<title>{escape(r.target)}: p{p:g} = {ms:.1f} ms</title></circle>"
            )
        parts.append("</g>")
    parts += _legend([r.target for r in results])
    return _svg("chart-latency", "Latency by percentile per target", parts)


def cost_chart(results: list[TargetResult], slo_p99_ms: float | None) -> str:
    """SVG: cost per hour against p99 latency, one point per target with a known price."""
    pts = [(i, r) for i, r in enumerate(results) if r.hourly is not None and r.p99_ms is not None]
    x_top = _nice_max(max([r.p99_ms or 0 for _, r in pts] + [slo_p99_ms or 0]) * 1.1)
    y_top = _nice_max(max([r.hourly or 0 for _, r in pts] + [0.01]) * 1.1)
    currency = results[0].currency if results else "USD"
    pw, ph = _W - _ML - _MR, _H - _MT - _MB
    x_ticks = [(i / 5, format(x_top * i / 5, ".0f")) for i in range(6)]
    parts = _frame(x_ticks, _y_ticks(y_top, ".3f"), "p99 latency (ms)", f"{currency} per hour")
    if slo_p99_ms:
        x = _ML + slo_p99_ms / x_top * pw
        parts.append(
            f'<line x1="{x:.1f}" y1="{_MT}" x2="{x:.1f}" y2="{_MT + ph}" class="slo"/>'
            f'<text x="{x + 4:.1f}" y="{_MT + 14}" class="slo-label">SLO</text>'
        )
    for i, r in pts:
        cx = _ML + (r.p99_ms or 0) / x_top * pw
        cy = _MT + ph - (r.hourly or 0) / y_top * ph
        per_1k = "" if r.cost_per_1k is None else f", {r.cost_per_1k:.5f} {currency} per 1k"
        parts.append(
            f'<g class="series" data-series="{i}"><circle cx="{cx:.1f}" cy="{cy:.1f}" r="7" '
            f'fill="{COLORS[i % len(COLORS)]}"><title>{escape(r.target)}: p99 '
            f"{r.p99_ms:.1f} ms, {r.hourly:.3f} {currency}/h{per_1k}</title></circle>"
            f'<text x="{cx + 10:.1f}" y="{cy + 4:.1f}" class="tick">{escape(r.target)}</text></g>'
        )
    parts += _legend([r.target for r in results])
    return _svg("chart-cost", "Cost per hour against p99 latency", parts)


def _svg(element_id: str, title: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        f'<svg id="{element_id}" class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">\n<title>{escape(title)}</title>\n{body}\n</svg>'
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;margin:0 0 16px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f2f2}
td:first-child,th:first-child,td:nth-child(2),td:nth-child(3){text-align:left}
tr.failed td{color:#b00}
.slo-met{color:#1a7f37;font-weight:600} .slo-missed{color:#b00;font-weight:600}
.chart .plot{fill:#fafafa;stroke:#999} .chart .grid{stroke:#e3e3e3}
.chart .tick{font-size:11px;fill:#333} .chart .axis{font-size:12px;fill:#222}
.chart .slo{stroke:#b00;stroke-dasharray:6 4;stroke-width:1.5}
.chart .slo-label{font-size:11px;fill:#b00}
.chart .legend{cursor:pointer} .chart .off{opacity:.15}
ul.notes{font-size:13px;color:#444}
"""

_SCRIPT = """
document.querySelectorAll('svg.chart .legend').forEach(function (item) {
  item.addEventListener('click', function () {
    var chart = item.closest('svg'), id = item.getAttribute('data-series');
    chart.querySelectorAll('[data-series="' + id + '"]').forEach(function (el) {
      if (el !== item) { el.classList.toggle('off'); }
    });
    item.classList.toggle('off');
  });
});
"""


def _html_table(report: CompareReport) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    rows = []
    for r in report.results:
        cells = _row(r)
        tds = [f"<td>{escape(c)}</td>" for c in cells]
        if r.slo_met is not None:
            tds[10] = f'<td class="slo-{cells[10]}">{escape(cells[10])}</td>'
        cls = ' class="failed"' if r.error else ""
        rows.append(f"<tr{cls}>{''.join(tds)}</tr>")
    return (
        f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _notes(report: CompareReport) -> str:
    items = []
    for r in report.results:
        if r.error:
            items.append(f"<li><b>{escape(r.target)}</b> failed: {escape(r.error)}</li>")
        if r.price_unknown_reason:
            items.append(
                f"<li><b>{escape(r.target)}</b>: price unknown — "
                f"{escape(r.price_unknown_reason)} (not drawn in the cost chart)</li>"
            )
        if r.server_p99_ms is not None:
            items.append(
                f"<li><b>{escape(r.target)}</b>: server-side p50/p95/p99 "
                f"{_ms(r.server_p50_ms)} / {_ms(r.server_p95_ms)} / "
                f"{_ms(r.server_p99_ms)} ms</li>"
            )
        items += [f"<li><b>{escape(r.target)}</b>: {escape(n)}</li>" for n in r.notes]
        if r.estimate is not None:
            items += [
                f"<li><b>{escape(r.target)}</b>: {escape(a)}</li>" for a in r.estimate.assumptions
            ]
    return f'<ul class="notes">{"".join(items)}</ul>' if items else ""


def _describe_workload(report: CompareReport) -> str:
    w = report.workload
    load = (
        f"open loop at {w.rps:g} requests/s"
        if w.mode == "open"
        else f"closed loop with {w.concurrency} concurrent clients"
    )
    slo = f" · SLO p99 ≤ {report.slo_p99_ms:g} ms" if report.slo_p99_ms else ""
    return (
        f"{load} for {w.duration_s:g} s after {w.warmup_s:g} s warm-up, "
        f"{w.rows_per_request} row(s) per request{slo} · started "
        f"{report.started_at:%Y-%m-%d %H:%M UTC}"
    )


def render_html(report: CompareReport) -> str:
    """The whole report as one HTML document with no external resources."""
    title = f"cloudserve compare — {report.model}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">{escape(_describe_workload(report))}</p>
{_html_table(report)}
<h2>Latency by percentile</h2>
<p class="meta">Client-side latency measured from each request's scheduled start. Click a legend
entry to hide a target.</p>
{latency_chart(report.results, report.slo_p99_ms)}
<h2>Cost against p99 latency</h2>
<p class="meta">Lower left is better: cheaper and faster.</p>
{cost_chart(report.results, report.slo_p99_ms)}
<h2>Notes and assumptions</h2>
{_notes(report)}
<script>{_SCRIPT}</script>
</body></html>
"""
