"""What one performance test produced: metrics with their samples, status and context.

Plain dataclasses with no torch import, so reports, exporters and baselines can
handle results in any process (the xdist controller included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Metric kinds and the default relative tolerance each is gated with.
METRIC_KINDS = ("time", "throughput", "memory", "energy", "ratio", "efficiency", "other")

STATUS_OK = "ok"
STATUS_OOM = "oom"


def summarize(samples: list[float]) -> dict[str, float]:
    """Robust summary of a sample: what a baseline keeps when samples are capped."""
    if not samples:
        return {}
    xs = sorted(samples)
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0

    def q(p: float) -> float:
        pos = p * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": xs[0],
        "q1": q(0.25),
        "median": q(0.5),
        "q3": q(0.75),
        "max": xs[-1],
    }


@dataclass
class Metric:
    """One gated (or informational) number of a test.

    ``value`` is the central value (median of ``samples`` when there are any);
    ``samples`` are per-round values that the statistical decision uses.
    """

    name: str
    value: float
    unit: str = ""
    higher_is_better: bool = False
    kind: str = "other"
    samples: list[float] = field(default_factory=list)
    tolerance: float | None = None
    gated: bool = True
    #: Set on time-like metrics when drift correction ran: the same samples
    #: divided by the interleaved reference kernel's time (dimensionless).
    normalized_samples: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metric:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TestResult:
    """Everything a test recorded, the verdict included once it is decided."""

    __test__ = False  # not a pytest test class

    nodeid: str
    status: str = STATUS_OK
    metrics: dict[str, Metric] = field(default_factory=dict)
    #: Scenario configuration columns (model, context, mode, ...) for reports.
    params: dict[str, Any] = field(default_factory=dict)
    #: Report table this result belongs to (e.g. "transformer_lm").
    group: str = ""
    tier: str = ""
    notes: list[str] = field(default_factory=list)
    #: Filled by the decision: "pass", "regression", "improved", "no-baseline",
    #: "inconclusive", "oom", "new-status".
    verdict: str = ""
    verdict_lines: list[str] = field(default_factory=list)
    #: Baseline value per metric name, when a baseline existed.
    baseline_values: dict[str, float] = field(default_factory=dict)
    #: How this run's fingerprint differs from the baseline's: {key: [old, new]}.
    fingerprint_diff: dict[str, list[Any]] = field(default_factory=dict)
    duration_s: float = 0.0

    def add(self, metric: Metric) -> Metric:
        self.metrics[metric.name] = metric
        return metric

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = {k: m.to_dict() for k, m in self.metrics.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["metrics"] = {k: Metric.from_dict(m) for k, m in (data.get("metrics") or {}).items()}
        return cls(**kwargs)
