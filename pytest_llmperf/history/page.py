"""The history as one HTML page: a trend plot per test and metric, its changes marked.

Plain inline SVG, drawn here: no plotting library, no script, no request for anything
outside the file, so the page opens from a CI artifact as it is. Each plot shows the
series' runs in order (a dot per run, its commit and value on hover), the commit under
every few runs, a red line at each regression step, a red band over each creep, green
for an improvement, grey for an acknowledged change; the same facts as ``--json``.
"""

from __future__ import annotations

import html
from typing import Any

from .. import units
from .series import short_sha

WIDTH, HEIGHT = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 78, 16, 28, 58
#: Commit labels on the x axis: at most this many, evenly spaced.
LABELS = 12

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.02em; margin: 1.4em 0 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
.regression { color: #b00020; } .improvement { color: #1b7f3b; } .acknowledged { color: #777; }
p.facts { margin: 0; font-size: 0.88em; color: #555; }
svg { background: #fcfcfc; border: 1px solid #ddd; }
"""


def _colour(change: dict[str, Any]) -> str:
    if change["acknowledged"]:
        return "#888888"
    return "#b00020" if change["regression"] else "#1b7f3b"


def _label(change: dict[str, Any]) -> str:
    what = "regression" if change["regression"] else "improvement"
    if change["acknowledged"]:
        what += ", acknowledged"
    commit = short_sha(change["commit"])
    return f"{change['kind']} {units.change(change['change'])} at {commit} ({what})"


def plot(item: dict[str, Any]) -> str:
    """One series as an SVG line plot with its changes marked."""
    pts = item["points"]
    values = [p["value"] for p in pts]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    n = len(pts)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: float) -> float:
        return LEFT + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: float) -> float:
        return TOP + h * (hi - v) / (hi - lo)

    unit = item["unit"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{html.escape(item["test"])} {html.escape(item["metric"])}">'
    ]
    for k, c in enumerate(item["changes"]):
        colour, title = _colour(c), html.escape(_label(c))
        if c["kind"] == "creep":
            x0, x1 = x(c["index"] - 0.5), x(c["end_index"] + 0.5)
            out.append(
                f'<rect class="creep" x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" height="{h}" '
                f'fill="{colour}" fill-opacity="0.12"><title>{title}</title></rect>'
            )
        else:
            xs = x(c["index"] - 0.5)
            out.append(
                f'<line class="step" x1="{xs:.1f}" x2="{xs:.1f}" y1="{TOP}" y2="{TOP + h}" '
                f'stroke="{colour}" stroke-width="2" stroke-dasharray="5,3">'
                f"<title>{title}</title></line>"
            )
        # a short label, on one of two rows so neighbours do not overprint; the whole on hover
        short = f"{c['kind']} {units.change(c['change'])}"
        row = TOP - 6 - 11 * (k % 2)
        anchor = "end" if x(c["index"]) > LEFT + 0.8 * w else "start"
        out.append(
            f'<text x="{x(c["index"]):.1f}" y="{row}" font-size="11" text-anchor="{anchor}" '
            f'fill="{colour}">{html.escape(short)}<title>{title}</title></text>'
        )
    for v in (lo + pad, hi - pad):
        out.append(
            f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{html.escape(units.quantity(v, unit))}</text>"
            f'<line x1="{LEFT}" x2="{LEFT + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
        )
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    out.append(f'<polyline points="{line}" fill="none" stroke="#3465a4" stroke-width="1.5"/>')
    for i, p in enumerate(pts):
        tip = f"run {i + 1}, commit {short_sha(p['commit'])}: {units.quantity(p['value'], unit)}"
        out.append(
            f'<circle class="run" cx="{x(i):.1f}" cy="{y(p["value"]):.1f}" r="2.8" '
            f'fill="#3465a4"><title>{html.escape(tip)}</title></circle>'
        )
    every = max(1, -(-n // LABELS))
    for i in range(0, n, every):
        sha = html.escape(short_sha(pts[i]["commit"], 7))
        out.append(
            f'<text x="{x(i):.1f}" y="{TOP + h + 14}" font-size="10" text-anchor="end" '
            f'transform="rotate(-40 {x(i):.1f} {TOP + h + 14})" font-family="monospace">'
            f"{sha}</text>"
        )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#bbb"/></svg>'
    )
    return "".join(out)


def _summary(items: list[dict[str, Any]]) -> str:
    rows = []
    for item in items:
        for c in item["changes"]:
            cls = (
                "acknowledged"
                if c["acknowledged"]
                else ("regression" if c["regression"] else "improvement")
            )
            rows.append(
                f'<tr class="{cls}"><td>{html.escape(item["test"])}</td>'
                f"<td>{html.escape(item['metric'])}</td><td>{html.escape(_label(c))}</td></tr>"
            )
    if not rows:
        return "<p>No change past its tolerance in any series.</p>"
    return (
        "<table><tr><th>test</th><th>metric</th><th>change</th></tr>" + "".join(rows) + "</table>"
    )


def render(data: dict[str, Any]) -> str:
    """The whole page: a table of every change, then a plot per series (changed ones first)."""
    items = sorted(data["series"], key=lambda i: (not i["changes"], i["test"], i["metric"]))
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>pytest-llmperf history: {html.escape(data['directory'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>pytest-llmperf history: {html.escape(data['directory'])}</h1>",
        f"<p>{len(items)} series. Each plot: one dot per run (oldest left), the commit under "
        "every few runs; a dashed line marks a step, a band marks creep (red: regression, "
        "green: improvement, grey: acknowledged).</p>",
        _summary(items),
    ]
    for item in items:
        noise = "exact" if item["exact"] else f"noise {units.percent(item['noise'])}"
        parts.append(
            f'<section class="series"><h2>{html.escape(item["test"])} &middot; '
            f"{html.escape(item['metric'])}</h2><p class='facts'>{html.escape(item['where'])}, "
            f"tier {html.escape(item['tier'])}, {len(item['points'])} runs, {noise}, tolerance "
            f"{units.percent(item['tolerance'])}</p>{plot(item)}</section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
