"""The scenario suite's sweep plots for the HTML report (matplotlib's OO API only).

``conftest.py`` returns :func:`plots` from the ``pytest_llmperf_report_plots``
hook, which the report calls only when matplotlib is installed. A group of
the suite with nothing to plot gets no plot (``[]``); other groups keep the
plugin's generic plot (None). Not a test module: no ``test_`` prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reference_report import scale_ratio

from pytest_llmperf import units
from pytest_llmperf.output.plots import Plot, log2_axis, new_figure, style_axes, to_png
from pytest_llmperf.output.tables import metric_in, short_name, sort_key, time_stats_ms
from pytest_llmperf.results import TestResult

_WIDE = (11, 4.2)


def _series_by(
    results: list[TestResult], label: Callable[[TestResult], Any], x: str
) -> dict[Any, list[TestResult]]:
    """Results per series label, each series ordered by the swept parameter ``x``."""
    series: dict[Any, list[TestResult]] = {}
    for r in results:
        series.setdefault(label(r), []).append(r)
    for members in series.values():
        members.sort(key=lambda r: sort_key(r.params[x]))
    return series


def _sweep_panel(
    ax: Any, series: dict[Any, list[TestResult]], x: str, y: Callable, fmt: str, labels: tuple
) -> None:
    """One line per series (labelled ``fmt.format(key)``) of ``y(result)`` against parameter
    ``x`` on a log-2 axis of the swept values, missing points dropped; ``labels`` = (x, y)."""
    for key, members in series.items():
        pts = [(r.params[x], y(r)) for r in members]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=fmt.format(key))
    log2_axis(ax, [r.params[x] for members in series.values() for r in members])
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])


def _finish(fig: Any, title: str, ax: Any = None) -> list[Plot]:
    """The figure titled (over its one axes, else over all panels) and rendered."""
    if ax is not None:
        ax.set_title(title, fontsize=11)
    else:
        fig.suptitle(title, fontsize=11)
    return [Plot(title=title, png=to_png(fig))]


def _transformer_panel(ax: Any, ok: list[TestResult], forward_only: bool) -> None:
    mode = [r for r in ok if bool(r.params.get("forward_only", True)) == forward_only]
    sizes = _series_by(mode, lambda r: str(r.params.get("model_size", "?")), "context_length")
    for size, members in sizes.items():
        stats = [time_stats_ms(r) for r in members]
        ax.errorbar(
            [r.params["context_length"] for r in members],
            [s[0] for s in stats],
            yerr=[s[1] or 0 for s in stats],
            marker="o",
            capsize=3,
            label=size,
        )
    log2_axis(ax, [r.params["context_length"] for r in ok])
    ax.set_xlabel("context length")
    ax.set_ylabel("mean time per step (ms)")
    ax.set_title("forward only" if forward_only else "forward + backward", fontsize=10)
    ax.legend(title="model size", fontsize=8)
    style_axes(ax)


def transformer_plots(results: list[TestResult]) -> list[Plot]:
    """001: mean step time (± std) against context length per size, at the most warm-up."""
    ok = [r for r in results if time_stats_ms(r)[0] is not None and "context_length" in r.params]
    if not ok:
        return []
    warm = max((r.params.get("num_warmups", 0) for r in ok), key=sort_key)
    ok = [r for r in ok if r.params.get("num_warmups", 0) == warm]
    modes = sorted({bool(r.params.get("forward_only", True)) for r in ok}, reverse=True)
    fig = new_figure(*_WIDE)
    for i, forward_only in enumerate(modes):
        _transformer_panel(fig.add_subplot(1, len(modes), i + 1), ok, forward_only)
    title = f"transformer_lm: mean step time (± std) vs context length, {warm} warm-up steps"
    return _finish(fig, title)


def llama_plots(results: list[TestResult]) -> list[Plot]:
    """003: decode throughput per quantization mode, one bar per model (and compile)."""
    rows = [r for r in results if metric_in(r, "throughput") is not None]
    if not rows:
        return []
    modes: list[str] = []
    series: dict[str, dict[str, float]] = {}
    for r in rows:
        mode = str(r.params.get("mode", "?"))
        if mode not in modes:
            modes.append(mode)
        label = f"{r.params.get('model', '?')}" + (" (compile)" if r.params.get("compile") else "")
        series.setdefault(label, {})[mode] = metric_in(r, "throughput")
    fig = new_figure(*_WIDE)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(series), 1)
    for i, (label, vals) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(modes))]
        ax.bar(xs, [vals.get(m, 0) for m in modes], width=width, label=label)
    ax.set_xticks(range(len(modes)))
    ax.set_xticklabels(modes, rotation=20)
    ax.set_ylabel("tok/s")
    ax.legend(fontsize=8)
    style_axes(ax)
    return _finish(fig, "llama_decode: decode throughput per quantization mode", ax)


def kv_plots(results: list[TestResult]) -> list[Plot]:
    """003's KV cache section: peak memory and throughput against cache size per variant."""
    rows = [r for r in results if "cache_size" in r.params]
    if not rows:
        return []
    variants = _series_by(
        rows,
        lambda r: (
            f"kv_quant={r.params.get('kv_quant')}, linear mask={r.params.get('linear_causal_mask')}"
        ),
        "cache_size",
    )
    fig = new_figure(*_WIDE)
    panels = (
        ("peak_memory_reserved", "GB", "peak memory reserved (GB)"),
        ("throughput", None, "tok/s"),
    )
    for i, (metric, unit, label) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        _sweep_panel(
            ax,
            variants,
            "cache_size",
            lambda r, m=metric, u=unit: metric_in(r, m, u),
            "{}",
            ("cache size (tokens)", label),
        )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        style_axes(ax)
    return _finish(fig, "kv_cache: peak memory and throughput vs cache size")


def batched_plots(results: list[TestResult]) -> list[Plot]:
    """004: throughput and peak-memory scale (diagonal / origin) against prompt length."""
    rows = [r for r in results if "prompt_len" in r.params and "num_batches" in r.params]
    if not rows:
        return []
    by_n = _series_by(rows, lambda r: r.params["num_batches"], "prompt_len")
    by_n = {n: by_n[n] for n in sorted(by_n, key=sort_key)}
    fig = new_figure(*_WIDE)
    panels = (
        ("throughput", "throughput scale (diagonal / origin)"),
        ("peak_memory", "peak mem scale"),
    )
    for i, (what, label) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        _sweep_panel(
            ax,
            by_n,
            "prompt_len",
            lambda r, w=what: scale_ratio(r, w),
            "N={}",
            ("prompt length", label),
        )
        ax.axhline(1.0, color="#57606a", lw=0.8, ls="--")
        ax.legend(title="GPU batches", fontsize=8)
        style_axes(ax)
    return _finish(fig, "batched_generation: diagonal / origin vs prompt length")


def estimator_plots(results: list[TestResult]) -> list[Plot]:
    """000: estimated and measured runtime side by side, the error above each pair."""
    rows = [
        r
        for r in results
        if metric_in(r, "runtime_ms.estimated") is not None
        or metric_in(r, "runtime_ms.measured") is not None
    ]
    if not rows:
        return []
    fig = new_figure(*_WIDE)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(rows)))
    est = [metric_in(r, "runtime_ms.estimated") or 0 for r in rows]
    meas = [metric_in(r, "runtime_ms.measured") or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], est, width=0.4, label="estimated", color="#8c959f")
    ax.bar([x + 0.2 for x in xs], meas, width=0.4, label="measured", color="#0969da")
    for x, e, m in zip(xs, est, meas, strict=False):
        if m:
            ax.text(x, max(e, m) * 1.02, units.change((m - e) / m), ha="center", fontsize=8)
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [
            f"{r.params.get('model', short_name(r.nodeid))}\n{r.params.get('device', '')}"
            for r in rows
        ],
        fontsize=8,
    )
    ax.set_ylabel("runtime (ms)")
    ax.legend(fontsize=8)
    style_axes(ax)
    return _finish(fig, "estimator: estimated vs measured runtime (error % above the bars)", ax)


_PLOTS: dict[str, Callable[[list[TestResult]], list[Plot]]] = {
    "transformer_lm": transformer_plots,
    "llama_decode": llama_plots,
    "kv_cache": kv_plots,
    "batched_generation": batched_plots,
    "estimator": estimator_plots,
}


def plots(group: str, results: list[TestResult]) -> list[Plot] | None:
    """The suite's plots for one of its groups ([] when nothing to plot), else None."""
    draw = _PLOTS.get(group)
    return draw(results) if draw is not None else None
