"""The report's tables as data: a :class:`Table` is columns, text cells and alignment,
rendered alike by Markdown, HTML and the GitHub step summary.

Here: the verdict summary table, the fingerprint table and the generic table of any
report group. A project's own tables for a group come from the
``pytest_llmperf_report_section`` hook (see :mod:`pytest_llmperf.hookspec`) and are
built with the same pieces, all importable from here: the model
(:mod:`.table_model`), the reads of a result (:mod:`.result_reads`), the headline rule
(:mod:`.headline`), the token, work and detectable tables (:mod:`.token_table`,
:mod:`.work_table`, :mod:`.detectable_table`).

No torch import here; numbers are formatted by :mod:`pytest_llmperf.units`.
"""

from __future__ import annotations

from .. import units
from ..judge.outcome import Verdict
from ..metrics import Kind
from ..results import Metric, Status, TestResult
from .detectable_table import detectable_line, detectable_section
from .headline import (
    HEADLINE_NOTE,
    HEADLINE_PRIORITY,
    headline_key,
    headline_metric,
    main_metric,
    work_change,
)
from .result_reads import (
    baseline_change,
    counts_line,
    detail_lines,
    efficiency_cell,
    efficiency_columns,
    find_metric,
    fingerprint_changes,
    fingerprint_text,
    metric_in,
    nodeid_file,
    session_items,
    short_name,
    sort_key,
    status_cell,
    time_stats_ms,
    verdict_cell,
    verdict_counts,
)
from .table_model import GENERIC_RANK, Section, Strong, Table, make_table, with_baselines
from .token_table import TOKEN_COLUMNS, token_metric_names, token_metrics, token_table
from .work_table import WORK_COLUMNS, work_gate_lines, work_section

__all__ = [
    "GENERIC_RANK",
    "HEADLINE_NOTE",
    "HEADLINE_PRIORITY",
    "TOKEN_COLUMNS",
    "WORK_COLUMNS",
    "Section",
    "Strong",
    "Table",
    "baseline_change",
    "counts_line",
    "detail_lines",
    "detectable_line",
    "detectable_section",
    "efficiency_cell",
    "efficiency_columns",
    "find_metric",
    "fingerprint_changes",
    "fingerprint_table",
    "fingerprint_text",
    "generic_section",
    "generic_tables",
    "headline_key",
    "headline_metric",
    "main_metric",
    "make_table",
    "metric_in",
    "nodeid_file",
    "session_items",
    "short_name",
    "sort_key",
    "status_cell",
    "summary_table",
    "time_stats_ms",
    "token_metrics",
    "token_table",
    "ungrouped_title",
    "verdict_cell",
    "verdict_counts",
    "with_baselines",
    "work_change",
    "work_gate_lines",
    "work_section",
]


def fingerprint_table(session: dict) -> Table | None:
    """The session's fingerprint as a key/value table, None when there is none."""
    fp = session.get("fingerprint") or {}
    if not fp:
        return None
    return make_table("", ["key", "value"], [[str(k), str(v)] for k, v in sorted(fp.items())])


def summary_table(results: list[TestResult]) -> Table:
    """Test, verdict, fingerprint change (when any), headline metric, baseline, current,
    change, and the work change that explains it (when any test's work changed).

    Rows are ordered by verdict, the most alarming first (:attr:`Verdict.severity`),
    in run order within a verdict.
    """
    with_fp = any(r.fingerprint_diff for r in results)
    heads = [headline_metric(r) for r in results]
    causes = [_cause(r, m) for r, m in zip(results, heads, strict=True)]
    with_work = any(causes)
    columns = ["test", "verdict"]
    if with_fp:
        columns.append("fingerprint change")
    columns += ["headline metric", "baseline", "current", "change"]
    if with_work:
        columns.append("work change")
    rows = []
    for i in sorted(range(len(results)), key=lambda i: _severity(results[i])):
        r = results[i]
        row = [r.nodeid, verdict_cell(r)]
        if with_fp:
            row.append(fingerprint_text(r) or "-")
        row += _headline_cells(r, heads[i])
        if with_work:
            row.append(causes[i] or "-")
        rows.append(row)
    table = make_table("Verdicts", columns, rows)
    table.align[columns.index("change")] = "r"
    return table


def _severity(result: TestResult) -> int:
    return result.verdict.severity if result.verdict is not None else len(Verdict)


def _cause(result: TestResult, headline: Metric | None) -> str:
    """:func:`work_change` beside a headline that is not itself a work count."""
    return work_change(result) if headline is not None and headline.kind != Kind.WORK else ""


def _headline_cells(result: TestResult, m: Metric | None) -> list[str]:
    """Headline metric ``m`` (:func:`headline_metric`) with its direction, baseline, current
    value and change."""
    if m is None:
        return ["-", "-", "-", "-"]
    base = result.baseline_values.get(m.name)
    arrow = "↑" if m.higher_is_better else "↓"
    oom = result.status == Status.OOM and not m.samples
    return [
        f"{m.name} {arrow}",
        units.quantity(base, m.unit) if base is not None else "-",
        "-" if oom else units.quantity(m.value, m.unit),
        "-" if oom else units.change(baseline_change(m, base)),
    ]


def generic_tables(results: list[TestResult]) -> list[Table]:
    """Any group's table: the test (its node id when the group spans files), its params,
    every metric (MFU/MBU last) with its baseline before it where any test has one, status,
    verdict; a generation's token metrics in a :func:`token_table` below it."""
    params: list[str] = []
    metrics: list[str] = []
    in_token_table = [token_metric_names(r) for r in results]
    for r, elsewhere in zip(results, in_token_table, strict=True):
        params += [k for k in r.params if k not in params]
        # Work counts have a table of their own (``work_section``), token metrics too.
        metrics += [
            k
            for k, m in r.metrics.items()
            if k not in metrics and m.kind != Kind.WORK and k not in elsewhere
        ]
    eff = [m for m in metrics if m.split(".")[-1] in ("mfu", "mbu")]
    metrics = [m for m in metrics if m not in eff] + eff
    with_base = [
        n for n in metrics if n not in eff and any(n in r.baseline_values for r in results)
    ]
    unit_of = {n: m.unit for r in results for n, m in r.metrics.items()}
    columns = ["test"] + params + with_baselines(metrics, with_base) + ["status", "verdict"]
    rows = []
    one_file = len({nodeid_file(r.nodeid) for r in results}) <= 1
    for r, elsewhere in zip(results, in_token_table, strict=True):
        row = [short_name(r.nodeid) if one_file else r.nodeid]
        row += [units.number(r.params[p]) if p in r.params else "-" for p in params]
        for name in metrics:
            if name in with_base:
                base = r.baseline_values.get(name) if name not in elsewhere else None
                row.append("-" if base is None else units.quantity(base, unit_of.get(name, "")))
            m = r.metrics.get(name) if name not in elsewhere else None
            if m is None:
                row.append("-")
            elif name in eff:
                row.append(efficiency_cell(m))
            else:
                row.append(units.quantity(m.value, m.unit))
        rows.append(row + [status_cell(r), verdict_cell(r)])
    tokens = token_table(results)
    return [make_table("Results", columns, rows)] + ([tokens] if tokens is not None else [])


def ungrouped_title(results: list[TestResult]) -> str:
    """The title of the tests in no report group: their file when they share one (the
    user's own ``tests/test_mine.py``), else ``Performance tests``."""
    files = {nodeid_file(r.nodeid) for r in results}
    return files.pop() if len(files) == 1 else "Performance tests"


def generic_section(group: str, results: list[TestResult]) -> Section:
    """The section of a group no hook claimed: ``Group: name``; for the tests in no group
    :func:`ungrouped_title`."""
    title = f"Group: {group}" if group else ungrouped_title(results)
    return Section(title=title, tables=generic_tables(results), group=group, results=results)
