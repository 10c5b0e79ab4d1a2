"""PNG plots for the HTML report (matplotlib, optional).

matplotlib is imported lazily and only through its object-oriented API
(``Figure`` + the Agg canvas), so the process-wide pyplot backend of the user's
test session is never touched. Without matplotlib no plot is drawn and the
report says that plots are missing.

Here: the baseline-vs-current chart, the generic sweep plot of a report group,
the inter-token latency histogram of each test that measured a generation, and
the public pieces (:class:`Plot`, :func:`new_figure`, :func:`to_png`,
:func:`style_axes`, :func:`log2_axis`) a ``pytest_llmperf_report_plots`` hook
draws its own plots with.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from .. import units
from ..judge.outcome import Verdict
from ..metrics import ITL_PERCENTILES, percentile
from ..results import Status, TestResult
from .tables import headline_metric, main_metric, metric_in, short_name, sort_key

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
    """The figure, laid out tightly, as PNG bytes.

    A text that matplotlib cannot parse as mathtext (a test id with ``$x^{$`` in a
    hook's plot) is drawn as plain text rather than failing the report.
    """
    try:
        return _png(fig)
    except ValueError:
        from matplotlib.text import Text

        for text in fig.findobj(Text):
            text.set_parse_math(False)
        return _png(fig)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def plain(text: Any) -> str:
    """Text from a run (a test id, a param) that matplotlib shows as it is: a ``$``
    would start mathtext."""
    return str(text).replace("$", r"\$")


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
        label = plain(f"{units.change(rel)} {m.name} {arrow}")
        ax.text(v + 1, y - h / 2, label, va="center", fontsize=8)
    labels = [short_name(r.nodeid) for r, _, _ in rows]
    labels = [plain(lab if len(lab) <= 60 else lab[:57] + "...") for lab in labels]
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
    """The main metric (``tables.main_metric``: the same whatever moved in this run) against
    the first numeric parameter that varies, one line per combination of the other varying
    parameters ([] when nothing varies)."""
    sweep = _sweep_parameter(results)
    first = next((m for m in map(main_metric, results) if m is not None), None)
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
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=plain(key))
    ax.set_xlabel(plain(sweep))
    ax.set_ylabel(plain(f"{metric_name} ({unit})" if unit else metric_name))
    ax.legend(fontsize=7)
    style_axes(ax)
    title = f"{group or 'other'}: {metric_name} vs {sweep}"
    ax.set_title(plain(title), fontsize=11)
    return [Plot(title=title, png=to_png(fig))]


# --------------------------------------------------------------------------- token latency

#: At most this many ITL histograms per report group (one per test); the rest are counted.
MAX_HISTOGRAMS = 24
#: The line style of each ITL percentile marked on a histogram (of ``ITL_PERCENTILES``).
ITL_MARKERS = {"p50": "--", "p99": ":"}
_HIST_BINS = 40
_AB_SIDES = ("reference", "candidate")
_SERIES_COLORS = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#57606a")


def itl_markers(itl_s: list[float]) -> list[tuple[str, float]]:
    """``[("p50", seconds), ("p99", seconds)]`` of the pooled ITLs: where the histogram's
    vertical lines go ([] for none)."""
    values = [float(x) for x in itl_s if units.finite(x) and x >= 0]
    if not values:
        return []
    return [
        (label, percentile(values, q)) for label, q, _ in ITL_PERCENTILES if label in ITL_MARKERS
    ]


def itl_unit(itl_s: list[float]) -> str:
    """The histogram's axis unit: ``us`` when every ITL is under a millisecond, else ``ms``."""
    values = [x for x in itl_s if units.finite(x)]
    return "us" if values and max(values) < units.TIME_UNITS["ms"] else "ms"


def _itl_values(record: Any) -> list[float]:
    """A token record's ITLs in seconds (``generation.token_record``), bad entries dropped
    (a report read back from JSON has null for a non-finite number)."""
    raw = record.get("itl_s") if isinstance(record, dict) else None
    return [float(x) for x in raw or () if units.finite(x) and x >= 0]


def itl_series(result: TestResult) -> dict[str, list[tuple[str, list[float]]]]:
    """The ITLs of a test, one axes each: ``{axes title: [(series label, seconds)]}``.

    A measurement gets its own axes, titled with its name; the two sides of an A/B
    (``<name>.reference``, ``<name>.candidate``) share the ``<name>`` axes.
    """
    axes: dict[str, list[tuple[str, list[float]]]] = {}
    for name, record in result.tokens.items():
        values = _itl_values(record)
        if not values:  # one token per generation: no interval
            continue
        head, _, side = name.rpartition(".")
        if head and side in _AB_SIDES:
            axes.setdefault(head, []).append((side, values))
        else:
            axes.setdefault(name, []).append(("", values))
    for series in axes.values():  # reference before candidate (a JSON report sorts keys)
        series.sort(key=lambda s: _AB_SIDES.index(s[0]) if s[0] in _AB_SIDES else -1)
    return axes


def _bins(values: list[float]) -> tuple[list[float], bool]:
    """Shared bin edges for every series of an axes; log-spaced when the ITLs span more
    than two decades (a recompilation among microsecond tokens), else linear."""
    lo, hi = min(values), max(values)
    if hi <= lo:
        half = lo * 0.05 or 1.0
        return [lo - half, hi + half], False
    if lo > 0 and hi / lo > 100:
        step = (hi / lo) ** (1 / _HIST_BINS)
        return [lo * step**i for i in range(_HIST_BINS + 1)], True
    width = (hi - lo) / _HIST_BINS
    return [lo + width * i for i in range(_HIST_BINS + 1)], False


def _draw_itl(ax: Any, title: str, series: list[tuple[str, list[float]]]) -> None:
    """Step histograms of each series (log counts) with a p50 and a p99 line each."""
    unit = itl_unit([x for _, xs in series for x in xs])
    scaled = [(label, [units.convert(x, "s", unit) for x in xs]) for label, xs in series]
    edges, log_x = _bins([x for _, xs in scaled for x in xs])
    for k, ((label, xs), (_, raw)) in enumerate(zip(scaled, series, strict=True)):
        color = _SERIES_COLORS[k % len(_SERIES_COLORS)]
        name = f"{label}: " if label else ""
        ax.hist(
            xs,
            bins=edges,
            histtype="step",
            log=True,
            color=color,
            lw=1.4,
            label=plain(f"{name}{len(xs)} intervals"),
        )
        styles = ITL_MARKERS
        for mark, seconds in itl_markers(raw):
            ax.axvline(
                units.convert(seconds, "s", unit),
                color=color,
                ls=styles[mark],
                lw=1.1,
                label=plain(f"{name}{mark} {units.quantity(seconds, 's')}"),
            )
    if log_x:
        ax.set_xscale("log")
    _count_axis(ax)
    ax.set_xlabel(f"inter-token latency ({unit})")
    ax.set_ylabel("intervals (log)")
    if title:
        ax.set_title(plain(title), fontsize=9)
    ax.legend(fontsize=7)
    style_axes(ax)


def _count_axis(ax: Any) -> None:
    """Log counts from below one (a single stalled interval shows) with plain labels:
    1, 10, 100 rather than 10^0 and minor ticks as 4x10^1."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_ylim(bottom=0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _test_title(result: TestResult) -> str:
    """The test's short name and its params, cut to one line."""
    title = short_name(result.nodeid)
    if result.params:
        title += " (" + ", ".join(f"{k}={v}" for k, v in result.params.items()) + ")"
    title = f"Inter-token latency: {title}"
    return title if len(title) <= 150 else title[:147] + "..."


def itl_figure(result: TestResult) -> Any:
    """One figure of a test's ITL histograms (one axes per measurement, an A/B's two
    sides overlaid), None when it has no inter-token latencies. matplotlib needed."""
    axes = itl_series(result)
    if not axes:
        return None
    cols = min(len(axes), 3)
    rows = -(-len(axes) // cols)
    fig = new_figure(11, 0.6 + 3.2 * rows)
    for i, (title, series) in enumerate(axes.items()):
        title = title or ("unnamed measurement" if len(axes) > 1 else "")
        _draw_itl(fig.add_subplot(rows, cols, i + 1), title, series)
    fig.suptitle(plain(_test_title(result)), fontsize=10)
    return fig


def itl_histogram(result: TestResult) -> Plot | None:
    """:func:`itl_figure` as a :class:`Plot`, None without ITLs or without matplotlib."""
    if not result.tokens or not matplotlib_available():
        return None
    fig = itl_figure(result)
    if fig is None:
        return None
    return Plot(title=_test_title(result), png=to_png(fig))


def token_plots(results: list[TestResult], cap: int = MAX_HISTOGRAMS) -> tuple[list[Plot], int]:
    """ITL histograms of the tests with token timings, at most ``cap`` (regressed and
    inconclusive tests first, then in run order), and how many were left out."""
    with_itl = [r for r in results if itl_series(r)]
    if len(with_itl) > cap:
        keep = sorted(
            range(len(with_itl)),
            key=lambda i: (with_itl[i].verdict.severity if with_itl[i].verdict else 99, i),
        )[:cap]
        shown = [with_itl[i] for i in sorted(keep)]
    else:
        shown = with_itl
    drawn = [p for p in map(itl_histogram, shown) if p is not None]
    return drawn, len(with_itl) - len(shown)
