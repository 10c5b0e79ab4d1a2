"""The report's tables as data: a :class:`Table` is columns, text cells and alignment,
rendered alike by Markdown, HTML and the GitHub step summary.

Here: the verdict summary table, the generic table of any report group (with a
token table for its generations), and the small reads of a result that tables and
plots share (a metric in a unit, time statistics, the headline metric, verdict
counts). A project's own tables for a
group come from the ``pytest_llmperf_report_section`` hook (see
:mod:`pytest_llmperf.hookspec`) and are built with the same pieces.

No torch import here; numbers are formatted by :mod:`pytest_llmperf.units`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .. import units
from ..config import DEFAULT_TOLERANCES
from ..judge.outcome import Verdict, WorkGate
from ..results import Metric, Status, TestResult

#: The headline metric when nothing more specific is known, by name or suffix.
HEADLINE_PRIORITY = ("speedup", "scale.throughput", "throughput", "time")

#: Under the verdict table: what its headline and work columns show (the rule of
#: :func:`headline_metric`).
HEADLINE_NOTE = (
    "Headline: the gated metric that moved most against its baseline (the bad direction for "
    "a regression, the good one for an improvement, either for a pass), metrics past their "
    "tolerance first, time, throughput and memory before work counts. Work change: the work "
    "count that changed most, the likely cause (↑ higher is better, ↓ lower is better)."
)

#: The rank of a generic section; a hook's section with a lower rank comes first.
GENERIC_RANK = 100


# --------------------------------------------------------------------------- model


class Strong(str):
    """A table cell shown emphasised (bold), like the best cell of a pivot."""


@dataclass
class Table:
    """Columns and text rows; ``align`` is "l" or "r" per column."""

    columns: list[str]
    rows: list[list[str]]
    align: list[str]
    title: str = ""
    note: str = ""


@dataclass
class Section:
    """One report group: a heading and its tables.

    Sections sort by ``rank``, then by group name (the unnamed group last).
    ``group`` and ``results`` are filled in by the report for a hook's section.
    """

    title: str
    tables: list[Table] = field(default_factory=list)
    rank: int = GENERIC_RANK
    group: str = ""
    results: list[TestResult] = field(default_factory=list)


def make_table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> Table:
    """A table whose non-text cells become numbers and whose numeric columns align right."""
    cells = [[c if isinstance(c, str) else units.number(c) for c in row] for row in rows]
    align = []
    for j in range(len(columns)):
        col = [row[j] for row in cells if j < len(row) and row[j] not in ("-", "")]
        numeric = bool(col) and all(_looks_numeric(c) for c in col)
        align.append("r" if numeric else "l")
    return Table(columns=columns, rows=cells, align=align, title=title, note=note)


def _looks_numeric(cell: str) -> bool:
    text = cell.strip().split(" ")[0].rstrip("%").replace(",", "")
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- reading results


def short_name(nodeid: str) -> str:
    """The test part of a node id (``test_x[param]``)."""
    return nodeid.rsplit("::", 1)[-1]


def sort_key(value: Any) -> tuple:
    """Orders mixed parameter values: numbers (and bools) by value, then text."""
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def fingerprint_changes(result: TestResult) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` per fingerprint difference against the baseline, by key."""
    out = []
    for key, pair in sorted((result.fingerprint_diff or {}).items()):
        old, new = (
            (list(pair) + [None, None])[:2] if isinstance(pair, (list, tuple)) else (None, pair)
        )
        out.append((key, old, new))
    return out


def fingerprint_text(result: TestResult) -> str:
    """``key: old → new`` for each fingerprint difference, ``;``-separated."""
    return "; ".join(f"{key}: {old} → {new}" for key, old, new in fingerprint_changes(result))


def verdict_cell(result: TestResult) -> str:
    """The verdict as a table shows it ("-" before one is decided)."""
    return result.verdict.value if result.verdict is not None else "-"


def status_cell(result: TestResult) -> str:
    """``OK`` or ``OOM``."""
    return str(result.status or "").upper() or "-"


def verdict_counts(results: list[TestResult]) -> list[tuple[Verdict, int]]:
    """How many tests got each verdict, the most alarming first."""
    counts = Counter(r.verdict for r in results if r.verdict is not None)
    return sorted(counts.items(), key=lambda kv: kv[0].severity)


def counts_line(results: list[TestResult]) -> str:
    """``1 regression, 3 pass``: the one-line summary of a session."""
    if not results:
        return "no performance tests ran"
    return ", ".join(f"{n} {v}" for v, n in verdict_counts(results))


def find_metric(result: TestResult, suffix: str) -> Metric | None:
    """The metric named ``suffix``, else the first one whose name ends in ``.suffix``."""
    m = result.metrics.get(suffix)
    if m is not None:
        return m
    for name, metric in result.metrics.items():
        if name.endswith("." + suffix):
            return metric
    return None


def metric_in(result: TestResult, name: str, target: str | None = None) -> float | None:
    """A metric's value (converted to ``target``), None when absent, not finite or OOM."""
    m = result.metrics.get(name)
    if m is None or result.status == Status.OOM or not units.finite(m.value):
        return None
    return units.convert(m.value, m.unit, target) if target else m.value


def time_stats_ms(result: TestResult, name: str = "time") -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) in ms of a time metric's samples."""
    m = result.metrics.get(name)
    if m is None or result.status == Status.OOM:
        return None, None
    unit = m.unit or "s"
    xs = [units.convert(x, unit, "ms") for x in m.samples if units.finite(x)]
    if not xs:
        return (units.convert(m.value, unit, "ms") if units.finite(m.value) else None), None
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return statistics.fmean(xs), std


def baseline_change(metric: Metric, baseline: float | None) -> float | None:
    """Relative change against ``baseline``, ±inf for a change off a zero baseline (a work
    count from 0 syncs to 2 is a change, :func:`units.change` shows it as ``from zero``);
    None when either value is missing or not finite, or both are 0."""
    if not (units.finite(metric.value) and units.finite(baseline)):
        return None
    if baseline == 0:
        return None if metric.value == 0 else math.copysign(math.inf, metric.value)
    return units.relative_change(metric.value, baseline)


def _gated(result: TestResult) -> list[Metric]:
    """The metrics that decide the verdict; every metric when none is gated."""
    metrics = list(result.metrics.values())
    return [m for m in metrics if m.gated] or metrics


def main_metric(result: TestResult) -> Metric | None:
    """The test's main metric, whatever moved: a speedup or scale ratio, throughput, time
    (:data:`HEADLINE_PRIORITY`), else the first gated metric. Stable from run to run, so a
    sweep plots the same metric every time."""
    gated = _gated(result)
    for suffix in HEADLINE_PRIORITY:
        for m in gated:
            if m.name == suffix or m.name.endswith("." + suffix):
                return m
    return gated[0] if gated else None


def headline_key(result: TestResult, metric: Metric) -> tuple[bool, bool, float] | None:
    """How :func:`headline_metric` ranks ``metric``, smallest first: not past its tolerance,
    a work count, minus how far it moved. None without a baseline to move from.

    "Moved" is the relative change in the direction the verdict asks about: the bad one
    for a regression or inconclusive test (a throughput drop, a time or count rise), the
    good one for an improvement; for any other verdict (a pass) the size of the change
    either way, and no metric counts as past its tolerance (none decided the verdict).
    """
    rel = baseline_change(metric, result.baseline_values.get(metric.name))
    if rel is None:
        return None
    worse = -rel if metric.higher_is_better else rel
    if result.verdict in (Verdict.REGRESSION, Verdict.INCONCLUSIVE):
        moved = worse
    elif result.verdict is Verdict.IMPROVED:
        moved = -worse
    else:  # nothing decided the verdict: no metric is past its tolerance for it
        return (True, metric.kind == "work", -abs(worse))
    tolerance = metric.tolerance
    if tolerance is None:  # recorded without one: its kind's default
        tolerance = DEFAULT_TOLERANCES.get(metric.kind, DEFAULT_TOLERANCES["other"])
    return (not moved > tolerance, metric.kind == "work", -moved)


def headline_metric(result: TestResult) -> Metric | None:
    """The metric a one-line summary of ``result`` leads with.

    The rule: among the gated metrics with a baseline, rank (:func:`headline_key`)

    1. for a regression, inconclusive or improved test, metrics that moved past their
       tolerance in that direction (any change, for a work count) before those within
       it: the ones that decided the verdict;
    2. user-facing metrics (time, throughput, memory, ratios) before work counts: a 2x
       slowdown that doubles the ops leads with throughput -50%, and the count that grew
       (:func:`work_change`) is shown beside it as the cause; a count leads only when no
       user-facing metric moved past its tolerance (a work-only regression);
    3. the larger relative change in the direction the verdict asks about (the bad one for
       a regression or inconclusive test, the good one for an improvement, either for a
       pass); a tie goes to the metric recorded first.

    So a pass leads with its user-facing metric that moved most, and a count that moved
    shows in the work change column beside it.

    Without any baseline (a new test), the :func:`main_metric`.
    """
    gated = _gated(result)
    ranked = sorted(
        ((key, i, m) for i, m in enumerate(gated) if (key := headline_key(result, m)) is not None),
        key=lambda kim: (kim[0], kim[1]),
    )
    if ranked:
        return ranked[0][2]
    return main_metric(result)


def _work_order(metric: Metric) -> int:
    tail = metric.name.rsplit(".", 1)[-1]
    keys = [key for key, _ in WORK_COLUMNS]
    return keys.index(tail) if tail in keys else len(keys)


def work_change(result: TestResult) -> str:
    """The work count that changed most against its baseline, as the cause of what the
    headline shows: ``work.ops 3 → 6 (+100.0%)``, ``, +2 more`` when others changed too;
    "" when no count changed (or none has a baseline)."""
    changed = []
    for m in result.metrics.values():
        if m.kind != "work":
            continue
        base = result.baseline_values.get(m.name)
        rel = baseline_change(m, base)
        if rel is not None and rel != 0:
            changed.append((abs(rel), -_work_order(m), m, base, rel))
    if not changed:
        return ""
    _, _, m, base, rel = max(changed, key=lambda c: (c[0], c[1]))
    text = (
        f"{m.name} {units.quantity(base, m.unit)} → {units.quantity(m.value, m.unit)} "
        f"({units.change(rel)})"
    )
    return text + (f", +{len(changed) - 1} more" if len(changed) > 1 else "")


def efficiency_cell(metric: Metric | None) -> str:
    """MFU/MBU as a percentage with one decimal (recorded either as a fraction or in %), or
    ``-`` where it is not reported: decided where the terminal's note is
    (``roofline.calibration.recorded_efficiency``), so the outputs agree."""
    from ..roofline.calibration import recorded_efficiency

    return recorded_efficiency(metric).cell()


def efficiency_columns(results: list[TestResult]) -> list[str]:
    """``mfu`` and/or ``mbu`` when any result recorded them: optional table columns."""
    return [key for key in ("mfu", "mbu") if any(find_metric(r, key) is not None for r in results)]


def detail_lines(results: list[TestResult]) -> list[tuple[TestResult, list[str]]]:
    """Verdict lines and notes of every test that has something to say."""
    out = []
    for r in results:
        lines = list(r.verdict_lines) + list(r.notes)
        fp = fingerprint_text(r)
        if fp:
            lines.append(f"fingerprint differs from the baseline's: {fp}")
        if lines:
            out.append((r, lines))
    return out


def session_items(session: dict) -> list[tuple[str, str]]:
    """The report's header: device, tier, baseline file, start and duration, as plain
    text (each renderer escapes it)."""
    device = session.get("device") or {}
    if isinstance(device, dict):
        dev = device.get("name") or "-"
        if device.get("key"):
            dev += f" (key {device['key']})"
    else:
        dev = str(device)
    items = [("Device", dev), ("Tier", str(session.get("tier") or "-"))]
    items.append(("Baseline file", str(session.get("baseline_file") or "-")))
    if session.get("started") is not None:
        items.append(("Started", str(session.get("started"))))
    dur = session.get("duration_s")
    if units.finite(dur):
        items.append(("Duration", f"{dur:.1f} s"))
    return items


# --------------------------------------------------------------------------- tables


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
    return work_change(result) if headline is not None and headline.kind != "work" else ""


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


#: The token table's columns: (metric name after the measurement's prefix, heading), the
#: metrics ``measure.generation.generation_metrics`` records; prefill only when some
#: generation gave its prompt length.
TOKEN_COLUMNS = (
    ("ttft", "TTFT"),
    ("tpot", "TPOT"),
    ("itl_p50", "ITL p50"),
    ("itl_p90", "ITL p90"),
    ("itl_p99", "ITL p99"),
    ("itl_tail", "p99/p50"),
    ("itl_max", "ITL max"),
    ("prefill_throughput", "prefill"),
    ("decode_throughput", "decode"),
    ("throughput", "throughput"),
    ("e2e_latency", "end to end"),
    ("output_tokens", "tokens"),
)
_OPTIONAL_TOKEN_COLUMNS = ("prefill_throughput",)


def token_metrics(result: TestResult) -> dict[str, dict[str, Metric]]:
    """Per generation measured (``result.tokens``): its token metrics by column key."""
    out = {}
    for name in result.tokens:
        prefix = f"{name}." if name else ""
        found = {
            key: result.metrics[prefix + key]
            for key, _ in TOKEN_COLUMNS
            if prefix + key in result.metrics
        }
        if found:
            out[name] = found
    return out


def _token_metric_names(result: TestResult) -> set[str]:
    """The full names of the metrics :func:`token_table` shows for ``result``."""
    return {
        (f"{name}." if name else "") + key
        for name, found in token_metrics(result).items()
        for key in found
    }


def token_table(results: list[TestResult]) -> Table | None:
    """One row per generation measured (``llmperf.generation``, each side of a
    generation A/B): TTFT, TPOT, ITL percentiles, throughputs, tokens. None without any.

    Rows per measurement rather than columns per metric name: a group's results table
    would otherwise grow eleven columns per generation (``s.reference.itl_p99``, ...).
    A project's report section can add it beside its own tables.
    """
    rows = [
        (r, name, found, r.tokens.get(name) or {})
        for r in results
        for name, found in token_metrics(r).items()
    ]
    if not rows:
        return None
    shown = [
        (key, title)
        for key, title in TOKEN_COLUMNS
        if key not in _OPTIONAL_TOKEN_COLUMNS or any(key in f for _, _, f, _ in rows)
    ]
    with_base = {
        key
        for key, _ in shown
        for r, _, found, _ in rows
        if key in found and found[key].name in r.baseline_values
    }
    table_rows = []
    for r, name, found, record in rows:
        gens = record.get("generations") if isinstance(record, dict) else None
        cells = [short_name(r.nodeid), name or "-", units.number(gens)]
        oom = r.status == Status.OOM
        for key, _ in shown:
            m = found.get(key)
            if key in with_base:
                base = r.baseline_values.get(m.name) if m is not None else None
                cells.append("-" if base is None else units.quantity(base, m.unit))
            cells.append("-" if m is None or oom else units.quantity(m.value, m.unit))
        table_rows.append(cells)
    titles = [title for _, title in shown]
    columns = ["test", "measurement", "generations"]
    columns += with_baselines(titles, [title for key, title in shown if key in with_base])
    note = (
        "Per generation: TTFT from the call to the first token, TPOT the mean interval "
        "after it, ITL percentiles over every interval of every generation, tokens per "
        "generation (median, every sequence of the batch); throughputs in tokens/s; "
        "a baseline beside each metric that has one."
    )
    return make_table("Token latency", columns, table_rows, note)


def with_baselines(columns: list[str], with_base: list[str]) -> list[str]:
    """The column names with ``<name> baseline`` before each one in ``with_base``: a
    metric's baseline beside its current value, in every table of metrics."""
    out: list[str] = []
    for name in columns:
        out += [f"{name} baseline", name] if name in with_base else [name]
    return out


def nodeid_file(nodeid: str) -> str:
    """The file part of a node id (``tests/test_mine.py``)."""
    return nodeid.split("::", 1)[0]


def generic_tables(results: list[TestResult]) -> list[Table]:
    """Any group's table: the test (its node id when the group spans files), its params,
    every metric (MFU/MBU last) with its baseline before it where any test has one, status,
    verdict; a generation's token metrics in a :func:`token_table` below it."""
    params: list[str] = []
    metrics: list[str] = []
    in_token_table = [_token_metric_names(r) for r in results]
    for r, elsewhere in zip(results, in_token_table, strict=True):
        params += [k for k in r.params if k not in params]
        # Work counts have a table of their own (``work_section``), token metrics too.
        metrics += [
            k
            for k, m in r.metrics.items()
            if k not in metrics and m.kind != "work" and k not in elsewhere
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


#: The work table's columns: (metric tail, heading); compile and kernel columns only when
#: some test has them.
WORK_COLUMNS = (
    ("ops", "ops"),
    ("flops", "FLOPs"),
    ("bytes", "bytes"),
    ("syncs", "syncs"),
    ("copies", "copies"),
    ("tensor_peak", "tensor peak"),
    ("graphs", "graphs"),
    ("graph_breaks", "graph breaks"),
    ("recompiles", "recompiles"),
    ("kernels", "kernels"),
)
_ALWAYS = 6


def work_section(results: list[TestResult]) -> Section | None:
    """Every measurement's work signature: the counts the work gate compares, and the
    operators called most, so a reader sees what a test does without a profiler."""
    rows: list[tuple[TestResult, str, dict[str, Metric], dict[str, int]]] = []
    for r in results:
        for name in sorted(r.work):
            prefix = f"{name}.work." if name else "work."
            counts = {k[len(prefix) :]: m for k, m in r.metrics.items() if k.startswith(prefix)}
            if counts:
                rows.append((r, name, counts, r.work[name].get("ops", {})))
    if not rows:
        return None
    shown = [
        (key, title)
        for i, (key, title) in enumerate(WORK_COLUMNS)
        if i < _ALWAYS or any(key in counts for _, _, counts, _ in rows)
    ]
    # A count equal to its baseline needs no baseline beside it (counts are exact).
    changed = {
        key
        for key, _ in shown
        for r, _, counts, _ in rows
        if key in counts and baseline_change(counts[key], r.baseline_values.get(counts[key].name))
    }
    table_rows = []
    for r, name, counts, ops in rows:
        cells = [short_name(r.nodeid), name or "-"]
        for key, _ in shown:
            m = counts.get(key)
            if key in changed:
                base = r.baseline_values.get(m.name) if m is not None else None
                cells.append("-" if base is None else units.quantity(base, m.unit))
            cells.append(units.quantity(m.value, m.unit) if m is not None else "-")
        top = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        cells.append(", ".join(f"{op.removeprefix('aten.')} x{n}" for op, n in top) or "-")
        table_rows.append(cells)
    titles = [title for _, title in shown]
    columns = ["test", "measurement"]
    columns += with_baselines(titles, [t for k, t in shown if k in changed]) + ["most called"]
    note = (
        "Counted in one call outside the timed rounds; the same on every machine of this "
        "device type with the same torch, and gated exactly (any growth is a regression). "
        "A baseline column beside each count that differs from its baseline in some test."
    )
    return Section("Work signature", [make_table("", columns, table_rows, note)])


def detectable_section(results: list[TestResult]) -> Section | None:
    """What each timed gate could see in this run: the smallest change its samples would
    show (``judge.detectable``) beside its tolerance, the blind ones first."""
    from ..judge.detectable import can_see, sees_line

    rows = sorted(
        (
            (mdc > tol, short_name(r.nodeid), name, mdc, tol, r.detectable_why.get(name, ""))
            for r in results
            for name, (mdc, tol) in r.detectable.items()
        ),
        key=lambda row: (not row[0], -row[3] / row[4] if row[4] else 0, row[1]),
    )
    if not rows:
        return None
    table_rows = [
        [test, name, can_see(mdc, why), units.percent(tol), "no" if blind else "yes"]
        for blind, test, name, mdc, tol, why in rows
    ]
    note = (
        "The smallest change (80% power, one-sided 1%) that the gate's samples would show, "
        "floored by the baseline's run-to-run spread; a gate above its tolerance passes "
        "changes it cannot see (--llmperf-strict fails it). E.g. "
        + sees_line(rows[0][3], rows[0][4], rows[0][5])
        + "."
    )
    columns = ["test", "metric", "can see", "tolerance", "sees its tolerance"]
    return Section("What each gate can see", [make_table("", columns, table_rows, note)])


def detectable_line(results: list[TestResult]) -> str | None:
    """One summary line: how many timed gates see their tolerance, the worst one named."""
    pairs = [
        (mdc, tol, r.nodeid, n, r.detectable_why.get(n, ""))
        for r in results
        for n, (mdc, tol) in r.detectable.items()
    ]
    if not pairs:
        return None
    blind = [p for p in pairs if p[0] > p[1]]
    worst = max(pairs, key=lambda p: p[0] / p[1] if p[1] else p[0])
    from ..judge.detectable import sees_line

    return (
        f"what the timed gates can see: {len(pairs) - len(blind)} of {len(pairs)} see their "
        f"tolerance; least: {short_name(worst[2])} {worst[3]} {sees_line(worst[0], worst[1], worst[4])}"
    )


def work_gate_lines(results: list[TestResult]) -> list[str]:
    """How many tests the work gate decided, then one line per dispatch-context difference
    under which it only informed (counts differ from another context's entry)."""
    seen = Counter(r.work_gate for r in results if r.work_gate)
    if not seen:
        return []
    exact, equal = seen[WorkGate.EXACT], seen[WorkGate.EQUAL]
    against = [f"{exact} against an entry of this dispatch context"] if exact else []
    if equal:
        against.append(f"{equal} against another context's entry with equal counts")
    lines = [f"work gate: {exact + equal} of {len(results)} tests gated" + ": " * bool(against)]
    lines[0] += ", ".join(against)
    informed = Counter(r.work_context for r in results if r.work_gate == WorkGate.INFORMED)
    for differs, n in sorted(informed.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(
            f"work gate: {n} test{'s' if n != 1 else ''} only informed, counts differ from "
            f"an entry of another dispatch context ({differs}); record this context with "
            "--llmperf-update-baselines"
        )
    return lines
