"""Hooks through which a project lays out its own report groups.

A test's report group is ``@pytest.mark.llmperf(group=...)`` (or ``llmperf.group``).
``--llmperf-report`` writes one section per group; by default a generic table
of the group's params and metrics and, in HTML, a plot of the headline metric
against the first numeric parameter that varies. A ``conftest.py`` (or plugin)
that knows its scenarios implements these hooks to show them the way its
readers expect, as the shipped suite does in ``tests/benchmarks/conftest.py``::

    from pytest_llmperf.output.tables import Section, make_table

    def pytest_llmperf_report_section(group, results):
        if group != "attention":
            return None  # not mine: the generic table
        rows = [[r.params["seq"], r.metrics["time"].value * 1e3] for r in results]
        return Section("Attention kernels", [make_table("By length", ["seq", "ms"], rows)])

Both hooks are ``firstresult``: the first implementation that returns
something other than None decides. They run once per group when the report is
written, at the end of the session (in the xdist controller), so they must be
registered there: in a conftest.py that pytest loads for the run's paths, or a
plugin. Like the report, they must not need torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .output.plots import Plot
    from .output.tables import Section
    from .results import TestResult


@pytest.hookspec(firstresult=True)
def pytest_llmperf_report_section(group: str, results: list[TestResult]) -> Section | None:
    """The report section of one group: its title, tables and place among the sections.

    :param group: the report group's name ("" for tests that set none).
    :param results: the group's results in run order (verdicts decided).
    :return: a :class:`pytest_llmperf.output.tables.Section` (title, tables
        built with :func:`~pytest_llmperf.output.tables.make_table`, and a
        ``rank``: sections sort by rank, generic ones have
        :data:`~pytest_llmperf.output.tables.GENERIC_RANK`), or None to leave
        the group to the generic table. The report fills in the section's
        ``group`` and ``results``.
    """


@pytest.hookspec(firstresult=True)
def pytest_llmperf_report_plots(group: str, results: list[TestResult]) -> list[Plot] | None:
    """The plots of one group in the HTML report, under its tables.

    Called only when matplotlib is available. Draw with matplotlib's
    object-oriented API (:func:`pytest_llmperf.output.plots.new_figure` and
    :func:`~pytest_llmperf.output.plots.to_png`), never pyplot, so the test
    session's backend is left alone.

    :param group: the report group's name ("" for tests that set none).
    :param results: the group's results in run order.
    :return: a list of :class:`pytest_llmperf.output.plots.Plot` (``[]`` for
        no plots), or None to leave the group to the generic plot.
    """
