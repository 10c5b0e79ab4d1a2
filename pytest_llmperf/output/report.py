"""``--llmperf-report=PATH``: the session's results as Markdown, JSON or HTML.

The format follows the suffix of the path. Each report group gets the section a
``pytest_llmperf_report_section`` hook returns (the shipped scenario suite
registers its reference tables so, in ``tests/benchmarks/conftest.py``), else a
generic table of its params and metrics (:mod:`pytest_llmperf.output.sections`).

No torch import here; matplotlib (for the HTML's plots) is imported lazily by
:mod:`pytest_llmperf.output.plots` and is optional.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..results import TestResult
from .files import write_text
from .html import render_html
from .json_report import render_json
from .markdown import render_markdown

REPORT_SUFFIXES = (".md", ".json", ".html")

_RENDERERS: dict[str, Callable[[list[TestResult], dict, Any], str]] = {
    ".md": render_markdown,
    ".json": render_json,
    ".html": render_html,
}


def render_report(suffix: str, results: list[TestResult], session: dict, hook: Any = None) -> str:
    """The report's text in the format of ``suffix`` (one of :data:`REPORT_SUFFIXES`)."""
    return _RENDERERS[suffix.lower()](list(results), dict(session or {}), hook)


def write_report(
    path: str | Path, results: list[TestResult], session: dict, hook: Any = None
) -> None:
    """Write the report for ``results``; the format follows the suffix of ``path``.

    ``session`` holds device ``{key, name}``, fingerprint, tier, baseline_file,
    started and duration_s; ``hook`` is pytest's hook relay (``config.hook``),
    which lets conftest.py files lay out their groups, or None.
    Raises ValueError for a suffix other than :data:`REPORT_SUFFIXES`, OSError when the
    file cannot be written (its missing directories are created).
    """
    path = Path(path)
    if path.suffix.lower() not in _RENDERERS:
        raise ValueError(
            f"cannot write an llmperf report to {str(path)!r}: unsupported suffix "
            f"{path.suffix!r}; use one of {', '.join(REPORT_SUFFIXES)}"
        )
    text = render_report(path.suffix, results, session, hook)
    write_text(path, text)
