"""The report as one self-contained HTML page: styles inline, plots as embedded PNGs.

Nothing is loaded from outside (a CI artifact opens offline); without
matplotlib the page has its tables and says that plots are missing.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from ..results import TestResult
from . import plots
from .sections import group_sections, section_plots
from .tables import (
    HEADLINE_NOTE,
    Section,
    Strong,
    Table,
    detail_lines,
    detectable_section,
    fingerprint_table,
    session_items,
    summary_table,
    verdict_cell,
    verdict_counts,
    work_section,
)

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --head:#f6f8fa; --stripe:#fbfcfd;
  --pass:#1a7f37; --bad:#cf222e; --warn:#9a6700; --info:#0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
  margin: 0; padding: 24px 32px 48px; max-width: 1500px; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 12px; }
.meta dt { color: var(--muted); } .meta dd { margin: 0; }
.chips span { display: inline-block; padding: 2px 10px; margin: 0 6px 6px 0; border-radius: 12px;
  font-weight: 600; font-size: 13px; color: #fff; }
.scroll { overflow-x: auto; margin: 6px 0 10px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; white-space: nowrap; }
th { background: var(--head); text-align: left; font-weight: 600; white-space: normal;
  vertical-align: bottom; min-width: 3em; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) td { background: var(--stripe); }
td.test { white-space: normal; overflow-wrap: anywhere; min-width: 280px; max-width: 640px; font-family: ui-monospace, monospace; font-size: 12px; }
td.fp { white-space: normal; max-width: 320px; color: var(--warn); }
.v { font-weight: 600; }
.v-pass { color: var(--pass); } .v-regression { color: var(--bad); }
.v-inconclusive { color: var(--warn); } .v-improved, .v-no-baseline { color: var(--info); }
.bg-pass { background: var(--pass); } .bg-regression { background: var(--bad); }
.bg-inconclusive { background: var(--warn); } .bg-improved, .bg-no-baseline { background: var(--info); }
.bg-recorded { background: var(--muted); }
.note { color: var(--muted); font-style: italic; margin: 2px 0 6px; }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
ul.details li { margin-bottom: 4px; } code { font-size: 12px; }
"""

NO_PLOTS_NOTE = (
    '<p class="note">Plots are not included: matplotlib is not installed '
    "(<code>pip install 'pytest-llmperf[plots]'</code>).</p>"
)


def escape(text: Any) -> str:
    """Text safe in HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def _cell_classes(table: Table, j: int, cell: str) -> list[str]:
    """Right alignment, verdict colour, a wrapping test id, the fingerprint and work
    change highlight."""
    col = table.columns[j] if j < len(table.columns) else ""
    classes = ["r"] if table.align[j] == "r" else []
    if col == "verdict":
        classes += ["v", f"v-{escape(cell)}"]
    elif col == "test":
        classes.append("test")
    elif col in ("fingerprint change", "work change") and cell != "-":
        classes.append("fp")
    return classes


def render_table(table: Table) -> str:
    """A scrollable table; :class:`Strong` cells in bold."""
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{escape(c)}</th>" for c in table.columns]
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        out.append("<tr>")
        for j, cell in enumerate(row):
            classes = _cell_classes(table, j, cell)
            text = escape(cell)
            if isinstance(cell, Strong):
                text = f"<strong>{text}</strong>"
            cls = f' class="{" ".join(classes)}"' if classes else ""
            out.append(f"<td{cls}>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def figure(plot: plots.Plot) -> str:
    """A plot as an inline PNG with its caption."""
    b64 = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img alt="{escape(plot.title)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{escape(plot.title)}</figcaption></figure>"
    )


def _header(results: list[TestResult], session: dict) -> list[str]:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>pytest-llmperf report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>pytest-llmperf report</h1>",
        '<dl class="meta">',
    ]
    for k, v in session_items(session):
        out.append(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>")
    out += ["</dl>", '<div class="chips">']
    for v, n in verdict_counts(results):
        out.append(f'<span class="bg-{escape(v)}">{n} {escape(v)}</span>')
    out.append("</div>")
    return out


def _verdicts(results: list[TestResult], have_plots: bool) -> list[str]:
    out = ["<h2>Verdicts</h2>"]
    if not results:
        return out + ["<p>No performance tests ran.</p>"]
    out.append(render_table(summary_table(results)))
    out.append(f'<p class="note">{escape(HEADLINE_NOTE)}</p>')
    plot = plots.baseline_vs_current(results) if have_plots else None
    if plot is not None:
        out.append(figure(plot))
    return out


def _section(section: Section, hook: Any, have_plots: bool) -> list[str]:
    out = [f"<h2>{escape(section.title)}</h2>"]
    for table in section.tables:
        if table.title:
            out.append(f"<h3>{escape(table.title)}</h3>")
        if table.note:
            out.append(f'<p class="note">{escape(table.note)}</p>')
        out.append(render_table(table))
    if have_plots:
        out += [figure(plot) for plot in section_plots(section, hook)]
        if section.group:  # the unnamed group's go to "Token latency"
            out += _token_figures(section.results)
    return out


def _token_figures(results: list[TestResult]) -> list[str]:
    """The ITL histograms of these tests, with a note of how many the cap left out."""
    drawn, left_out = plots.token_plots(results, plots.MAX_HISTOGRAMS)
    out = [figure(plot) for plot in drawn]
    if left_out:
        out.append(
            f'<p class="note">{left_out} more inter-token latency histogram(s) not drawn: at '
            f"most {plots.MAX_HISTOGRAMS} per group, regressed and inconclusive tests first "
            "(the JSON report holds every test's).</p>"
        )
    return out


def _token_section(results: list[TestResult]) -> list[str]:
    """The "Token latency" section: the ITL histograms of the tests in no report group."""
    figures = _token_figures([r for r in results if not r.group and r.tokens])
    return ["<h2>Token latency</h2>", *figures] if figures else []


def _details(results: list[TestResult]) -> list[str]:
    details = detail_lines(results)
    if not details:
        return []
    out = ['<h2>Details</h2><ul class="details">']
    for r, lines in details:
        v = escape(verdict_cell(r))
        out.append(f'<li><code>{escape(r.nodeid)}</code> — <span class="v v-{v}">{v}</span><ul>')
        out += [f"<li>{escape(line)}</li>" for line in lines]
        out.append("</ul></li>")
    return out + ["</ul>"]


def render_html(results: list[TestResult], session: dict, hook: Any = None) -> str:
    """Header with verdict chips, verdict table and chart, group sections with plots (and
    their tests' inter-token latency histograms), token latency of ungrouped tests, details."""
    have_plots = plots.matplotlib_available()
    out = _header(results, session)
    if not have_plots:
        out.append(NO_PLOTS_NOTE)
    out += _verdicts(results, have_plots)
    for section in group_sections(results, hook):
        out += _section(section, hook, have_plots)
    if have_plots:
        out += _token_section(results)
    for extra in (work_section(results), detectable_section(results)):
        if extra is not None:
            out += _section(extra, hook, False)
    out += _details(results)
    fp = fingerprint_table(session)
    if fp is not None:
        out += ["<h2>Fingerprint</h2>", render_table(fp)]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
