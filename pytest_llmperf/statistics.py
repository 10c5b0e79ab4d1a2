"""The per-metric decision: is this a regression, clearly?

A change is a regression only when it exceeds the tolerance *and* the samples on
both sides show it: a one-sided Mann-Whitney U test (scipy) of the current
samples against the baseline's samples moved by the tolerance. When the point
estimate is past the tolerance but the test is not clear, the outcome is
``inconclusive`` and the caller re-measures before deciding. Metrics with too
few samples (memory, custom records) are decided on their values alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: One-sided significance for "clearly past the tolerance".
ALPHA = 0.01
#: Below this many samples per side the test cannot reach ALPHA: decide on values.
MIN_SAMPLES = 5
#: Baseline samples kept per run: a quantile sketch of the run's distribution.
SKETCH_SIZE = 64

PASS = "pass"
REGRESSION = "regression"
IMPROVED = "improved"
INCONCLUSIVE = "inconclusive"


@dataclass
class Decision:
    metric: str
    outcome: str
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

    def describe(self) -> str:
        """The line a failure or notice shows: metric, baseline, current, change, tolerance."""
        direction = "higher is better" if self.higher_is_better else "lower is better"
        text = (
            f"{self.metric}: baseline {fmt(self.baseline, self.unit)}, "
            f"current {fmt(self.current, self.unit)} ({fmt_change(self.change)}; "
            f"{direction}), tolerance {self.tolerance:.0%}"
        )
        if self.tolerance_note:
            text += f" ({self.tolerance_note})"
        if self.drift_corrected_change is not None:
            text += f", drift-corrected change {fmt_change(self.drift_corrected_change)}"
        if self.p_value is not None:
            text += f", p={self.p_value:.2g}"
        return text


def fmt_change(change: float) -> str:
    if math.isinf(change):
        return "from zero"
    return f"{change:+.1%}"


def fmt(value: float, unit: str) -> str:
    """Human units for bytes and seconds; plain 4 significant digits otherwise."""
    if unit == "B":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {name}"
        return f"{value:.0f} B"
    if unit == "s":
        for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {name}"
        return f"{value * 1e9:.4g} ns"
    return f"{value:.4g} {unit}".rstrip()


def sketch(samples: list[float], size: int = SKETCH_SIZE) -> list[float]:
    """At most ``size`` evenly spaced order statistics: keeps the distribution, bounds the file."""
    xs = sorted(samples)
    n = len(xs)
    if n <= size:
        return xs
    return [xs[round(i * (n - 1) / (size - 1))] for i in range(size)]


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
        PASS,
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
        from statistics import median

        mb, mc = median(bs), median(cs)
        ratio = worse_ratio(mb, mc, higher_is_better)
        if drift_corrected and mb:
            d.drift_corrected_change = (mc - mb) / mb
    else:
        ratio = worse_ratio(baseline, current, higher_is_better)
    factor = 1.0 + effective
    if ratio > factor:
        if not use_samples:
            d.outcome = INCONCLUSIVE if too_few else REGRESSION
            if too_few:
                d.tolerance_note = f"fewer than {MIN_SAMPLES} rounds on a side: too few to judge"
            return d
        d.p_value = clearly_worse(bs, cs, factor, higher_is_better)
        d.outcome = REGRESSION if d.p_value < ALPHA else INCONCLUSIVE
    elif ratio < 1.0 / factor:
        if not use_samples:
            d.outcome = PASS if too_few else IMPROVED
            return d
        d.p_value = clearly_worse(cs, bs, factor, higher_is_better)
        d.outcome = IMPROVED if d.p_value < ALPHA else PASS
    return d
