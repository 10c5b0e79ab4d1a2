"""PNG plots for the HTML report (matplotlib, optional).

matplotlib is imported lazily and only through its object-oriented API
(``Figure`` + the Agg canvas), so the process-wide pyplot backend of the user's
test session is never touched. Without matplotlib no plot is drawn and the
report says that plots are missing.

Here: the baseline-vs-current chart, the generic sweep plot of a report group,
and the public pieces (:class:`Plot`, :func:`new_figure`, :func:`to_png`,
:func:`style_axes`, :func:`log2_axis`) a ``pytest_llmperf_report_plots`` hook
draws its own plots with.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from .. import units
from ..judge.outcome import Verdict
from ..results import Status, TestResult
from .tables import headline_metric, metric_in, short_name, sort_key

#: At most this many tests in the baseline-vs-current chart (the most changed).
MAX_BARS = 40
VERDICT_COLORS = {
    Verdict.PASS: "#1a7f37",
    Verdict.REGRESSION: "#cf222e",
    Verdict.INCONCLUSIVE: "#bf8700",
    Verdict.IMPROVED: "#0969da",
    Verdict.NO_BASELINE: "#8c959f",
}
_BASELINE_COLOR = "#d0d7de"
_NEUTRAL_COLOR = "#57606a"


@dataclass
class Plot:
    """A titled PNG, embedded in the HTML report."""

    title: str
    png: bytes


def matplotlib_available() -> bool:
    """Whether plots can be drawn (matplotlib with its Agg canvas imports)."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except Exception:
        return False
    return True


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` on its own Agg canvas (no pyplot state), size in inches."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Any) -> bytes:
    """The figure, laid out tightly, as PNG bytes."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def style_axes(ax: Any) -> None:
    """The report's look: a light grid, no top or right spine."""
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def log2_axis(ax: Any, values: list[Any]) -> None:
    """Log-2 x axis labelled with the swept values themselves (128, 256, ...)."""
    from matplotlib.ticker import NullLocator

    xs = sorted({v for v in values if isinstance(v, (int, float)) and v > 0})
    ax.set_xscale("log", base=2)
    if xs:
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{v:g}" for v in xs])
    ax.xaxis.set_minor_locator(NullLocator())


# --------------------------------------------------------------------------- baseline vs current


def baseline_vs_current(results: list[TestResult]) -> Plot | None:
    """Paired bars per test: baseline (=100%) and current, of the headline metric."""
    if not matplotlib_available():
        return None
    rows = []
    for r in results:
        m = headline_metric(r)
        if m is None or r.status == Status.OOM:
            continue
        rel = units.relative_change(m.value, r.baseline_values.get(m.name))
        if rel is not None:
            rows.append((r, m, rel))
    if not rows:
        return None
    title = "Current vs baseline, headline metric of each test (baseline = 100%)"
    if len(rows) > MAX_BARS:
        rows = sorted(rows, key=lambda t: -abs(t[2]))[:MAX_BARS]
        title += f" — the {MAX_BARS} most changed"
    rows.reverse()  # first test at the top
    fig = new_figure(11, 1.2 + 0.42 * len(rows))
    ax = fig.add_subplot(1, 1, 1)
    _paired_bars(ax, rows)
    ax.set_title(title, fontsize=11)
    _verdict_legend(ax, [r.verdict for r, _, _ in rows])
    style_axes(ax)
    return Plot(title=title, png=to_png(fig))


def _paired_bars(ax: Any, rows: list[tuple[TestResult, Any, float]]) -> None:
    """Baseline bars at 100%, current bars coloured by verdict and labelled with the change."""
    n = len(rows)
    ys = list(range(n))
    h = 0.38
    ax.barh([y + h / 2 for y in ys], [100.0] * n, height=h, color=_BASELINE_COLOR, label="baseline")
    colors = [VERDICT_COLORS.get(r.verdict, _NEUTRAL_COLOR) for r, _, _ in rows]
    cur = [100.0 * (1 + rel) for _, _, rel in rows]
    ax.barh([y - h / 2 for y in ys], cur, height=h, color=colors, label="current")
    for y, v, (_, m, rel) in zip(ys, cur, rows, strict=False):
        arrow = "↑" if m.higher_is_better else "↓"
        ax.text(v + 1, y - h / 2, f"{units.change(rel)} {m.name} {arrow}", va="center", fontsize=8)
    labels = [short_name(r.nodeid) for r, _, _ in rows]
    labels = [lab if len(lab) <= 60 else lab[:57] + "..." for lab in labels]
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.axvline(100, color=_NEUTRAL_COLOR, lw=0.8, ls="--")
    ax.set_xlim(0, max(cur + [100.0]) * 1.3)
    ax.set_xlabel("% of baseline")


def _verdict_legend(ax: Any, verdicts: list[Verdict | None]) -> None:
    from matplotlib.patches import Patch

    seen = [v for v in VERDICT_COLORS if v in verdicts]
    handles = [Patch(color=_BASELINE_COLOR, label="baseline")] + [
        Patch(color=VERDICT_COLORS[v], label=f"current ({v})") for v in seen
    ]
    ax.legend(handles=handles, fontsize=8, loc="lower right")


# --------------------------------------------------------------------------- generic sweep


def _sweep_parameter(results: list[TestResult]) -> str | None:
    """The first numeric parameter that takes more than one value."""
    numeric: list[str] = []
    for r in results:
        numeric += [k for k, v in r.params.items() if units.finite(v) and k not in numeric]
    return next(
        (k for k in numeric if len({r.params.get(k) for r in results if k in r.params}) > 1), None
    )


def generic_plots(group: str, results: list[TestResult]) -> list[Plot]:
    """Headline metric against the first numeric parameter that varies, one line per
    combination of the other varying parameters ([] when nothing varies)."""
    sweep = _sweep_parameter(results)
    first = next((m for m in map(headline_metric, results) if m is not None), None)
    if sweep is None or first is None:
        return []
    metric_name, unit = first.name, first.unit
    others = sorted(
        {
            k
            for r in results
            for k in r.params
            if k != sweep and len({str(x.params.get(k)) for x in results}) > 1
        }
    )
    target = "ms" if unit in units.TIME_UNITS else None
    unit = target or unit
    series: dict[str, list[tuple[Any, float]]] = {}
    for r in results:
        v = metric_in(r, metric_name, target)
        if v is not None and sweep in r.params:
            key = ", ".join(f"{k}={r.params.get(k)}" for k in others) or metric_name
            series.setdefault(key, []).append((r.params[sweep], v))
    if not series:
        return []
    fig = new_figure(11, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for key, pts in list(series.items())[:10]:
        pts.sort(key=lambda p: sort_key(p[0]))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    ax.set_xlabel(sweep)
    ax.set_ylabel(f"{metric_name} ({unit})" if unit else metric_name)
    ax.legend(fontsize=7)
    style_axes(ax)
    title = f"{group or 'other'}: {metric_name} vs {sweep}"
    ax.set_title(title, fontsize=11)
    return [Plot(title=title, png=to_png(fig))]
