"""A test's verdict: its status and every gated metric against the baseline entry.

Unclear metrics are re-measured (bounded) before the verdict is given; what is
still unclear is reported as ``inconclusive``, never silently passed or failed.
"""

from __future__ import annotations

from typing import Any

from .baselines import metric_samples, run_spread
from .device import fingerprint_diff
from .options import MEMORY_ABS_SLACK
from .results import STATUS_OK, STATUS_OOM, TestResult
from .statistics import IMPROVED, INCONCLUSIVE, REGRESSION, Decision, decide

PASS = "pass"
NO_BASELINE = "no-baseline"


def _combine(raw: Decision, corrected: Decision) -> Decision:
    """Raw and drift-corrected must agree before a verdict leaves "pass".

    Machine drift moves raw times but not corrected ones; noise in the
    correction moves corrected times but not raw ones. A real change moves
    both, so only agreement is a regression (or an improvement); disagreement
    past the tolerance is inconclusive: re-measured, then reported, never a
    silent pass and never a failure on noise alone. Letting the corrected
    samples decide alone caught more slowdowns but raised 3/20 false alarms in
    A/A trials on a shared CPU (docs/noise.md); a gate that flaps gets switched
    off, so agreement is the rule and ``llmperf.ab`` the gate for such runners.
    """
    raw.drift_corrected_change = corrected.drift_corrected_change
    if raw.outcome == corrected.outcome:
        pvalues = [p for p in (raw.p_value, corrected.p_value) if p is not None]
        raw.p_value = max(pvalues) if pvalues else None
    elif {raw.outcome, corrected.outcome} & {REGRESSION, INCONCLUSIVE}:
        raw.outcome = INCONCLUSIVE
    else:  # one says improved, the other pass
        raw.outcome = PASS
    return raw


def compare_metrics(
    result: TestResult, entry: dict[str, Any], names: list[str] | None = None
) -> list[Decision]:
    """One decision per gated metric that both the run and the baseline have
    (only those in ``names`` when given)."""
    decisions = []
    stored = entry.get("metrics", {})
    for name, metric in sorted(result.metrics.items()):
        if names is not None and name not in names:
            continue
        base = stored.get(name)
        if not metric.gated or base is None:
            continue
        common = {
            "baseline": float(base["value"]),
            "current": metric.value,
            "tolerance": metric.tolerance if metric.tolerance is not None else 0.1,
            "higher_is_better": metric.higher_is_better,
            "unit": metric.unit,
            "abs_slack": MEMORY_ABS_SLACK
            if metric.kind == "memory" and metric.unit == "B"
            else 0.0,
        }
        raw = decide(
            name,
            baseline_samples=metric_samples(base),
            current_samples=metric.samples,
            noise_floor=run_spread(base),
            **common,
        )
        if metric.normalized_samples and metric_samples(base, normalized=True):
            corrected = decide(
                name,
                baseline_samples=metric_samples(base, normalized=True),
                current_samples=metric.normalized_samples,
                noise_floor=run_spread(base, normalized=True),
                drift_corrected=True,
                **common,
            )
            raw = _combine(raw, corrected)
        decisions.append(raw)
    return decisions


def unclear_metrics(
    result: TestResult, entry: dict[str, Any] | None, names: list[str]
) -> list[str]:
    """Which of these metrics are past the tolerance but not clearly: worth re-measuring."""
    if entry is None or entry.get("status", STATUS_OK) != result.status:
        return []
    return [d.metric for d in compare_metrics(result, entry, names) if d.outcome == INCONCLUSIVE]


def judge(
    result: TestResult,
    entry: dict[str, Any] | None,
    *,
    where: str,
    baseline_fingerprint: dict[str, Any] | None = None,
    current_fingerprint: dict[str, Any] | None = None,
) -> None:
    """Fill ``result.verdict`` and ``result.verdict_lines``.

    ``where`` names the baseline file and device for the "no baseline" notice.
    Unclear metrics were already re-measured while the test ran (``unclear_metrics``).
    """
    lines: list[str] = []
    if entry is None:
        result.verdict = NO_BASELINE
        result.verdict_lines = [
            f"no baseline for this test in {where}; record one with --llmperf-update-baselines"
        ]
        return
    result.baseline_values = {
        k: float(v["value"]) for k, v in entry.get("metrics", {}).items() if "value" in v
    }
    if baseline_fingerprint and current_fingerprint:
        result.fingerprint_diff = fingerprint_diff(baseline_fingerprint, current_fingerprint)
    base_status = entry.get("status", STATUS_OK)
    if base_status != result.status:
        if result.status == STATUS_OOM:
            result.verdict = REGRESSION
            result.verdict_lines = [f"status: baseline {base_status}, current {result.status}"]
            _fingerprint_lines(result)
            return
        lines.append(f"status: baseline {base_status}, current {result.status} (now runs)")
    if result.status == STATUS_OOM:
        result.verdict = PASS
        result.verdict_lines = ["status: oom, as in the baseline"]
        return

    decisions = compare_metrics(result, entry)

    outcomes = {d.outcome for d in decisions}
    if REGRESSION in outcomes:
        result.verdict = REGRESSION
    elif INCONCLUSIVE in outcomes:
        result.verdict = INCONCLUSIVE
    elif IMPROVED in outcomes or lines:
        result.verdict = IMPROVED
    else:
        result.verdict = PASS
    for d in decisions:
        if d.outcome == REGRESSION:
            lines.append("REGRESSION " + d.describe())
        elif d.outcome == INCONCLUSIVE:
            lines.append(
                "INCONCLUSIVE " + d.describe() + ": past the tolerance, but the samples do not "
                "show it clearly after re-measuring; the machine may be noisy "
                "(consider llmperf.ab for an interleaved comparison)"
            )
        elif d.outcome == IMPROVED:
            lines.append("improved " + d.describe() + ": refresh with --llmperf-update-baselines")
    missing = sorted(
        k
        for k, v in entry.get("metrics", {}).items()
        if v.get("gated", True) and k not in result.metrics
    )
    if missing:
        lines.append(f"metrics in the baseline but not recorded now: {', '.join(missing)}")
    result.verdict_lines = lines
    _fingerprint_lines(result)


def _fingerprint_lines(result: TestResult) -> None:
    if result.fingerprint_diff:
        changes = ", ".join(
            f"{k} {old} -> {new}" for k, (old, new) in result.fingerprint_diff.items()
        )
        result.verdict_lines.append(f"environment changed since the baseline: {changes}")
