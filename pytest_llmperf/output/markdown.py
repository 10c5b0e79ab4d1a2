"""The report as Markdown: readable as text, rendered by GitHub and in the job summary.

Every text that comes from a run (test ids, params, group names, metric names, notes,
verdict lines, the device) goes through :func:`escape`, as in the GitHub step summary
(``exporters.github_step_summary``): GitHub renders the HTML and the links in Markdown,
so a test id like ``test_x[<script>...]`` or ``test_x[![i](https://...)]`` must stay text.
"""

from __future__ import annotations

import re
from typing import Any

from ..results import TestResult
from .sections import group_sections
from .tables import (
    HEADLINE_NOTE,
    Section,
    Strong,
    Table,
    counts_line,
    detail_lines,
    detectable_section,
    fingerprint_table,
    session_items,
    summary_table,
    verdict_cell,
    work_section,
)

#: HTML's three, as entities: no tag and no ``<http://...>`` autolink reaches GitHub.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: What :func:`escape` replaces, in one pass; all but the entities get a backslash:
#:
#: - ``[ ] !`` (a link or a remote image), ``* ~`` (emphasis, strikethrough), backticks
#:   (a code span), ``#`` (a heading) and ``|`` (the end of a table cell), always;
#: - ``_`` unless inside a word: ``test_x`` can never be emphasis (CommonMark's
#:   flanking rules) and stays readable as text;
#: - ``(`` right after ``]`` (a link's destination). With every ``[`` escaped no link
#:   can open, so ``(`` and ``)`` elsewhere are left as they are: ``time (ms)``;
#: - a backslash before punctuation or at the end (where Markdown would read it as an
#:   escape, undoing ours, or of the ``*``/``_``/``<`` a caller wraps the text in).
#:   A backslash before anything else is shown as it is.
_ESCAPED = re.compile(
    r"[&<>]|[\[\]!*~#`|]|\\(?=[!-/:-@\[-`{-~]|\Z)|(?<=\])\(|_(?![^\W_])|(?<![^\W_])_"
)
#: Line breaks: Markdown's (CR, LF, CRLF) and the others ``str.splitlines`` sees.
_NEWLINES = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    c = match.group()
    return _ENTITIES.get(c) or "\\" + c


def escape(text: Any) -> str:
    """``text`` shown as itself in Markdown, as one line: in a table cell, a heading, a
    list item or between ``**``/``_``/``<code>`` of the caller's.

    Every Markdown output (the report, the GitHub step summary) puts each text that came
    from a run through this one function: a test id such as ``test_x[![i](https://...)]``
    must not become a link or a remote image, nor a ``|`` split a row. No text is
    dropped: ``<``, ``>`` and ``&`` become entities, markup characters get a backslash
    (see ``_ESCAPED``) and line breaks become spaces (a row stays one row); GitHub shows
    the text as it was.
    """
    one_line = _NEWLINES.sub(" ", str(text))
    return _ESCAPED.sub(_escaped, one_line)


def render_table(table: Table) -> str:
    """A pipe table with padded columns, numeric ones right-aligned; :class:`Strong` in bold."""
    cells = [
        [f"**{escape(c)}**" if isinstance(c, Strong) else escape(c) for c in row]
        for row in table.rows
    ]
    header = [escape(c) for c in table.columns]
    widths = [
        max([len(header[j]), 3] + [len(row[j]) for row in cells if j < len(row)])
        for j in range(len(header))
    ]

    def line(row: list[str]) -> str:
        out = []
        for j, w in enumerate(widths):
            c = row[j] if j < len(row) else ""
            out.append(c.rjust(w) if table.align[j] == "r" else c.ljust(w))
        return "| " + " | ".join(out) + " |"

    rule = "|".join(
        ("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
        for w, a in zip(widths, table.align, strict=False)
    )
    return "\n".join([line(header), f"|{rule}|"] + [line(row) for row in cells])


def _section(section: Section) -> list[str]:
    out = [f"## {escape(section.title)}", ""]
    for table in section.tables:
        out += [f"### {escape(table.title)}", ""] if table.title else []
        if table.note:
            out += [f"_{escape(table.note)}_", ""]
        out += [render_table(table), ""]
    return out


def _details(results: list[TestResult]) -> list[str]:
    details = detail_lines(results)
    if not details:
        return []
    out = ["## Details", ""]
    for r, lines in details:
        out.append(f"- {escape(r.nodeid)} — **{escape(verdict_cell(r))}**")
        out += [f"  - {escape(line)}" for line in lines]
    return out + [""]


def render_markdown(results: list[TestResult], session: dict, hook: Any = None) -> str:
    """Header, verdict table, one section per group, details and the fingerprint."""
    out = ["# pytest-llmperf report", ""]
    out += [f"- **{k}:** {escape(v)}" for k, v in session_items(session)]
    out += [f"- **Verdicts:** {counts_line(results)}", "", "## Verdicts", ""]
    if results:
        out += [render_table(summary_table(results)), "", HEADLINE_NOTE, ""]
    else:
        out += ["No performance tests ran.", ""]
    for section in group_sections(results, hook):
        out += _section(section)
    for extra in (work_section(results), detectable_section(results)):
        if extra is not None:
            out += _section(extra)
    out += _details(results)
    fp = fingerprint_table(session)
    if fp is not None:
        out += ["## Fingerprint", "", render_table(fp), ""]
    return "\n".join(out).rstrip() + "\n"
