"""Which section and plots each report group gets: a project's hook answer or the generic ones.

The report asks the ``pytest_llmperf_report_section`` and
``pytest_llmperf_report_plots`` hooks (:mod:`pytest_llmperf.hookspec`) once
per group, so a ``conftest.py`` can lay out its own scenarios' tables and
plots; a group no implementation claims gets the generic table and plot.
``hook`` is pytest's hook relay (``config.hook``), or None outside a pytest
session (then every group is generic).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..results import TestResult
from . import plots
from .tables import Section, generic_section

SECTION_HOOK = "pytest_llmperf_report_section"
PLOTS_HOOK = "pytest_llmperf_report_plots"


def ask_hook(hook: Any, name: str, group: str, results: list[TestResult]) -> Any:
    """The first non-None answer of hook ``name`` for this group, None without one."""
    caller = getattr(hook, name, None) if hook is not None else None
    if caller is None:
        return None
    return caller(group=group, results=results)


def by_group(results: list[TestResult]) -> dict[str, list[TestResult]]:
    """Results per report group, groups and members in run order."""
    groups: dict[str, list[TestResult]] = {}
    for r in results:
        groups.setdefault(r.group or "", []).append(r)
    return groups


def group_sections(results: list[TestResult], hook: Any = None) -> list[Section]:
    """One section per report group, by rank, then by name with the unnamed group last."""
    sections = []
    for group, members in by_group(results).items():
        section = ask_hook(hook, SECTION_HOOK, group, members)
        if section is None:
            section = generic_section(group, members)
        else:
            section = dataclasses.replace(section, group=group, results=members)
        sections.append(section)
    return sorted(sections, key=lambda s: (s.rank, s.group == "", s.group))


def section_plots(section: Section, hook: Any = None) -> list[plots.Plot]:
    """The plots under a section: the hook's (``[]`` for none), else the generic sweep plot.

    Callers check :func:`pytest_llmperf.output.plots.matplotlib_available` first.
    """
    answer = ask_hook(hook, PLOTS_HOOK, section.group, section.results)
    if answer is None:
        return plots.generic_plots(section.group, section.results)
    return list(answer)
