"""The per-metric decision: is this a regression, clearly?

A change is a regression only when it exceeds the tolerance *and* the samples on
both sides show it: a one-sided Mann-Whitney U test (scipy) of the current
samples against the baseline's samples moved by the tolerance. When the point
estimate is past the tolerance but the test is not clear, the outcome is
``inconclusive`` and the caller re-measures before deciding. Metrics with too
few samples (memory, custom records) are decided on their values alone.

Pure functions of numbers: no formatting (``verdict`` words the decisions), no
baseline file format (``verdict`` reads the stored entry).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

from .outcome import Verdict

#: One-sided significance for "clearly past the tolerance".
ALPHA = 0.01
#: Below this many samples per side the test cannot reach ALPHA: decide on values.
MIN_SAMPLES = 5


@dataclass
class Decision:
    metric: str
    outcome: Verdict
    baseline: float
    current: float
    #: (current - baseline) / baseline, signed; +0.5 means 50% larger.
    change: float
    tolerance: float
    unit: str = ""
    higher_is_better: bool = False
    p_value: float | None = None
    #: Why the effective tolerance differs from the configured one, if it does.
    tolerance_note: str = ""
    drift_corrected_change: float | None = None


def worse_ratio(baseline: float, current: float, higher_is_better: bool) -> float:
    """> 1 when current is worse than baseline, whatever the metric's direction."""
    if higher_is_better:
        if current <= 0:
            return math.inf if baseline > 0 else 1.0
        return baseline / current
    if baseline <= 0:
        return math.inf if current > 0 else 1.0
    return current / baseline


def clearly_worse(
    baseline: list[float], current: list[float], factor: float, higher_is_better: bool
) -> float:
    """p-value of "current is worse than baseline moved by ``factor``" (Mann-Whitney U)."""
    from scipy.stats import mannwhitneyu

    if higher_is_better:
        shifted = [b / factor for b in baseline]
        alternative = "less"
    else:
        shifted = [b * factor for b in baseline]
        alternative = "greater"
    return float(mannwhitneyu(current, shifted, alternative=alternative).pvalue)


def decide(
    metric: str,
    *,
    baseline: float,
    current: float,
    tolerance: float,
    higher_is_better: bool,
    unit: str = "",
    baseline_samples: list[float] | None = None,
    current_samples: list[float] | None = None,
    abs_slack: float = 0.0,
    noise_floor: float = 0.0,
    drift_corrected: bool = False,
) -> Decision:
    """Decide one metric.

    ``*_samples`` are what the test compares (drift-corrected where available);
    ``noise_floor`` is the relative spread between the baseline's pooled runs:
    a gate tighter than the baseline's own run-to-run spread would flap.
    """
    change = (current - baseline) / baseline if baseline else (0.0 if current == 0 else math.inf)
    effective = tolerance
    note = ""
    if noise_floor > tolerance:
        effective = noise_floor
        note = f"widened to {noise_floor:.0%}: the baseline's runs spread that much"
    d = Decision(
        metric,
        Verdict.PASS,
        baseline,
        current,
        change,
        effective,
        unit,
        higher_is_better,
        tolerance_note=note,
    )
    if abs(current - baseline) <= abs_slack:
        return d
    bs, cs = baseline_samples or [], current_samples or []
    use_samples = len(bs) >= MIN_SAMPLES and len(cs) >= MIN_SAMPLES
    # A sampled metric (a time, say) with too few rounds on either side cannot be
    # told from noise: it is never failed on its values alone.
    too_few = not use_samples and (len(bs) > 1 or len(cs) > 1)
    if use_samples:
        # Compare the samples' own centres so drift-corrected units stay consistent.
        mb, mc = median(bs), median(cs)
        ratio = worse_ratio(mb, mc, higher_is_better)
        if drift_corrected and mb:
            d.drift_corrected_change = (mc - mb) / mb
    else:
        ratio = worse_ratio(baseline, current, higher_is_better)
    factor = 1.0 + effective
    if ratio > factor:
        if not use_samples:
            d.outcome = Verdict.INCONCLUSIVE if too_few else Verdict.REGRESSION
            if too_few:
                d.tolerance_note = f"fewer than {MIN_SAMPLES} rounds on a side: too few to judge"
            return d
        d.p_value = clearly_worse(bs, cs, factor, higher_is_better)
        d.outcome = Verdict.REGRESSION if d.p_value < ALPHA else Verdict.INCONCLUSIVE
    elif ratio < 1.0 / factor:
        if not use_samples:
            d.outcome = Verdict.PASS if too_few else Verdict.IMPROVED
            return d
        d.p_value = clearly_worse(cs, bs, factor, higher_is_better)
        d.outcome = Verdict.IMPROVED if d.p_value < ALPHA else Verdict.PASS
    return d


def combine(raw: Decision, corrected: Decision) -> Decision:
    """Raw and drift-corrected must agree before a decision leaves "pass".

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
    elif {raw.outcome, corrected.outcome} & {Verdict.REGRESSION, Verdict.INCONCLUSIVE}:
        raw.outcome = Verdict.INCONCLUSIVE
    else:  # one says improved, the other pass
        raw.outcome = Verdict.PASS
    return raw
