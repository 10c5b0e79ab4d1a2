"""The small reads of a result that tables, plots and the terminal share: names, cells,
verdict counts, a metric in a unit, time statistics, a change against the baseline,
notes and the session's header. No torch import; numbers are formatted by
:mod:`pytest_llmperf.units`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

from .. import units
from ..judge.outcome import Verdict
from ..results import Metric, Status, TestResult
from ..roofline.calibration import recorded_efficiency


def short_name(nodeid: str) -> str:
    """The test part of a node id (``test_x[param]``)."""
    return nodeid.rsplit("::", 1)[-1]


def sort_key(value: Any) -> tuple:
    """Orders mixed parameter values: numbers (and bools) by value, then text."""
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def fingerprint_changes(result: TestResult) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` per fingerprint difference against the baseline, by key."""
    out = []
    for key, pair in sorted((result.fingerprint_diff or {}).items()):
        old, new = (
            (list(pair) + [None, None])[:2] if isinstance(pair, (list, tuple)) else (None, pair)
        )
        out.append((key, old, new))
    return out


def fingerprint_text(result: TestResult) -> str:
    """``key: old → new`` for each fingerprint difference, ``;``-separated."""
    return "; ".join(f"{key}: {old} → {new}" for key, old, new in fingerprint_changes(result))


def verdict_cell(result: TestResult) -> str:
    """The verdict as a table shows it ("-" before one is decided)."""
    return result.verdict.value if result.verdict is not None else "-"


def status_cell(result: TestResult) -> str:
    """``OK`` or ``OOM``."""
    return str(result.status or "").upper() or "-"


def verdict_counts(results: list[TestResult]) -> list[tuple[Verdict, int]]:
    """How many tests got each verdict, the most alarming first."""
    counts = Counter(r.verdict for r in results if r.verdict is not None)
    return sorted(counts.items(), key=lambda kv: kv[0].severity)


def counts_line(results: list[TestResult]) -> str:
    """``1 regression, 3 pass``: the one-line summary of a session."""
    if not results:
        return "no performance tests ran"
    return ", ".join(f"{n} {v}" for v, n in verdict_counts(results))


def find_metric(result: TestResult, suffix: str) -> Metric | None:
    """The metric named ``suffix``, else the first one whose name ends in ``.suffix``."""
    m = result.metrics.get(suffix)
    if m is not None:
        return m
    for name, metric in result.metrics.items():
        if name.endswith("." + suffix):
            return metric
    return None


def metric_in(result: TestResult, name: str, target: str | None = None) -> float | None:
    """A metric's value (converted to ``target``), None when absent, not finite or OOM."""
    m = result.metrics.get(name)
    if m is None or result.status == Status.OOM or not units.finite(m.value):
        return None
    return units.convert(m.value, m.unit, target) if target else m.value


def time_stats_ms(result: TestResult, name: str = "time") -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) in ms of a time metric's samples."""
    m = result.metrics.get(name)
    if m is None or result.status == Status.OOM:
        return None, None
    unit = m.unit or "s"
    xs = [units.convert(x, unit, "ms") for x in m.samples if units.finite(x)]
    if not xs:
        return (units.convert(m.value, unit, "ms") if units.finite(m.value) else None), None
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return statistics.fmean(xs), std


def baseline_change(metric: Metric, baseline: float | None) -> float | None:
    """Relative change against ``baseline``, ±inf for a change off a zero baseline (a work
    count from 0 syncs to 2 is a change, :func:`units.change` shows it as ``from zero``);
    None when either value is missing or not finite, or both are 0."""
    if not (units.finite(metric.value) and units.finite(baseline)):
        return None
    if baseline == 0:
        return None if metric.value == 0 else math.copysign(math.inf, metric.value)
    return units.relative_change(metric.value, baseline)


def efficiency_cell(metric: Metric | None) -> str:
    """MFU/MBU as a percentage with one decimal (recorded either as a fraction or in %), or
    ``-`` where it is not reported: decided where the terminal's note is
    (``roofline.calibration.recorded_efficiency``), so the outputs agree."""
    return recorded_efficiency(metric).cell()


def efficiency_columns(results: list[TestResult]) -> list[str]:
    """``mfu`` and/or ``mbu`` when any result recorded them: optional table columns."""
    return [key for key in ("mfu", "mbu") if any(find_metric(r, key) is not None for r in results)]


def detail_lines(results: list[TestResult]) -> list[tuple[TestResult, list[str]]]:
    """Verdict lines and notes of every test that has something to say."""
    out = []
    for r in results:
        lines = list(r.verdict_lines) + list(r.notes)
        fp = fingerprint_text(r)
        if fp:
            lines.append(f"fingerprint differs from the baseline's: {fp}")
        if lines:
            out.append((r, lines))
    return out


def session_items(session: dict) -> list[tuple[str, str]]:
    """The report's header: device, tier, baseline file, start and duration, as plain
    text (each renderer escapes it)."""
    device = session.get("device") or {}
    if isinstance(device, dict):
        dev = device.get("name") or "-"
        if device.get("key"):
            dev += f" (key {device['key']})"
    else:
        dev = str(device)
    items = [("Device", dev), ("Tier", str(session.get("tier") or "-"))]
    items.append(("Baseline file", str(session.get("baseline_file") or "-")))
    if session.get("started") is not None:
        items.append(("Started", str(session.get("started"))))
    dur = session.get("duration_s")
    if units.finite(dur):
        items.append(("Duration", f"{dur:.1f} s"))
    return items


def nodeid_file(nodeid: str) -> str:
    """The file part of a node id (``tests/test_mine.py``)."""
    return nodeid.split("::", 1)[0]
