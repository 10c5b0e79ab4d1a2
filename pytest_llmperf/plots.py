"""PNG plots for the HTML report (matplotlib, optional).

matplotlib is imported lazily and only through its object-oriented API
(``Figure`` + the Agg canvas), so the process-wide pyplot backend of the user's
test session is never touched. Without matplotlib every function here returns
nothing and the report says that plots are missing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from .report import (
    _scale,
    _sort_key_value,
    headline_metric,
    metric_in,
    relative_change,
    short_name,
    time_stats_ms,
)
from .results import STATUS_OOM, TestResult

#: At most this many tests in the baseline-vs-current chart (the most changed).
MAX_BARS = 40
_VERDICT_COLORS = {
    "pass": "#1a7f37",
    "regression": "#cf222e",
    "new-status": "#cf222e",
    "oom": "#cf222e",
    "inconclusive": "#bf8700",
    "improved": "#0969da",
    "no-baseline": "#8c959f",
}


@dataclass
class Plot:
    title: str
    png: bytes


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except Exception:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _style(ax: Any) -> None:
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _log2_axis(ax: Any, values: list[Any]) -> None:
    """Log-2 x axis labelled with the swept values themselves (128, 256, ...)."""
    from matplotlib.ticker import NullLocator

    xs = sorted({v for v in values if isinstance(v, (int, float)) and v > 0})
    ax.set_xscale("log", base=2)
    if xs:
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{v:g}" for v in xs])
    ax.xaxis.set_minor_locator(NullLocator())


def baseline_vs_current(results: list[TestResult]) -> Plot | None:
    """Paired bars per test: baseline (=100%) and current, of the headline metric."""
    if not matplotlib_available():
        return None
    rows = []
    for r in results:
        m = headline_metric(r)
        if m is None or r.status == STATUS_OOM:
            continue
        rel = relative_change(m.value, r.baseline_values.get(m.name))
        if rel is None:
            continue
        rows.append((r, m, rel))
    if not rows:
        return None
    title = "Current vs baseline, headline metric of each test (baseline = 100%)"
    if len(rows) > MAX_BARS:
        rows = sorted(rows, key=lambda t: -abs(t[2]))[:MAX_BARS]
        title += f" — the {MAX_BARS} most changed"
    rows.reverse()  # first test at the top
    n = len(rows)
    fig = _figure(11, 1.2 + 0.42 * n)
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(n))
    h = 0.38
    ax.barh([y + h / 2 for y in ys], [100.0] * n, height=h, color="#d0d7de", label="baseline")
    colors = [_VERDICT_COLORS.get(r.verdict, "#57606a") for r, _, _ in rows]
    cur = [100.0 * (1 + rel) for _, _, rel in rows]
    ax.barh([y - h / 2 for y in ys], cur, height=h, color=colors, label="current")
    for y, v, (_, m, rel) in zip(ys, cur, rows, strict=False):
        arrow = "↑" if m.higher_is_better else "↓"
        ax.text(v + 1, y - h / 2, f"{rel * 100:+.1f}% {m.name} {arrow}", va="center", fontsize=8)
    labels = [short_name(r.nodeid) for r, _, _ in rows]
    labels = [lab if len(lab) <= 60 else lab[:57] + "..." for lab in labels]
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.axvline(100, color="#57606a", lw=0.8, ls="--")
    ax.set_xlim(0, max(cur + [100.0]) * 1.3)
    ax.set_xlabel("% of baseline")
    ax.set_title(title, fontsize=11)
    from matplotlib.patches import Patch

    seen = [v for v in _VERDICT_COLORS if any(r.verdict == v for r, _, _ in rows)]
    handles = [Patch(color="#d0d7de", label="baseline")] + [
        Patch(color=_VERDICT_COLORS[v], label=f"current ({v})") for v in seen
    ]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    _style(ax)
    return Plot(title=title, png=_png(fig))


def _transformer(results: list[TestResult]) -> list[Plot]:
    ok = [r for r in results if time_stats_ms(r)[0] is not None and "context_length" in r.params]
    if not ok:
        return []
    warm = max((r.params.get("num_warmups", 0) for r in ok), key=_sort_key_value)
    ok = [r for r in ok if r.params.get("num_warmups", 0) == warm]
    modes = sorted({bool(r.params.get("forward_only", True)) for r in ok}, reverse=True)
    fig = _figure(11, 4.2)
    for i, fwd in enumerate(modes):
        ax = fig.add_subplot(1, len(modes), i + 1)
        sizes: dict[str, list[TestResult]] = {}
        for r in ok:
            if bool(r.params.get("forward_only", True)) == fwd:
                sizes.setdefault(str(r.params.get("model_size", "?")), []).append(r)
        for size, rs in sizes.items():
            rs.sort(key=lambda r: _sort_key_value(r.params["context_length"]))
            xs = [r.params["context_length"] for r in rs]
            stats = [time_stats_ms(r) for r in rs]
            ax.errorbar(
                xs,
                [s[0] for s in stats],
                yerr=[s[1] or 0 for s in stats],
                marker="o",
                capsize=3,
                label=size,
            )
        _log2_axis(ax, [r.params["context_length"] for r in ok])
        ax.set_xlabel("context length")
        ax.set_ylabel("mean time per step (ms)")
        ax.set_title("forward only" if fwd else "forward + backward", fontsize=10)
        ax.legend(title="model size", fontsize=8)
        _style(ax)
    title = f"transformer_lm: mean step time (± std) vs context length, {warm} warm-up steps"
    fig.suptitle(title, fontsize=11)
    return [Plot(title=title, png=_png(fig))]


def _llama(results: list[TestResult]) -> list[Plot]:
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
    fig = _figure(11, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(series), 1)
    for i, (label, vals) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(modes))]
        ax.bar(xs, [vals.get(m, 0) for m in modes], width=width, label=label)
    ax.set_xticks(range(len(modes)))
    ax.set_xticklabels(modes, rotation=20)
    ax.set_ylabel("tok/s")
    ax.legend(fontsize=8)
    _style(ax)
    title = "llama_decode: decode throughput per quantization mode"
    ax.set_title(title, fontsize=11)
    return [Plot(title=title, png=_png(fig))]


def _kv(results: list[TestResult]) -> list[Plot]:
    rows = [r for r in results if "cache_size" in r.params]
    if not rows:
        return []
    fig = _figure(11, 4.2)
    for i, (metric, unit, label) in enumerate(
        (("peak_memory_reserved", "GB", "peak memory reserved (GB)"), ("throughput", None, "tok/s"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        variants: dict[str, list[TestResult]] = {}
        for r in rows:
            key = f"kv_quant={r.params.get('kv_quant')}, linear mask={r.params.get('linear_causal_mask')}"
            variants.setdefault(key, []).append(r)
        for key, rs in variants.items():
            rs.sort(key=lambda r: _sort_key_value(r.params["cache_size"]))
            pts = [(r.params["cache_size"], metric_in(r, metric, unit)) for r in rs]
            pts = [p for p in pts if p[1] is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
        _log2_axis(ax, [r.params["cache_size"] for r in rows])
        ax.set_xlabel("cache size (tokens)")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        _style(ax)
    title = "kv_cache: peak memory and throughput vs cache size"
    fig.suptitle(title, fontsize=11)
    return [Plot(title=title, png=_png(fig))]


def _batched(results: list[TestResult]) -> list[Plot]:
    rows = [r for r in results if "prompt_len" in r.params and "num_batches" in r.params]
    if not rows:
        return []
    fig = _figure(11, 4.2)
    for i, (what, label) in enumerate(
        (("throughput", "throughput scale (diagonal / origin)"), ("peak_memory", "peak mem scale"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        by_n: dict[Any, list[TestResult]] = {}
        for r in rows:
            by_n.setdefault(r.params["num_batches"], []).append(r)
        for n in sorted(by_n, key=_sort_key_value):
            rs = sorted(by_n[n], key=lambda r: _sort_key_value(r.params["prompt_len"]))
            pts = [(r.params["prompt_len"], _scale(r, what)) for r in rs]
            pts = [p for p in pts if p[1] is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"N={n}")
        ax.axhline(1.0, color="#57606a", lw=0.8, ls="--")
        _log2_axis(ax, [r.params["prompt_len"] for r in rows])
        ax.set_xlabel("prompt length")
        ax.set_ylabel(label)
        ax.legend(title="GPU batches", fontsize=8)
        _style(ax)
    title = "batched_generation: diagonal / origin vs prompt length"
    fig.suptitle(title, fontsize=11)
    return [Plot(title=title, png=_png(fig))]


def _estimator(results: list[TestResult]) -> list[Plot]:
    rows = [
        r
        for r in results
        if metric_in(r, "runtime_ms.estimated") is not None
        or metric_in(r, "runtime_ms.measured") is not None
    ]
    if not rows:
        return []
    fig = _figure(11, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    xs = list(range(len(rows)))
    est = [metric_in(r, "runtime_ms.estimated") or 0 for r in rows]
    meas = [metric_in(r, "runtime_ms.measured") or 0 for r in rows]
    ax.bar([x - 0.2 for x in xs], est, width=0.4, label="estimated", color="#8c959f")
    ax.bar([x + 0.2 for x in xs], meas, width=0.4, label="measured", color="#0969da")
    for x, e, m in zip(xs, est, meas, strict=False):
        if m:
            ax.text(x, max(e, m) * 1.02, f"{(m - e) / m * 100:+.1f}%", ha="center", fontsize=8)
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
    _style(ax)
    title = "estimator: estimated vs measured runtime (error % above the bars)"
    ax.set_title(title, fontsize=11)
    return [Plot(title=title, png=_png(fig))]


def _generic(group: str, results: list[TestResult]) -> list[Plot]:
    """Headline metric against the first numeric parameter that varies."""
    numeric = []
    for r in results:
        for k, v in r.params.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in numeric:
                numeric.append(k)
    sweep = next(
        (k for k in numeric if len({r.params.get(k) for r in results if k in r.params}) > 1), None
    )
    if sweep is None:
        return []
    metric_name = None
    for r in results:
        m = headline_metric(r)
        if m is not None:
            metric_name, unit = m.name, m.unit
            break
    if metric_name is None:
        return []
    others = sorted(
        {
            k
            for r in results
            for k in r.params
            if k != sweep and len({str(x.params.get(k)) for x in results}) > 1
        }
    )
    target = "ms" if unit in ("s", "ms", "us", "µs", "ns") else None
    if target:
        unit = target
    series: dict[str, list[tuple[Any, float]]] = {}
    for r in results:
        v = metric_in(r, metric_name, target)
        if v is None or sweep not in r.params:
            continue
        key = ", ".join(f"{k}={r.params.get(k)}" for k in others) or metric_name
        series.setdefault(key, []).append((r.params[sweep], v))
    if not series:
        return []
    fig = _figure(11, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for key, pts in list(series.items())[:10]:
        pts.sort(key=lambda p: p[0])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    ax.set_xlabel(sweep)
    ax.set_ylabel(f"{metric_name} ({unit})" if unit else metric_name)
    ax.legend(fontsize=7)
    _style(ax)
    title = f"{group or 'other'}: {metric_name} vs {sweep}"
    ax.set_title(title, fontsize=11)
    return [Plot(title=title, png=_png(fig))]


_SWEEPS = {
    "transformer_lm": _transformer,
    "llama_decode": _llama,
    "kv_cache": _kv,
    "batched_generation": _batched,
    "estimator": _estimator,
}


def sweep_plots(group: str, results: list[TestResult]) -> list[Plot]:
    """Metric-against-sweep-parameter plots of one report group ([] without matplotlib)."""
    if not results or not matplotlib_available():
        return []
    fn = _SWEEPS.get(group)
    return fn(results) if fn else _generic(group, results)
