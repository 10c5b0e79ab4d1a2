"""What one performance test produced: its metrics (``metrics.Metric``), status and verdict.

Plain dataclasses with no torch import, so reports, exporters and baselines can
handle results in any process (the xdist controller included).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .judge.outcome import Status, Verdict
from .metrics import Kind, Metric

__all__ = ["Kind", "Metric", "Status", "TestResult", "Verdict"]


@dataclass
class TestResult:
    """Everything a test recorded, the verdict included once it is decided."""

    __test__ = False  # not a pytest test class

    nodeid: str
    status: Status = Status.OK
    metrics: dict[str, Metric] = field(default_factory=dict)
    #: Scenario configuration columns (model, context, mode, ...) for reports.
    params: dict[str, Any] = field(default_factory=dict)
    #: Report table this result belongs to (e.g. "transformer_lm").
    group: str = ""
    tier: str = ""
    notes: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    verdict_lines: list[str] = field(default_factory=list)
    #: Baseline value per metric name, when a baseline existed.
    baseline_values: dict[str, float] = field(default_factory=dict)
    #: How this run's fingerprint differs from the baseline's: {key: [old, new]}.
    fingerprint_diff: dict[str, list[Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    #: Each measurement's work signature by name (operators, syncs, ...), keyed by the
    #: measurement's name ("" for an unnamed one): what explains a work diff.
    work: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Baselines this test had none in: "machine" (time, memory, energy), "work".
    missing_baselines: list[str] = field(default_factory=list)
    #: How the work gate saw this test (``WorkGate``): "" when no work was compared.
    work_gate: str = ""
    #: What differs between this run's dispatch context and the work entry's ("" if none).
    work_context: str = ""
    #: Per gated timed metric: [minimum detectable change, tolerance] (``judge.detectable``).
    detectable: dict[str, list[float]] = field(default_factory=dict)
    #: Per metric whose gate could not judge any change (an infinite detectable change):
    #: why, in ``detectable.too_few``'s words, for every place that shows it.
    detectable_why: dict[str, str] = field(default_factory=dict)
    #: Per generation measured (``llmperf.generation``), by measurement name: its token
    #: record for reports (``generation.token_record``: pooled ITLs, TTFTs, token counts).
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, metric: Metric) -> Metric:
        self.metrics[metric.name] = metric
        return metric

    def note(self, text: str) -> None:
        """Add a note once: a re-measurement must not repeat what the first pass said."""
        if text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict. Nested dicts (params, work) are shared, not copied:
        copy before changing them."""
        data = {f: getattr(self, f) for f in _RESULT_FIELDS}
        for k, v in data.items():
            if isinstance(v, (list, dict)):
                data[k] = type(v)(v)
        data["status"] = self.status.value
        data["verdict"] = self.verdict.value if self.verdict is not None else None
        data["metrics"] = {k: m.to_dict() for k, m in self.metrics.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["metrics"] = {k: Metric.from_dict(m) for k, m in (data.get("metrics") or {}).items()}
        kwargs["status"] = Status(data.get("status") or Status.OK)
        verdict = data.get("verdict")
        kwargs["verdict"] = Verdict(verdict) if verdict else None
        return cls(**kwargs)


_RESULT_FIELDS = tuple(f.name for f in fields(TestResult))
