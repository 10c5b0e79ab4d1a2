"""A test's entry as stored: each metric's samples kept as a quantile sketch, rounded,
pooled over the last runs (``--llmperf-pool``), with a summary for readers; and the
reads of a stored metric that the judge pools over runs."""

from __future__ import annotations

import math
from statistics import median
from typing import Any

from ..metrics import Kind, percentile
from ..results import Metric, TestResult
from .schema import DIGITS, SKETCH_SIZE, SUMMARY_ABOVE


def sketch(samples: list[float], size: int = SKETCH_SIZE) -> list[float]:
    """At most ``size`` evenly spaced order statistics: keeps the distribution, bounds the file."""
    xs = sorted(samples)
    n = len(xs)
    if n <= size:
        return xs
    return [xs[round(i * (n - 1) / (size - 1))] for i in range(size)]


def summarize(samples: list[float]) -> dict[str, float]:
    """Robust summary of a sample, stored beside the sketch for readers of the file (no
    verdict reads it; above SKETCH_SIZE samples it says what the sketch cannot: n, mean, std)."""
    if not samples:
        return {}
    xs = sorted(samples)
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0

    def q(p: float) -> float:
        return percentile(xs, 100 * p)

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


def _round(x: float) -> float:
    """Whole numbers (bytes, counts) stay exact; others keep DIGITS significant digits."""
    x = float(x)
    if x.is_integer():
        return x
    return float(f"{x:.{DIGITS}g}")


def metric_samples(m: dict[str, Any], normalized: bool = False) -> list[float]:
    """All samples of a stored metric, pooled over its runs."""
    key = "normalized_samples" if normalized else "samples"
    return [x for run in m.get("runs", []) for x in run.get(key, [])]


def run_spread(m: dict[str, Any], normalized: bool = False) -> float:
    """Largest relative distance of one pooled run's median from the runs' median."""
    key = "normalized_samples" if normalized else "samples"
    medians = [median(r[key]) for r in m.get("runs", []) if r.get(key)]
    if len(medians) < 2:
        return 0.0
    mid = median(medians)
    return max(abs(x - mid) for x in medians) / mid if mid else 0.0


def metric_entry(metric: Metric, previous: dict[str, Any] | None, pool: int) -> dict[str, Any]:
    """A metric as stored; with ``pool`` > 1 the last ``pool`` runs are kept together.
    A count of the work signature is exact: its value alone, no samples to pool."""
    entry: dict[str, Any] = {
        "value": _round(metric.value),
        "unit": metric.unit,
        "higher_is_better": metric.higher_is_better,
        "kind": metric.kind,
        "tolerance": metric.tolerance,
        "gated": metric.gated,
    }
    if metric.kind == Kind.WORK:
        return entry
    run: dict[str, Any] = {"samples": [_round(x) for x in sketch(metric.samples or [metric.value])]}
    if metric.normalized_samples:
        run["normalized_samples"] = [_round(x) for x in sketch(metric.normalized_samples)]
    runs = [run]
    if previous is not None and pool > 1:
        runs = (list(previous.get("runs", [])) + runs)[-pool:]
    if len(runs) > 1:
        entry["value"] = _round(median([x for r in runs for x in r["samples"]]))
    if len(metric.samples) > SUMMARY_ABOVE:  # fewer are read straight off the samples
        summary = summarize(metric.samples)
        entry["summary"] = {k: v if k == "n" else _round(v) for k, v in summary.items()}
    entry["runs"] = runs
    return entry


def test_entry(result: TestResult, previous: dict[str, Any] | None, pool: int) -> dict[str, Any]:
    """A test's stored entry; runs are pooled only with a previous entry of the same tier."""
    same = previous is not None and previous.get("tier") == result.tier
    prev_metrics = previous.get("metrics", {}) if same and previous else {}
    if same and previous and previous.get("status") != result.status:
        prev_metrics = {}
    entry = {
        "status": result.status.value,
        "tier": result.tier,
        "group": result.group,
        "params": result.params,
        "metrics": {
            name: metric_entry(m, prev_metrics.get(name), pool)
            for name, m in sorted(result.metrics.items())
        },
    }
    if result.work:  # the by-name counts that explain a work diff
        entry["work"] = result.work
    return entry
