"""``--llmperf-report=PATH``: the session's results as Markdown, JSON or HTML.

The tables reproduce the shapes of the published reference results
(``../shared/reference``): the Transformer LM sweep (001) with mean/std per
configuration and OK/OOM status, decode rows of tok/s, mem/s, peak memory and
model size (003), the A/B latency/throughput/peak-memory tables and the
batch x prompt pivots of scale (004), and estimated vs measured with error % (000).
Any other group gets a generic table of its params and metrics.

No torch import here; matplotlib (for the HTML's plots) is imported lazily by
:mod:`pytest_llmperf.plots` and is optional.
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import STATUS_OOM, Metric, TestResult

REPORT_SUFFIXES = (".md", ".json", ".html")

#: Verdicts from the most to the least alarming (the order of the counts line).
VERDICT_ORDER = (
    "regression",
    "new-status",
    "oom",
    "inconclusive",
    "improved",
    "no-baseline",
    "pass",
)

#: Report sections in this order; other groups follow alphabetically.
GROUP_ORDER = ("transformer_lm", "llama_decode", "kv_cache", "batched_generation", "estimator")
GROUP_TITLES = {
    "transformer_lm": "Transformer LM forward / forward+backward sweep (reference 001/002)",
    "llama_decode": "LLM decode throughput with quantization (reference 003)",
    "kv_cache": "KV cache quantization (reference 003, KV cache section)",
    "batched_generation": "Batched generation: two schedules side by side (reference 004)",
    "estimator": "Estimator vs measurement (reference 000)",
}

#: The headline metric when nothing more specific is known, by name or suffix.
HEADLINE_PRIORITY = ("speedup", "scale.throughput", "throughput", "time")

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_BYTE_UNITS = {
    "b": 1.0,
    "byte": 1.0,
    "bytes": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "kib": 2.0**10,
    "mib": 2.0**20,
    "gib": 2.0**30,
    "tib": 2.0**40,
}


# --------------------------------------------------------------------------- helpers


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def convert(value: float | None, unit: str, target: str) -> float | None:
    """``value`` in ``unit`` expressed in ``target`` (time or byte units).

    A unit that is unknown or of another kind than ``target`` leaves the value
    as it is (the metric is then assumed to be recorded in ``target`` already).
    """
    if value is None:
        return None
    u, t = (unit or "").strip(), target.strip()
    if u in _TIME_UNITS and t in _TIME_UNITS:
        return value * _TIME_UNITS[u] / _TIME_UNITS[t]
    ul, tl = u.lower(), t.lower()
    if ul in _BYTE_UNITS and tl in _BYTE_UNITS:
        return value * _BYTE_UNITS[ul] / _BYTE_UNITS[tl]
    return value


def fmt_num(value: Any, digits: int = 2) -> str:
    """A number for a table cell: fixed decimals, scientific when tiny or huge."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e7 or a < 10.0 ** (-digits):
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def fmt_qty(value: float | None, unit: str = "") -> str:
    """Value with its unit, times and bytes scaled to a readable unit."""
    if value is None or not _finite(value):
        return "-" if value is None else str(value)
    u = (unit or "").strip()
    if u in _TIME_UNITS:
        s = value * _TIME_UNITS[u]
        for name, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
            if abs(s) >= scale:
                return f"{fmt_num(s / scale)} {name}"
        return f"{fmt_num(s / 1e-9)} ns"
    if u.lower() in ("b", "byte", "bytes"):
        b = value
        for name, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(b) >= scale:
                return f"{fmt_num(b / scale)} {name}"
        return f"{fmt_num(b, 0)} B"
    return f"{fmt_num(value)} {u}".strip()


def fmt_efficiency(metric: Metric | None) -> str:
    """MFU/MBU as a percentage (recorded either as a fraction or in %)."""
    if metric is None or not _finite(metric.value):
        return "-"
    unit = (metric.unit or "").strip().lower()
    pct = metric.value if unit in ("%", "percent") else metric.value * 100.0
    return f"{pct:.1f}%"


def relative_change(current: float | None, baseline: float | None) -> float | None:
    if not (_finite(current) and _finite(baseline)) or baseline == 0:
        return None
    return (current - baseline) / abs(baseline)


def fmt_change(current: float | None, baseline: float | None) -> str:
    rel = relative_change(current, baseline)
    return "-" if rel is None else f"{rel * 100:+.1f}%"


def short_name(nodeid: str) -> str:
    """The test part of a node id (``test_x[param]``)."""
    return nodeid.rsplit("::", 1)[-1]


def fingerprint_text(result: TestResult) -> str:
    """``key: old -> new`` for each fingerprint difference, ``;``-separated."""
    parts = []
    for key, pair in sorted((result.fingerprint_diff or {}).items()):
        old, new = (
            (list(pair) + [None, None])[:2] if isinstance(pair, (list, tuple)) else (None, pair)
        )
        parts.append(f"{key}: {old} → {new}")
    return "; ".join(parts)


def verdict_counts(results: list[TestResult]) -> list[tuple[str, int]]:
    counts = Counter(r.verdict or "undecided" for r in results)
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def counts_line(results: list[TestResult]) -> str:
    if not results:
        return "no performance tests ran"
    return ", ".join(f"{n} {v}" for v, n in verdict_counts(results))


def _find(result: TestResult, name: str) -> Metric | None:
    return result.metrics.get(name)


def _find_suffix(result: TestResult, suffix: str) -> Metric | None:
    m = result.metrics.get(suffix)
    if m is not None:
        return m
    for name, metric in result.metrics.items():
        if name.endswith("." + suffix):
            return metric
    return None


def adverse_change(metric: Metric, baseline: float | None) -> float | None:
    """Relative change where positive means worse (direction-aware)."""
    rel = relative_change(metric.value, baseline)
    if rel is None:
        return None
    return -rel if metric.higher_is_better else rel


def headline_metric(result: TestResult) -> Metric | None:
    """The metric a one-line summary of ``result`` shows.

    For a regression the gated metric that got worst against its baseline, for
    an improvement the one that got best; otherwise by name: a speedup or
    scale ratio, throughput, time; else the first gated metric.
    """
    metrics = list(result.metrics.values())
    gated = [m for m in metrics if m.gated] or metrics
    if not gated:
        return None
    if result.verdict in ("regression", "improved"):
        scored = [
            (adverse_change(m, result.baseline_values.get(m.name)), m)
            for m in gated
            if m.name in result.baseline_values
        ]
        scored = [(s, m) for s, m in scored if s is not None]
        if scored:
            if result.verdict == "regression":
                return max(scored, key=lambda sm: sm[0])[1]
            return min(scored, key=lambda sm: sm[0])[1]
    for suffix in HEADLINE_PRIORITY:
        for m in gated:
            if m.name == suffix or m.name.endswith("." + suffix):
                return m
    return gated[0]


def time_stats_ms(result: TestResult, name: str = "time") -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) in ms of a time metric's samples."""
    m = _find(result, name)
    if m is None or result.status == STATUS_OOM:
        return None, None
    xs = [convert(x, m.unit or "s", "ms") for x in m.samples if _finite(x)]
    if not xs:
        return (convert(m.value, m.unit or "s", "ms") if _finite(m.value) else None), None
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return statistics.fmean(xs), std


def metric_in(result: TestResult, name: str, target: str | None = None) -> float | None:
    """A metric's value (converted to ``target``), None when absent or OOM."""
    m = _find(result, name)
    if m is None or result.status == STATUS_OOM or not _finite(m.value):
        return None
    return convert(m.value, m.unit, target) if target else m.value


def _efficiency_columns(results: list[TestResult]) -> list[str]:
    cols = []
    for key in ("mfu", "mbu"):
        if any(_find_suffix(r, key) is not None for r in results):
            cols.append(key)
    return cols


def _status(result: TestResult) -> str:
    return (result.status or "").upper() or "-"


def _sort_key_value(value: Any) -> tuple:
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, str(value))


# --------------------------------------------------------------------------- tables


class Strong(str):
    """A table cell shown emphasised (bold), like the best cell of a pivot."""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    #: "l" or "r" per column.
    align: list[str]
    title: str = ""
    note: str = ""


@dataclass
class Section:
    title: str
    group: str
    tables: list[Table] = field(default_factory=list)
    results: list[TestResult] = field(default_factory=list)


def _table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> Table:
    """Right-align columns whose cells are all numeric-looking."""
    cells = [[c if isinstance(c, str) else fmt_num(c) for c in row] for row in rows]
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


def summary_table(results: list[TestResult]) -> Table:
    """Test, verdict, fingerprint change (when any), headline metric, baseline, current, change.

    Rows are ordered by verdict, the most alarming first (see :data:`VERDICT_ORDER`).
    """
    with_fp = any(r.fingerprint_diff for r in results)
    columns = ["test", "verdict"]
    if with_fp:
        columns.append("fingerprint change")
    columns += ["headline metric", "baseline", "current", "change"]
    rows = []
    severity = {v: i for i, v in enumerate(VERDICT_ORDER)}
    # the most alarming verdicts first; run order within a verdict
    for r in sorted(results, key=lambda r: severity.get(r.verdict, len(severity))):
        m = headline_metric(r)
        row = [r.nodeid, r.verdict or "-"]
        if with_fp:
            row.append(fingerprint_text(r) or "-")
        if m is None:
            row += ["-", "-", "-", "-"]
        else:
            base = r.baseline_values.get(m.name)
            arrow = "↑" if m.higher_is_better else "↓"
            current = "-" if r.status == STATUS_OOM and not m.samples else fmt_qty(m.value, m.unit)
            row += [
                f"{m.name} {arrow}",
                fmt_qty(base, m.unit) if base is not None else "-",
                current,
                fmt_change(m.value, base),
            ]
        rows.append(row)
    table = _table("Verdicts", columns, rows)
    table.align[columns.index("change")] = "r"
    return table


def _transformer_tables(results: list[TestResult]) -> list[Table]:
    size_rank = {"small": 0, "medium": 1, "large": 2, "xl": 3, "2.7B": 4}
    eff = _efficiency_columns(results)

    def key(r: TestResult) -> tuple:
        p = r.params
        return (
            size_rank.get(str(p.get("model_size")), 99),
            _sort_key_value(p.get("d_model", 0)),
            _sort_key_value(p.get("context_length", 0)),
            _sort_key_value(p.get("num_warmups", 0)),
            _sort_key_value(p.get("forward_only", False)),
            r.nodeid,
        )

    ordered = sorted(results, key=key)
    cfg = [
        "model_size",
        "d_model",
        "context_length",
        "num_layers",
        "num_heads",
        "batch_size",
        "num_warmups",
        "num_trials",
        "forward_only",
    ]
    columns = cfg + ["mean_time_ms", "std_time_ms", "status"] + eff + ["verdict"]
    rows = []
    pivot: dict[str, dict[Any, list[float]]] = {}
    for r in ordered:
        p = r.params
        mean, std = time_stats_ms(r)
        trials = p.get("num_trials")
        if trials is None and _find(r, "time") is not None:
            trials = len(_find(r, "time").samples) or None
        row = [p.get(c, "-") if c != "num_trials" else trials for c in cfg]
        row = [fmt_num(v) if not isinstance(v, str) else v for v in row]
        row += [fmt_num(mean), fmt_num(std), _status(r)]
        row += [fmt_efficiency(_find_suffix(r, c)) for c in eff]
        row.append(r.verdict or "-")
        rows.append(row)
        if mean is not None and "num_warmups" in p:
            pivot.setdefault(str(p.get("model_size", "-")), {}).setdefault(
                p["num_warmups"], []
            ).append(mean)
    tables = [_table("Complete results", columns, rows)]
    warmups = sorted({w for d in pivot.values() for w in d}, key=_sort_key_value)
    if len(warmups) > 1:
        sizes = sorted(pivot, key=lambda s: (size_rank.get(s, 99), s))
        prow = [
            [s]
            + [fmt_num(statistics.fmean(pivot[s][w])) if w in pivot[s] else "-" for w in warmups]
            for s in sizes
        ]
        tables.append(
            _table(
                "Mean time (ms) by warm-up count",
                ["model_size"] + [str(w) for w in warmups],
                prow,
                note="Mean over context lengths and forward modes of each size.",
            )
        )
    return tables


def _decode_row(r: TestResult) -> list[str]:
    return [
        fmt_num(metric_in(r, "throughput")),
        fmt_num(metric_in(r, "mem_per_s", "GB")),
        fmt_num(metric_in(r, "peak_memory_reserved", "GB")),
        fmt_num(metric_in(r, "model_size", "GB")),
    ]


_DECODE_METRIC_COLS = ["tok/s", "mem/s (GB/s)", "peak_mem (GB)", "model_size (GB)"]


def _llama_tables(results: list[TestResult]) -> list[Table]:
    eff = _efficiency_columns(results)
    ordered = sorted(results, key=lambda r: str(r.params.get("model", "")))
    columns = ["model", "mode", "compile", "dtype"] + _DECODE_METRIC_COLS + ["status"] + eff
    columns.append("verdict")
    rows = []
    for r in ordered:
        p = r.params
        row = [str(p.get(c, "-")) for c in ("model", "mode", "compile", "dtype")]
        row += _decode_row(r) + [_status(r)]
        row += [fmt_efficiency(_find_suffix(r, c)) for c in eff]
        rows.append(row + [r.verdict or "-"])
    return [_table("Decode throughput", columns, rows)]


def _kv_tables(results: list[TestResult]) -> list[Table]:
    eff = _efficiency_columns(results)

    def key(r: TestResult) -> tuple:
        # stable: the variants of one cache size stay in run order (plain, int8, int8 + mask)
        return (str(r.params.get("model", "")), _sort_key_value(r.params.get("cache_size", 0)))

    cfg = ["model", "cache_size", "kv_quant", "linear_causal_mask"]
    columns = cfg + _DECODE_METRIC_COLS + ["status"] + eff + ["verdict"]
    rows = []
    for r in sorted(results, key=key):
        row = [fmt_num(r.params.get(c)) if c in r.params else "-" for c in cfg]
        row += _decode_row(r) + [_status(r)]
        row += [fmt_efficiency(_find_suffix(r, c)) for c in eff]
        rows.append(row + [r.verdict or "-"])
    return [_table("KV cache size and quantization", columns, rows)]


def _scale(r: TestResult, what: str) -> float | None:
    direct = metric_in(r, f"scale.{what}")
    if direct is not None:
        return direct
    unit = "GiB" if what == "peak_memory" else None
    o = metric_in(r, f"origin.{what}", unit)
    d = metric_in(r, f"diagonal.{what}", unit)
    if o is None or d is None or o == 0:
        return None
    return d / o


def _batched_tables(results: list[TestResult]) -> list[Table]:
    def num(r: TestResult, key: str) -> Any:
        return r.params.get(key)

    def sched(r: TestResult, s: str) -> list[str]:
        return [
            fmt_num(metric_in(r, f"{s}.latency", "s"), 3),
            fmt_num(metric_in(r, f"{s}.throughput"), 3),
            fmt_num(metric_in(r, f"{s}.peak_memory", "GiB"), 3),
        ]

    fixed = []
    for key in ("gpu_batch_size", "gen_len"):
        vals = sorted({str(r.params[key]) for r in results if key in r.params})
        if vals:
            fixed.append(f"{key}={'/'.join(vals)}")
    note = ", ".join(fixed)

    ordered = sorted(
        results,
        key=lambda r: (
            _sort_key_value(num(r, "num_batches")),
            _sort_key_value(num(r, "prompt_len")),
        ),
    )
    tables = []
    # "Different batches": the prompt length with most batch counts, 512 on a tie.
    by_prompt: dict[Any, list[TestResult]] = {}
    for r in ordered:
        by_prompt.setdefault(num(r, "prompt_len"), []).append(r)
    if by_prompt:
        prompt = max(
            by_prompt,
            key=lambda p: (
                len(by_prompt[p]),
                -abs((p if isinstance(p, (int, float)) else 0) - 512),
            ),
        )
        rows = []
        for r in by_prompt[prompt]:
            ts = _scale(r, "throughput")
            rows.append(
                [fmt_num(num(r, "num_batches"))]
                + [fmt_num(metric_in(r, f"{s}.latency", "s"), 3) for s in ("origin", "diagonal")]
                + [fmt_num(metric_in(r, f"{s}.throughput"), 3) for s in ("origin", "diagonal")]
                + [fmt_num(ts, 3)]
                + [
                    fmt_num(metric_in(r, f"{s}.peak_memory", "GiB"), 3)
                    for s in ("origin", "diagonal")
                ]
                + [fmt_num(_scale(r, "peak_memory"), 3)]
            )
        tables.append(
            _table(
                f"Different batches (prompt {prompt})",
                [
                    "num batch",
                    "latency Origin (s)",
                    "latency diagonal (s)",
                    "throughput Origin (tok/s)",
                    "throughput diagonal (tok/s)",
                    "throughput scale",
                    "peak mem Origin (GiB)",
                    "peak mem diagonal (GiB)",
                    "peak mem scale",
                ],
                rows,
                note=note,
            )
        )
    rows = [
        [fmt_num(num(r, "num_batches")), fmt_num(num(r, "prompt_len"))]
        + sched(r, "origin")
        + sched(r, "diagonal")
        + [r.verdict or "-"]
        for r in ordered
    ]
    tables.append(
        _table(
            "Different prompt length",
            [
                "Num batches",
                "Prompt",
                "Origin latency (s)",
                "Origin throughput (tok/s)",
                "Origin peak mem (GiB)",
                "Diag latency (s)",
                "Diag throughput (tok/s)",
                "Diag peak mem (GiB)",
                "verdict",
            ],
            rows,
            note=note,
        )
    )
    batches = sorted({num(r, "num_batches") for r in results}, key=_sort_key_value)
    prompts = sorted({num(r, "prompt_len") for r in results}, key=_sort_key_value)
    cell = {(num(r, "num_batches"), num(r, "prompt_len")): r for r in results}
    for what, title, best in (
        ("throughput", "Compare scale: throughput (diagonal / origin)", max),
        ("peak_memory", "Compare scale: peak mem (diagonal / origin)", min),
    ):
        values = {k: _scale(r, what) for k, r in cell.items()}
        present = [v for v in values.values() if v is not None]
        best_v = best(present) if present else None
        rows = []
        for n in batches:
            row = [fmt_num(n)]
            for p in prompts:
                v = values.get((n, p))
                text = fmt_num(v, 3)
                row.append(Strong(text) if v is not None and v == best_v else text)
            rows.append(row)
        tables.append(
            _table(title, ["Num batches \\ Prompt"] + [fmt_num(p) for p in prompts], rows)
        )
    return tables


def _estimator_tables(results: list[TestResult]) -> list[Table]:
    columns = ["Model", "Device"]
    blocks = (
        ("runtime_ms", "Runtime (ms)"),
        ("energy_j", "Energy (J)"),
        ("memory_gb", "Memory (GB)"),
    )
    for _, label in blocks:
        columns += [f"{label} Estimated", f"{label} Measured", f"{label} Error"]
    columns.append("verdict")
    rows = []
    for r in results:
        row = [str(r.params.get("model", "-")), str(r.params.get("device", "-"))]
        for key, _ in blocks:
            est, meas = metric_in(r, f"{key}.estimated"), metric_in(r, f"{key}.measured")
            err = metric_in(r, f"{key}.error_pct")
            if err is None and est is not None and meas:
                err = (meas - est) / meas * 100.0
            row += [fmt_num(est), fmt_num(meas), "-" if err is None else f"{err:.2f}%"]
        rows.append(row + [r.verdict or "-"])
    return [
        _table(
            "Estimated vs measured",
            columns,
            rows,
            note="Error = (measured - estimated) / measured x 100. The reference's "
            '"Power (ms)" column is energy in joules (runtime x board power).',
        )
    ]


def _generic_tables(results: list[TestResult]) -> list[Table]:
    params: list[str] = []
    metrics: list[str] = []
    for r in results:
        for k in r.params:
            if k not in params:
                params.append(k)
        for k in r.metrics:
            if k not in metrics:
                metrics.append(k)
    eff = [m for m in metrics if m.split(".")[-1] in ("mfu", "mbu")]
    metrics = [m for m in metrics if m not in eff] + eff
    columns = ["test"] + params + metrics + ["status", "verdict"]
    rows = []
    for r in results:
        row = [short_name(r.nodeid)] + [
            fmt_num(r.params[p]) if p in r.params else "-" for p in params
        ]
        for name in metrics:
            m = r.metrics.get(name)
            if m is None:
                row.append("-")
            elif name in eff:
                row.append(fmt_efficiency(m))
            else:
                row.append(fmt_qty(m.value, m.unit))
        rows.append(row + [_status(r), r.verdict or "-"])
    return [_table("Results", columns, rows)]


_BUILDERS = {
    "transformer_lm": _transformer_tables,
    "llama_decode": _llama_tables,
    "kv_cache": _kv_tables,
    "batched_generation": _batched_tables,
    "estimator": _estimator_tables,
}


def group_sections(results: list[TestResult]) -> list[Section]:
    """One section per report group, in :data:`GROUP_ORDER` then by name."""
    groups: dict[str, list[TestResult]] = {}
    for r in results:
        groups.setdefault(r.group or "", []).append(r)
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    sections = []
    for g in sorted(groups, key=lambda g: (order.get(g, len(order)), g == "", g)):
        members = groups[g]
        builder = _BUILDERS.get(g, _generic_tables)
        title = GROUP_TITLES.get(g) or (f"Group: {g}" if g else "Other performance tests")
        sections.append(Section(title=title, group=g, tables=builder(members), results=members))
    return sections


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


def _session_items(session: dict) -> list[tuple[str, str]]:
    device = session.get("device") or {}
    if isinstance(device, dict):
        dev = device.get("name") or "-"
        if device.get("key"):
            dev += f" (key `{device['key']}`)"
    else:
        dev = str(device)
    items = [("Device", dev), ("Tier", str(session.get("tier") or "-"))]
    items.append(("Baseline file", str(session.get("baseline_file") or "-")))
    if session.get("started") is not None:
        items.append(("Started", str(session.get("started"))))
    dur = session.get("duration_s")
    if _finite(dur):
        items.append(("Duration", f"{dur:.1f} s"))
    return items


# --------------------------------------------------------------------------- markdown


def _md_escape(cell: str) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def render_markdown_table(table: Table) -> str:
    cells = [
        [_md_escape(c if not isinstance(c, Strong) else f"**{c}**") for c in row]
        for row in table.rows
    ]
    header = [_md_escape(c) for c in table.columns]
    widths = [
        max([len(header[j])] + [len(row[j]) for row in cells if j < len(row)])
        for j in range(len(header))
    ]
    widths = [max(w, 3) for w in widths]

    def line(row: list[str]) -> str:
        out = []
        for j, w in enumerate(widths):
            c = row[j] if j < len(row) else ""
            out.append(c.rjust(w) if table.align[j] == "r" else c.ljust(w))
        return "| " + " | ".join(out) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
            for w, a in zip(widths, table.align, strict=False)
        )
        + "|"
    )
    return "\n".join([line(header), rule] + [line(row) for row in cells])


def render_markdown(results: list[TestResult], session: dict) -> str:
    out = ["# pytest-llmperf report", ""]
    for k, v in _session_items(session):
        out.append(f"- **{k}:** {v}")
    out += [f"- **Verdicts:** {counts_line(results)}", ""]
    out += ["## Verdicts", ""]
    if results:
        out += [render_markdown_table(summary_table(results)), ""]
        out += [
            "Headline metric: the metric that moved most for a regression or improvement, "
            "otherwise the test's main throughput/time metric (↑ higher is better, ↓ lower is better).",
            "",
        ]
    else:
        out += ["No performance tests ran.", ""]
    for section in group_sections(results):
        out += [f"## {section.title}", ""]
        for table in section.tables:
            out += [f"### {table.title}", ""] if table.title else []
            if table.note:
                out += [f"_{table.note}_", ""]
            out += [render_markdown_table(table), ""]
    details = detail_lines(results)
    if details:
        out += ["## Details", ""]
        for r, lines in details:
            out.append(f"- `{r.nodeid}` — **{r.verdict or '-'}**")
            out += [f"  - {_md_escape(line)}" for line in lines]
        out.append("")
    fp = session.get("fingerprint") or {}
    if fp:
        out += ["## Fingerprint", ""]
        out += [
            render_markdown_table(
                _table("", ["key", "value"], [[str(k), str(v)] for k, v in sorted(fp.items())])
            ),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- json


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def render_json(results: list[TestResult], session: dict) -> str:
    data = {
        "format": "pytest-llmperf-report",
        "version": 1,
        "session": session,
        "summary": dict(verdict_counts(results)),
        "results": [r.to_dict() for r in results],
    }
    return json.dumps(_jsonable(data), sort_keys=True, indent=2) + "\n"


# --------------------------------------------------------------------------- html

_CSS = """
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
.v-pass { color: var(--pass); } .v-regression, .v-new-status, .v-oom { color: var(--bad); }
.v-inconclusive { color: var(--warn); } .v-improved, .v-no-baseline { color: var(--info); }
.bg-pass { background: var(--pass); } .bg-regression, .bg-new-status, .bg-oom { background: var(--bad); }
.bg-inconclusive { background: var(--warn); } .bg-improved, .bg-no-baseline { background: var(--info); }
.bg-undecided { background: var(--muted); }
.note { color: var(--muted); font-style: italic; margin: 2px 0 6px; }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
ul.details li { margin-bottom: 4px; } code { font-size: 12px; }
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def render_html_table(table: Table) -> str:
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f"<th>{_esc(c)}</th>" for c in table.columns]
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        out.append("<tr>")
        for j, cell in enumerate(row):
            col = table.columns[j] if j < len(table.columns) else ""
            classes = []
            if table.align[j] == "r":
                classes.append("r")
            text = _esc(cell)
            if col == "verdict":
                classes += ["v", f"v-{_esc(cell)}"]
            elif col == "test":
                classes.append("test")
            elif col == "fingerprint change" and cell != "-":
                classes.append("fp")
            if isinstance(cell, Strong):
                text = f"<strong>{text}</strong>"
            cls = f' class="{" ".join(classes)}"' if classes else ""
            out.append(f"<td{cls}>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _html_figure(plot: Any) -> str:
    b64 = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img alt="{_esc(plot.title)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{_esc(plot.title)}</figcaption></figure>"
    )


def render_html(results: list[TestResult], session: dict) -> str:
    from . import plots  # lazy: matplotlib is optional

    have_plots = plots.matplotlib_available()
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>pytest-llmperf report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>pytest-llmperf report</h1>",
        '<dl class="meta">',
    ]
    for k, v in _session_items(session):
        out.append(f"<dt>{_esc(k)}</dt><dd>{_esc(v.replace('`', ''))}</dd>")
    out.append("</dl>")
    out.append('<div class="chips">')
    for v, n in verdict_counts(results):
        out.append(f'<span class="bg-{_esc(v)}">{n} {_esc(v)}</span>')
    out.append("</div>")
    if not have_plots:
        out.append(
            '<p class="note">Plots are not included: matplotlib is not installed '
            "(<code>pip install 'pytest-llmperf[plots]'</code>).</p>"
        )
    out.append("<h2>Verdicts</h2>")
    if results:
        out.append(render_html_table(summary_table(results)))
        out.append(
            '<p class="note">Headline metric: the metric that moved most for a regression or '
            "improvement, otherwise the main throughput/time metric (↑ higher is better, "
            "↓ lower is better).</p>"
        )
        if have_plots:
            plot = plots.baseline_vs_current(results)
            if plot is not None:
                out.append(_html_figure(plot))
    else:
        out.append("<p>No performance tests ran.</p>")
    for section in group_sections(results):
        out.append(f"<h2>{_esc(section.title)}</h2>")
        for table in section.tables:
            if table.title:
                out.append(f"<h3>{_esc(table.title)}</h3>")
            if table.note:
                out.append(f'<p class="note">{_esc(table.note)}</p>')
            out.append(render_html_table(table))
        if have_plots:
            for plot in plots.sweep_plots(section.group, section.results):
                out.append(_html_figure(plot))
    details = detail_lines(results)
    if details:
        out.append('<h2>Details</h2><ul class="details">')
        for r, lines in details:
            v = r.verdict or "-"
            out.append(
                f'<li><code>{_esc(r.nodeid)}</code> — <span class="v v-{_esc(v)}">{_esc(v)}</span><ul>'
            )
            out += [f"<li>{_esc(line)}</li>" for line in lines]
            out.append("</ul></li>")
        out.append("</ul>")
    fp = session.get("fingerprint") or {}
    if fp:
        out.append("<h2>Fingerprint</h2>")
        out.append(
            render_html_table(
                _table("", ["key", "value"], [[str(k), str(v)] for k, v in sorted(fp.items())])
            )
        )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- entry point


def write_report(path: str | Path, results: list[TestResult], session: dict) -> None:
    """Write the report for ``results``; the format follows the suffix of ``path``."""
    path = Path(path)
    suffix = path.suffix.lower()
    renderers = {".md": render_markdown, ".json": render_json, ".html": render_html}
    if suffix not in renderers:
        raise ValueError(
            f"cannot write an llmperf report to {str(path)!r}: unsupported suffix "
            f"{path.suffix!r}; use one of {', '.join(REPORT_SUFFIXES)}"
        )
    text = renderers[suffix](list(results), dict(session or {}))
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
