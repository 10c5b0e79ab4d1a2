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

from .detectable import paired_detectable, paired_shortfall
from .outcome import Verdict
from .thresholds import ALPHA, MIN_PAIRS, MIN_SAMPLES

__all__ = ["ALPHA", "MIN_PAIRS", "MIN_SAMPLES", "Decision", "decide", "decide_paired"]

#: Where the drift correction is refused (measure/drift.py ``untrusted``: intra-op threads
#: spinning for a core), raw times cannot tell a regression from drift, so a raw regression
#: is inconclusive, unless it is far past any drift seen: the current median this many
#: times worse than the baseline's, and the samples past the tolerance at this p-value
#: (about 16 rounds a side at least). An unchanged rerun on torch's 2 threads on 2 shared
#: cores moved by up to +399%, under x5.
FAR_PAST_DRIFT_RATIO = 5.0
FAR_PAST_DRIFT_P = 1e-6


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
    #: A paired decision (``decide_paired``): the pairs it rests on, the ratio's confidence
    #: interval (worse-than ratio, ``1 - 2 * ALPHA``) and what the baseline side is called.
    pairs: int = 0
    ci: tuple[float, float] | None = None
    reference: str = ""
    #: Minimum detectable change of this decision (``detectable``), where samples tell it.
    detectable: float | None = None
    #: Why ``detectable`` is infinite, in ``detectable.too_few``'s words ("": it is not).
    detectable_why: str = ""
    #: A paired decision's median ratio, candidate / reference, in the metric's own terms.
    ratio: float = 1.0
    #: False when the baseline's side has too few samples to judge at all: not judged
    #: (a pass no re-measurement can change), and the gate is blind.
    judged: bool = True


def worse_ratio(baseline: float, current: float, higher_is_better: bool) -> float:
    """> 1 when current is worse than baseline, whatever the metric's direction."""
    if higher_is_better:
        if current <= 0:
            return math.inf if baseline > 0 else 1.0
        return baseline / current
    if baseline <= 0:
        return math.inf if current > 0 else 1.0
    return current / baseline


def relative_change(baseline: float, current: float) -> float:
    """(current - baseline) / baseline, signed; from zero, infinite (0 for 0 -> 0)."""
    if baseline:
        return (current - baseline) / baseline
    return 0.0 if current == 0 else math.inf


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
    d = Decision(
        metric,
        Verdict.PASS,
        baseline,
        current,
        relative_change(baseline, current),
        tolerance,
        unit,
        higher_is_better,
    )
    if noise_floor > tolerance:
        d.tolerance = noise_floor
        d.tolerance_note = f"widened to {noise_floor:.0%}: the baseline's runs spread that much"
    bs, cs = baseline_samples or [], current_samples or []
    use_samples = len(bs) >= MIN_SAMPLES and len(cs) >= MIN_SAMPLES
    # A sampled metric (a time, say) with too few rounds on either side cannot be
    # told from noise: it is never failed on its values alone.
    too_few = not use_samples and (len(bs) > 1 or len(cs) > 1)
    if too_few and len(bs) < MIN_SAMPLES:
        # The baseline's side is short: no re-measurement can make this run judgeable,
        # and "inconclusive" would follow the noise (at 3 rounds a side, a third of an
        # unchanged run's tests; scripts/evidence/scale.py). Not judged, every time: the gate is
        # blind here (``detectable``), which --llmperf-strict fails.
        d.judged = False
        d.tolerance_note = (
            f"the baseline has {len(bs)} round{'s' if len(bs) != 1 else ''}, fewer than "
            f"{MIN_SAMPLES}: not judged (record it with more rounds)"
        )
        return d
    if abs(current - baseline) <= abs_slack:
        return d
    if use_samples:
        # Compare the samples' own centres so drift-corrected units stay consistent.
        mb, mc = median(bs), median(cs)
        ratio = worse_ratio(mb, mc, higher_is_better)
        if drift_corrected:
            d.drift_corrected_change = (mc - mb) / mb if mb else None
        else:
            # The message shows the numbers that decided: a pooled value (ITL p99 over every
            # interval) can differ from the median of its per-round samples (each
            # generation's p99), and "+10%, tolerance 25%" must not head a regression.
            d.baseline, d.current, d.change = mb, mc, relative_change(mb, mc)
    else:
        ratio = worse_ratio(baseline, current, higher_is_better)
    return _outcome(d, ratio, bs, cs, too_few)


def _outcome(
    d: Decision, ratio: float, bs: list[float], cs: list[float], too_few: bool
) -> Decision:
    """Past the tolerance one way or the other: on samples, only where they show it (a
    regression that is not clear is inconclusive); on values alone, unless they are too few
    rounds to tell from noise."""
    use_samples = len(bs) >= MIN_SAMPLES and len(cs) >= MIN_SAMPLES
    factor = 1.0 + d.tolerance
    if ratio > factor:
        if not use_samples:
            d.outcome = Verdict.INCONCLUSIVE if too_few else Verdict.REGRESSION
            if too_few:
                d.tolerance_note = f"fewer than {MIN_SAMPLES} rounds on a side: too few to judge"
            return d
        d.p_value = clearly_worse(bs, cs, factor, d.higher_is_better)
        d.outcome = Verdict.REGRESSION if d.p_value < ALPHA else Verdict.INCONCLUSIVE
    elif ratio < 1.0 / factor:
        if not use_samples:
            d.outcome = Verdict.PASS if too_few else Verdict.IMPROVED
            return d
        d.p_value = clearly_worse(cs, bs, factor, d.higher_is_better)
        d.outcome = Verdict.IMPROVED if d.p_value < ALPHA else Verdict.PASS
    return d


def far_past_drift(
    baseline: list[float], current: list[float], higher_is_better: bool, p_value: float | None
) -> float | None:
    """How many times worse a raw regression (``p_value``: its samples past the tolerance)
    is, when that is far past any machine drift: the current median ``FAR_PAST_DRIFT_RATIO``
    times worse than the baseline's or more, at p below ``FAR_PAST_DRIFT_P``; else None."""
    if p_value is None or p_value >= FAR_PAST_DRIFT_P or not (baseline and current):
        return None
    worse = worse_ratio(median(baseline), median(current), higher_is_better)
    return worse if worse >= FAR_PAST_DRIFT_RATIO else None


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


def median_interval(values: list[float], alpha: float = ALPHA) -> tuple[float, float]:
    """Distribution-free interval for the median (sign test): order statistics k and n-1-k,
    each side missing the median with probability at most ``alpha``."""
    from scipy.stats import binom

    xs = sorted(values)
    n = len(xs)
    k = 0  # order statistics left out on each side
    while k < n and binom.cdf(k, n, 0.5) <= alpha:
        k += 1
    if k == 0:
        return -math.inf, math.inf
    return xs[k - 1], xs[n - k]


def decide_paired(
    metric: str,
    *,
    ratios: list[float],
    reference: float,
    current: float,
    tolerance: float,
    higher_is_better: bool,
    unit: str = "",
    reference_name: str = "reference",
) -> Decision:
    """Decide one metric from per-pair ratios (candidate / reference, each pair timed back to
    back, so machine drift cancels): a regression when the median ratio is past the
    tolerance and its interval is too (sign test at ``ALPHA``); the same for an improvement.
    ``reference`` / ``current`` are the two sides' central values, for the message."""
    worse = sorted(worse_ratio(1.0, r, higher_is_better) for r in ratios if r > 0)
    factor = 1.0 + tolerance
    d = Decision(
        metric,
        Verdict.PASS,
        reference,
        current,
        relative_change(reference, current),
        tolerance,
        unit,
        higher_is_better,
        pairs=len(worse),
        reference=reference_name,
    )
    # Below MIN_PAIRS the interval is unbounded: blind, said in words, not a number.
    d.detectable, d.detectable_why = paired_detectable(worse), paired_shortfall(worse)
    if len(worse) < 2:
        d.tolerance_note = "fewer than 2 pairs: too few to judge"
        d.outcome = Verdict.INCONCLUSIVE
        return d
    lo, hi = median_interval(worse)
    mid = median(worse)
    # Shown in the metric's own terms (a throughput ratio below 1 is worse).
    d.ratio, d.ci = (1 / mid, (1 / hi, 1 / lo)) if higher_is_better else (mid, (lo, hi))
    if mid > factor:
        d.p_value = _sign_p(sum(w > factor for w in worse), len(worse))
        d.outcome = Verdict.REGRESSION if lo > factor else Verdict.INCONCLUSIVE
    elif mid < 1.0 / factor:
        d.p_value = _sign_p(sum(w < 1 / factor for w in worse), len(worse))
        d.outcome = Verdict.IMPROVED if hi < 1.0 / factor else Verdict.PASS
    return d


def _sign_p(k: int, n: int) -> float:
    """One-sided sign-test p-value of k of n pairs on one side."""
    from scipy.stats import binomtest

    return float(binomtest(k, n, 0.5, "greater").pvalue)


def paired_settled(ratios: list[float], tolerance: float, higher_is_better: bool) -> bool:
    """Whether more pairs could change the decision: the interval of the worse-than ratio
    no longer straddles the regression boundary (1 + tolerance)."""
    if len(ratios) < MIN_PAIRS:
        return False
    worse = [worse_ratio(1.0, r, higher_is_better) for r in ratios if r > 0]
    lo, hi = median_interval(worse)
    return lo > 1.0 + tolerance or hi < 1.0 + tolerance
