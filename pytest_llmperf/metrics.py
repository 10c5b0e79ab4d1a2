"""The metric model: what a number of a test is, and which way is better.

A metric's kind is a type (``Kind``) that carries its orientation, unit family
and default tolerance, so no construction site can get them wrong: a
``Metric`` takes its direction from its kind, and only a kind whose direction
depends on the metric (``other``, a user's own number; ``ratio``, a speedup or a
ratio of memory; ``tail``, a latency's tail or a speedup of it) is told it, and
must be. Plain data with no torch import, so reports, exporters and baselines
handle metrics in any process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

__all__ = ["ITL_PERCENTILES", "Kind", "Metric", "percentile"]


class Kind(str, Enum):
    """A metric's kind: the key a tolerance or ``gate=`` names it by, with its direction
    (None: the metric says), unit family and default relative tolerance."""

    higher_is_better: bool | None
    family: str
    tolerance: float

    def __new__(cls, value: str, higher_is_better: bool | None, family: str, tolerance: float):
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.higher_is_better = higher_is_better
        obj.family = family
        obj.tolerance = tolerance
        return obj

    TIME = ("time", False, "seconds", 0.10)
    THROUGHPUT = ("throughput", True, "items per second", 0.10)
    #: Near-deterministic: a tight gate.
    MEMORY = ("memory", False, "bytes", 0.05)
    #: A coarse counter (NVML updates every 20-100 ms).
    ENERGY = ("energy", False, "joules", 0.15)
    #: An interleaved A/B speedup (reference / candidate, higher is better), or a ratio of
    #: anything a test records (a memory ratio: lower): the metric says which. Drift cancels
    #: in an interleaved ratio, so it gates tighter.
    RATIO = ("ratio", None, "ratio", 0.05)
    #: A tail percentile (ITL p99) of a few hundred intervals per generation moves more than
    #: a median between identical runs; a stall of one step every 32 tokens takes p99 / p50
    #: from about 1.3 to 2.0 (scripts/evidence/generation_trials.py). A latency's tail (lower
    #: is better), or an A/B speedup of it (higher is better): the metric says which.
    TAIL = ("tail", None, "seconds or ratio", 0.25)
    EFFICIENCY = ("efficiency", True, "fraction", 0.10)
    #: A number the test recorded itself: its direction is the test's to say.
    OTHER = ("other", None, "any", 0.10)
    #: Counted, not timed: any growth is a regression (measure/work.py).
    WORK = ("work", False, "counts", 0.0)

    def __str__(self) -> str:
        return self.value


#: The ITL percentiles every generation reports: (label, percentile, kind).
ITL_PERCENTILES = (("p50", 50.0, Kind.TIME), ("p90", 90.0, Kind.TIME), ("p99", 99.0, Kind.TAIL))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation (numpy's default); NaN for
    no values. Unsorted input is sorted here."""
    xs = sorted(values)
    n = len(xs)
    if n == 0:
        return math.nan
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Metric:
    """One gated (or informational) number of a test.

    ``value`` is the central value (median of ``samples`` when there are any);
    ``samples`` are per-round values that the statistical decision uses. Only the
    name, value and unit are positional; the direction comes from ``kind``.
    """

    name: str
    value: float
    unit: str = ""
    higher_is_better: bool | None = field(default=None, kw_only=True)
    kind: Kind = field(kw_only=True)
    samples: list[float] = field(default_factory=list, kw_only=True)
    tolerance: float | None = field(default=None, kw_only=True)
    gated: bool = field(default=True, kw_only=True)
    #: Set on time-like metrics when drift correction ran: the same samples
    #: divided by the interleaved reference kernel's time (dimensionless).
    normalized_samples: list[float] = field(default_factory=list, kw_only=True)
    #: Why the drift correction was refused for these samples ("": it was not).
    drift_refused: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        try:
            self.kind = Kind(self.kind)
        except ValueError:
            raise ValueError(
                f"metric {self.name!r}: unknown kind {self.kind!r}; one of "
                f"{', '.join(k.value for k in Kind)}"
            ) from None
        own = self.kind.higher_is_better
        if own is None:
            if self.higher_is_better is None:
                raise ValueError(
                    f"metric {self.name!r}: kind {self.kind} needs higher_is_better=True or False"
                )
            self.higher_is_better = bool(self.higher_is_better)
        elif self.higher_is_better is None:
            self.higher_is_better = own
        elif bool(self.higher_is_better) is not own:
            better = "higher" if own else "lower"
            raise ValueError(
                f"metric {self.name!r}: a {self.kind} metric is {better} is better, not "
                f"higher_is_better={self.higher_is_better}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict; lists are copied (``asdict`` deep-copied every value, a third of
        the plugin's cost per test at 2,000 tests: scripts/evidence/scale.py)."""
        data = {
            k: list(v) if isinstance(v, list) else v
            for k, v in ((f, getattr(self, f)) for f in _METRIC_FIELDS)
        }
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metric:
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.setdefault("kind", Kind.OTHER)
        return cls(**kwargs)


_METRIC_FIELDS = tuple(f.name for f in fields(Metric))
