"""Which metric a one-line summary of a test leads with (:func:`headline_metric`), the
test's stable main metric (:func:`main_metric`, what a sweep plots), and the work count
shown beside a headline as its likely cause (:func:`work_change`)."""

from __future__ import annotations

from .. import units
from ..judge.outcome import Verdict
from ..metrics import Kind
from ..results import Metric, TestResult
from .result_reads import baseline_change
from .work_table import WORK_COLUMNS

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


def _default_tolerance(kind: str) -> float:
    """The tolerance of a metric recorded without one: its kind's default, OTHER's for a
    kind string that names no Kind."""
    try:
        return Kind(kind).tolerance
    except ValueError:
        return Kind.OTHER.tolerance


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
        return (True, metric.kind == Kind.WORK, -abs(worse))
    tolerance = metric.tolerance
    if tolerance is None:  # recorded without one: its kind's default
        tolerance = _default_tolerance(metric.kind)
    return (not moved > tolerance, metric.kind == Kind.WORK, -moved)


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
        if m.kind != Kind.WORK:
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
