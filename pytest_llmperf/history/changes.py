"""Change points and creep in one series of runs.

The series is taken as its logarithm, so a change is relative, as every tolerance is.
One run's noise is estimated robustly (``noise_of``: the median absolute difference of
consecutive runs; a step moves one difference, so it does not inflate the noise). A run
far from its neighbours' median is a load spike and is replaced by it (``hampel``).
Candidate change points come from ``ruptures``' PELT with the ``l2`` cost, penalised as
BIC with that noise: ``PENALTY * sigma**2 * log(n)``. Why PELT and ruptures, over
e-divisive (MongoDB's ``signal-processing-algorithms``, Apache Otava): docs/history.md.

Change points that go the same way are grouped into a stretch, and each stretch is fitted
with a step and with a flat-ramp-flat line (``_shape``). A ramp of three runs or more that
fits clearly better than any step is creep, from its first commit to its last; otherwise a
step past the tolerance whose next runs already sit past it. Counted work is exact: every
change of value past the tolerance (0 for work: any) is a step at its run, and a run of
one-way steps in consecutive runs is creep (``_exact``).

numpy, scipy and ruptures are imported only here, when a history is analysed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from ..judge.decision import relative_change

#: BIC's 2 per change, with room for the heavy tails of shared runners.
PENALTY = 3.0
#: The fewest runs a segment has: a step in a timed metric is confirmed by a second run.
MIN_SIZE = 2
#: The fewest runs a ramp spans to be creep rather than a step.
CREEP_RUNS = 3


@dataclass(frozen=True)
class Change:
    """A change of level: a step at ``start``, or creep over ``start`` .. ``end``."""

    kind: str  # "step" or "creep"
    start: int  # the first run at (or moving to) the new level
    end: int  # the last run of the ramp (== start for a step)
    before: float
    after: float
    regression: bool

    @property
    def change(self) -> float:
        """Relative change, after / before - 1 (an infinite one from 0)."""
        return relative_change(self.before, self.after)


@dataclass
class Analysis:
    """The changes of one series, and the noise they were found against."""

    changes: list[Change] = field(default_factory=list)
    #: One run's relative noise (robust standard deviation of log values); 0 when exact.
    noise: float = 0.0
    exact: bool = False
    #: Why nothing could be found ("" when the series was analysed).
    why_not: str = ""


def _worse(before: float, after: float, higher_is_better: bool) -> bool:
    return after < before if higher_is_better else after > before


def past(before: float, after: float, tolerance: float) -> bool:
    """Whether ``after`` differs from ``before`` by more than ``tolerance`` (any change off 0)."""
    return abs(relative_change(before, after)) > tolerance


def _exact(values: list[float], higher: bool, tolerance: float) -> list[Change]:
    """Every change of value past the tolerance, at the run where it happened; a run of
    ``CREEP_RUNS`` or more changes one after another, all one way, is creep."""
    steps = [i for i in range(1, len(values)) if past(values[i - 1], values[i], tolerance)]
    out: list[Change] = []
    i = 0
    while i < len(steps):
        j = i
        up = values[steps[i]] > values[steps[i] - 1]
        while (
            j + 1 < len(steps)
            and steps[j + 1] == steps[j] + 1
            and (values[steps[j + 1]] > values[steps[j + 1] - 1]) == up
        ):
            j += 1
        a, b = steps[i], steps[j]
        kind = "creep" if j - i + 1 >= CREEP_RUNS else "step"
        for lo, hi in [(a, b)] if kind == "creep" else [(c, c) for c in steps[i : j + 1]]:
            before, after = values[lo - 1], values[hi]
            out.append(Change(kind, lo, hi, before, after, _worse(before, after, higher)))
        i = j + 1
    return out


def noise_of(y: list[float]) -> float:
    """A robust standard deviation of one run from consecutive differences (1.4826 MAD)."""
    d = [b - a for a, b in zip(y, y[1:], strict=False)]
    if not d:
        return 0.0
    m = median(d)
    return 1.4826 * median([abs(x - m) for x in d]) / math.sqrt(2.0)


def hampel(y: list[float], sigma: float, half: int = 2, k: float = 3.0) -> list[float]:
    """``y`` with each run that sits more than ``k`` noise from the median of its
    ``2 * half + 1`` neighbours replaced by that median: a load spike of a run or two is
    taken out, while a step (which moves the neighbours' median too) stays."""
    out = []
    for i, v in enumerate(y):
        m = median(y[max(0, i - half) : i + half + 1])
        out.append(m if abs(v - m) > k * sigma else v)
    return out


def _breakpoints(y: list[float], sigma: float) -> list[int]:
    """PELT's change points (the index of each new segment's first run)."""
    import numpy as np
    import ruptures as rpt

    n = len(y)
    algo = rpt.Pelt(model="l2", min_size=MIN_SIZE, jump=1).fit(np.asarray(y).reshape(-1, 1))
    return algo.predict(pen=PENALTY * sigma**2 * math.log(n))[:-1]


def _fits(y: list[float], a: int, last: int) -> tuple[Any, Any, Any]:
    """Least squares of every flat-ramp-flat line whose ramp's first run is ``a`` and whose
    new level is reached at run ``b`` for each ``b`` in ``a .. last`` (``b == a``: a step at
    ``a``), in closed form: the levels before and after, and the residual sums of squares
    (arrays over ``b``)."""
    import numpy as np

    arr = np.asarray(y)
    ends = np.arange(a, last + 1)[:, None]
    w = np.clip((np.arange(len(arr))[None, :] - a + 1) / (ends - a + 1), 0.0, 1.0)
    v = 1.0 - w
    s00, s01, s11 = (v * v).sum(1), (v * w).sum(1), (w * w).sum(1)
    t0, t1 = v @ arr, w @ arr
    det = s00 * s11 - s01 * s01
    before = (t0 * s11 - t1 * s01) / det
    after = (t1 * s00 - t0 * s01) / det
    sse = float(arr @ arr) - before * t0 - after * t1
    return before, after, sse


def _shape(y: list[float], lo: int, sigma: float, higher: bool, band: float) -> Change | None:
    """The change in ``y`` (a stretch starting at run ``lo``), if past ``band``: a step where
    one fits about as well as any ramp, else creep over the best ramp's runs. A ramp must
    beat the best step by BIC's price of one more parameter; either must beat a flat line
    by ``PENALTY`` times that price for each of its two."""
    n = len(y)
    # every segment keeps MIN_SIZE runs: a step of the last run alone is not confirmed
    edge = range(MIN_SIZE, n - MIN_SIZE + 1)
    if not edge:
        return None
    fits = {a: _fits(y, a, n - MIN_SIZE) for a in edge}
    best = min(
        ((a, int(f[2].argmin())) for a, f in fits.items()), key=lambda t: fits[t[0]][2][t[1]]
    )
    a, k = best
    b, s, e, sse = a + k, *(float(x[k]) for x in fits[a])
    mean = sum(y) / n
    flat = sum((v - mean) ** 2 for v in y)
    price = PENALTY * max(sigma, 1e-12) ** 2 * math.log(n)
    if abs(e - s) <= band or flat - sse < 2 * price:
        return None
    step_at = min(edge, key=lambda c: fits[c][2][0])
    s1, e1, sse1 = (float(x[0]) for x in fits[step_at])
    if b - a + 1 < CREEP_RUNS or sse1 - sse < price / PENALTY:
        if abs(e1 - s1) <= band:
            return None
        lv, rv = math.exp(s1), math.exp(e1)
        return Change("step", lo + step_at, lo + step_at, lv, rv, _worse(lv, rv, higher))
    lv, rv = math.exp(s), math.exp(e)
    return Change("creep", lo + a, lo + b, lv, rv, _worse(lv, rv, higher))


def analyse(
    values: list[float], higher_is_better: bool, tolerance: float, *, exact: bool = False
) -> Analysis:
    """The steps and creep of one series of positive values (oldest first); ``exact`` for
    counted work, whose every change is real (any series whose runs mostly repeat the same
    value is taken as exact too).

    Spikes are taken out first (``hampel``). PELT's change points are grouped where
    consecutive ones go the same way; each group's stretch (from the segment before it to
    the one after) is one change, shaped as a step or creep by ``_shape``. A stretch with no
    change point whose end sits past the tolerance from its start is shaped too: creep too
    slow for any one change point."""
    n = len(values)
    if n < 2:
        return Analysis(why_not="fewer than 2 runs")
    y = [math.log(v) if v > 0 else math.nan for v in values]
    sigma = 0.0 if exact or not all(math.isfinite(v) for v in y) else noise_of(y)
    if sigma == 0.0:
        return Analysis(_exact(values, higher_is_better, tolerance), 0.0, exact=True)
    if n < 2 * MIN_SIZE:
        return Analysis(noise=sigma, why_not=f"{n} runs: too few to tell a change from noise")
    band = math.log1p(tolerance)
    y = hampel(y, sigma)
    bps = _breakpoints(y, sigma)
    bounds = [0, *bps, n]
    levels = [median(y[lo:hi]) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    # stretches: each group of same-way change points with the segments on either side
    stretches: list[tuple[int, int]] = []
    i = 0
    while i < len(bps):
        j = i
        while j + 1 < len(bps) and (levels[j + 2] > levels[j + 1]) == (levels[i + 1] > levels[i]):
            j += 1
        stretches.append((bounds[i], bounds[j + 2]))
        i = j + 1
    changes: list[Change] = []
    covered = 0
    for lo, hi in stretches or [(0, n)]:
        for change in _shape_all(y, lo, hi, sigma, higher_is_better, band):
            if change.start >= covered:
                changes.append(change)
                covered = change.end + 1
    return Analysis(changes, sigma)


def _shape_all(
    y: list[float], lo: int, hi: int, sigma: float, higher: bool, band: float
) -> list[Change]:
    """Every change in ``y[lo:hi]``: the one ``_shape`` finds, then those in the runs before
    and after it (a creep and, later, a step the same way are two changes, not one)."""
    change = _shape(y[lo:hi], lo, sigma, higher, band)
    if change is None:
        return []
    before = _shape_all(y, lo, change.start, sigma, higher, band)
    return [*before, change, *_shape_all(y, change.end + 1, hi, sigma, higher, band)]
