"""What a gate can see: the smallest change its samples would show, per test.

A tolerance of 10% means nothing if the samples spread by 30%: the decision
(``decision.decide``) asks a one-sided test at ``ALPHA`` to show the change, so
below some size a real change passes as noise. That size is the *minimum
detectable change* (MDC): the true relative change the gate finds with 80%
power. A gate whose MDC is above its tolerance cannot see its own tolerance;
``--llmperf-strict`` fails such tests rather than let them pass unseen.

Two gates, two formulas (normal approximations; ``statistics.NormalDist``, no
scipy, so ``doctor`` and reports can use them cheaply):

* the stored gate compares two independent sample sets with Mann-Whitney U
  (asymptotic efficiency 3/pi against the t-test), and where the baseline pooled
  several runs it widens its tolerance to their spread: the run-to-run spread
  is a floor no number of rounds removes;
* the paired gate (``--llmperf-compare``) decides on the median of per-pair
  ratios with a sign-test interval (efficiency 2/pi): drift between pairs
  cancels, only the spread of the ratios counts.

Spreads are robust (1.4826 x MAD / median, relative), so one preempted round
does not decide what a test can see.
"""

from __future__ import annotations

import math
from statistics import NormalDist, median

from .. import units
from .thresholds import ALPHA, MIN_PAIRS, MIN_SAMPLES

#: The power at which a change counts as detectable.
POWER = 0.8
_Z = NormalDist().inv_cdf(1 - ALPHA) + NormalDist().inv_cdf(POWER)


def relative_spread(samples: list[float]) -> float:
    """Robust relative standard deviation: 1.4826 x median absolute deviation / median."""
    finite = [s for s in samples if math.isfinite(s)]
    if len(finite) < 2:
        return 0.0
    mid = median(finite)
    if mid == 0:
        return 0.0
    return 1.4826 * median(abs(s - mid) for s in finite) / abs(mid)


def stored_detectable(
    current: list[float], baseline: list[float] | None = None, run_spread: float = 0.0
) -> float | None:
    """MDC of the stored gate: ``current`` samples against ``baseline`` samples (the current
    ones stand in for a baseline not recorded yet), floored by the baseline's run spread.
    None: too few samples to test at all (the gate decides on values)."""
    base = baseline if baseline else current
    if len(current) < MIN_SAMPLES or len(base) < MIN_SAMPLES:
        return None
    spread = math.sqrt((relative_spread(current) ** 2 + relative_spread(base) ** 2) / 2)
    se = spread * math.sqrt(1 / len(current) + 1 / len(base)) / math.sqrt(3 / math.pi)
    return max(_Z * se, run_spread)


def paired_detectable(ratios: list[float]) -> float | None:
    """MDC of the paired gate from per-pair ratios (candidate / reference). None: no pair;
    infinite below ``MIN_PAIRS``, where the sign test cannot reach ``ALPHA`` whatever the
    ratios (``decision.median_interval``): a number from 3 pairs (doctor --quick printed
    ``>= 5826.3%``) would read as a measurement, and the gate sees nothing."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    if not logs:
        return None
    if len(logs) < MIN_PAIRS:
        return math.inf
    mid = median(logs)
    sigma = 1.4826 * median(abs(x - mid) for x in logs)
    se = sigma * math.sqrt(math.pi / 2) / math.sqrt(len(logs))
    return math.expm1(_Z * se)


def too_few(have: int | None, needed: int, what: str) -> str:
    """Why a gate cannot judge any change, in the words every place uses (doctor, the
    per-test note, reports): ``fewer than 7 pairs (only 3)``; "" when there are enough.
    ``have`` None: the count is not known here (the words then name only the need)."""
    if have is not None and have >= needed:
        return ""
    return f"fewer than {needed} {what}" + (f" (only {have})" if have is not None else "")


def paired_shortfall(ratios: list[float]) -> str:
    """:func:`too_few` for the paired gate's ratios ("" when there are enough)."""
    have = sum(1 for r in ratios if r > 0 and math.isfinite(r))
    return too_few(have, MIN_PAIRS, "pairs")


def stored_shortfall(current: list[float], baseline: list[float] | None = None) -> str:
    """:func:`too_few` for the stored gate, on the side with fewer rounds ("" when enough)."""
    have = min(len(current), len(baseline if baseline is not None else current))
    return too_few(have, MIN_SAMPLES, "rounds")


def can_see(mdc: float | None, why: str = "") -> str:
    """The smallest change a gate can see, as every place shows it: ``>= 12%``, or why it
    sees none (``why``, from :func:`too_few`) rather than a number."""
    if why:
        return why
    if mdc is None:
        return "unknown (not measured)"
    if not math.isfinite(mdc):  # decide_metric: a baseline of too few rounds
        return too_few(None, MIN_SAMPLES, "rounds in the baseline")
    return f">= {units.percent(mdc)}"


def sees_line(mdc: float, tolerance: float, why: str = "") -> str:
    """The words the summary, the per-test note and reports use; ``why`` (:func:`too_few`)
    says why a gate of infinite MDC sees nothing."""
    verdict = "" if mdc <= tolerance else ": this gate cannot see its tolerance"
    tol = f"tolerance {units.percent(tolerance)}{verdict}"
    if why or not math.isfinite(mdc):
        return f"cannot judge any change: {can_see(mdc, why)}; {tol}"
    return f"can see {can_see(mdc)} here; {tol}"
