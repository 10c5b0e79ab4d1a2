"""A test's verdict: its status and every gated metric against the side it is compared with.

``Judge`` is the one path from a result to a verdict. The fixture asks it which
metrics are unclear (to re-measure them while the test's objects are alive) and
the plugin asks it for the verdict once the test is done; both go through
``Judge.decisions``, so the two can never judge differently. What is still
unclear after re-measuring is reported as ``inconclusive``, never silently
passed or failed.

The side compared with is a ``Reference``: a baseline file's entry, or the
reference tree's result under ``--llmperf-compare``, read into the few numbers a
decision takes, so the comparing run never builds a file entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .. import units
from ..baselines import metric_samples, run_spread
from ..config import MEMORY_ABS_SLACK, flag
from ..metrics import Kind
from ..results import Metric, Status, TestResult
from .decision import (
    FAR_PAST_DRIFT_P,
    FAR_PAST_DRIFT_RATIO,
    Decision,
    combine,
    decide,
    far_past_drift,
)
from .detectable import sees_line, stored_detectable
from .outcome import Verdict, WorkGate
from .workdiff import by_name, work_diff

#: What each outcome's line starts with, and what follows the decision's description.
_LINE = {
    Verdict.REGRESSION: ("REGRESSION ", ""),
    Verdict.INCONCLUSIVE: (
        "INCONCLUSIVE ",
        ": past the tolerance, but the samples do not show it clearly after re-measuring; "
        f"the machine may be noisy (compare interleaved: {flag('compare')}=REF, or "
        "llmperf.ab in the test)",
    ),
    Verdict.IMPROVED: ("improved ", f": refresh with {flag('update-baselines')}"),
}
#: The inconclusive tail of a paired decision: more pairs, not another method.
_PAIRED_INCONCLUSIVE = (
    ": past the tolerance, but not clearly within the time budget; raise max_time for more pairs"
)


_WORST_FIRST = (Verdict.REGRESSION, Verdict.INCONCLUSIVE, Verdict.IMPROVED)
#: ``FAR_PAST_DRIFT_P`` as a reader writes it (1e-6, not 1e-06).
_FAR_P = f"{FAR_PAST_DRIFT_P:.0e}".replace("e-0", "e-")


@dataclass(frozen=True)
class Stored:
    """One metric of the side compared with, in the terms a decision takes: its value,
    its rounds' samples (and drift-corrected ones), and how far its pooled runs' medians
    spread (0 for one run)."""

    value: float
    samples: list[float] = field(default_factory=list)
    normalized_samples: list[float] = field(default_factory=list)
    spread: float = 0.0
    normalized_spread: float = 0.0
    gated: bool = True

    @classmethod
    def from_entry(cls, m: dict[str, Any]) -> Stored:
        """A metric as a baseline file stores it: its runs pooled."""
        return cls(
            float(m["value"]),
            metric_samples(m),
            metric_samples(m, normalized=True),
            run_spread(m),
            run_spread(m, normalized=True),
            bool(m.get("gated", True)),
        )

    @classmethod
    def from_metric(cls, m: Metric) -> Stored:
        """A metric measured in this run (the reference tree's): one run, so no spread; a
        value with no rounds is its own sample, as a file stores it."""
        samples = [] if m.kind is Kind.WORK else list(m.samples or [m.value])
        return cls(m.value, samples, list(m.normalized_samples), gated=m.gated)


@dataclass(frozen=True)
class Reference:
    """A test as the side compared with has it: its status, metrics and the work
    signature's by-name counts (what explains a work diff)."""

    status: Status = Status.OK
    metrics: dict[str, Stored] = field(default_factory=dict)
    work: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Reference:
        """A test's entry in a baseline file."""
        return cls(
            Status(entry.get("status", Status.OK)),
            {k: Stored.from_entry(v) for k, v in entry.get("metrics", {}).items()},
            entry.get("work", {}),
        )

    @classmethod
    def from_result(cls, result: TestResult) -> Reference:
        """A test measured in this run: the reference tree's, under ``--llmperf-compare``."""
        metrics = {k: Stored.from_metric(m) for k, m in sorted(result.metrics.items())}
        return cls(result.status, metrics, result.work)


def tolerance_of(metric: Metric) -> float:
    """The metric's tolerance: its own (the marker's, the run's), else its kind's default."""
    return metric.tolerance if metric.tolerance is not None else Kind(metric.kind).tolerance


def failure_text(result: TestResult, where: str, extra: list[str] | None = None) -> str:
    """A failing verdict as its test's failure: the verdict, the test, ``where`` it was
    judged (the device, the reference), every line and note, then ``extra`` lines."""
    lines = [f"llmperf: {result.verdict} in {result.nodeid} {where}"]
    lines += ["  " + line for line in result.verdict_lines]
    lines += ["  note: " + n for n in result.notes]
    lines += ["  " + line for line in extra or []]
    return "\n".join(lines)


def describe(d: Decision) -> str:
    """The line a failure or notice shows: metric, baseline, current, change, tolerance."""
    direction = "higher is better" if d.higher_is_better else "lower is better"
    if d.pairs:
        return _describe_paired(d, direction)
    text = (
        f"{d.metric}: baseline {units.quantity(d.baseline, d.unit)}, "
        f"current {units.quantity(d.current, d.unit)} ({units.change(d.change)}; "
        f"{direction}), tolerance {units.percent(d.tolerance)}"
    )
    if d.tolerance_note:
        text += f" ({d.tolerance_note})"
    if d.drift_corrected_change is not None:
        text += f", drift-corrected change {units.change(d.drift_corrected_change)}"
    if d.p_value is not None:
        text += f", p={d.p_value:.2g}"
    return text


def _describe_paired(d: Decision, direction: str) -> str:
    text = (
        f"{d.metric}: {d.reference} {units.quantity(d.baseline, d.unit)}, "
        f"candidate {units.quantity(d.current, d.unit)} ({direction}); "
        f"candidate/reference x{d.ratio:.3f}"
    )
    if d.ci is not None and all(map(math.isfinite, d.ci)):
        text += f" [{d.ci[0]:.3f}, {d.ci[1]:.3f}]"
    text += f" over {d.pairs} interleaved pairs, tolerance {units.percent(d.tolerance)}"
    if d.tolerance_note:
        text += f" ({d.tolerance_note})"
    if d.p_value is not None:
        text += f", p={d.p_value:.2g}"
    return text


def decide_metric(metric: Metric, stored: Stored | dict[str, Any]) -> Decision:
    """One metric against its stored form (a file's metric entry is read first): raw
    samples, and drift-corrected ones where both sides have them (then the two must agree,
    ``decision.combine``)."""
    if isinstance(stored, dict):
        stored = Stored.from_entry(stored)
    common: dict[str, Any] = {
        "baseline": stored.value,
        "current": metric.value,
        "tolerance": tolerance_of(metric),
        "higher_is_better": metric.higher_is_better,
        "unit": metric.unit,
        "abs_slack": MEMORY_ABS_SLACK if metric.kind is Kind.MEMORY and metric.unit == "B" else 0.0,
    }
    if metric.kind is Kind.WORK:  # a count is exact: its value decides, not samples
        return decide(metric.name, **common)
    if not metric.samples:
        # One value per run (a memory peak, a recorded number): the pooled baseline's runs
        # are runs, not rounds. Their spread widens the tolerance; the values decide.
        return decide(metric.name, noise_floor=stored.spread, **common)
    raw = decide(
        metric.name,
        baseline_samples=stored.samples,
        current_samples=metric.samples,
        noise_floor=stored.spread,
        **common,
    )
    raw.detectable = stored_detectable(metric.samples, stored.samples, stored.spread)
    if not raw.judged:  # the baseline has too few rounds: blind to any change
        raw.detectable = math.inf
        return raw
    if metric.drift_refused and raw.outcome is Verdict.REGRESSION:
        # Nothing to agree with: raw times alone cannot tell a regression from drift,
        # unless the change is far past any drift (``decision.far_past_drift``).
        worse = far_past_drift(stored.samples, metric.samples, metric.higher_is_better, raw.p_value)
        if worse is not None:
            raw.tolerance_note = (
                f"drift correction refused, but the change is far past drift: x{worse:.1f} "
                f"worse, at least x{FAR_PAST_DRIFT_RATIO:g} at p < {_FAR_P}; "
                f"refused because {metric.drift_refused}"
            )
            return raw
        raw.outcome = Verdict.INCONCLUSIVE
        raw.tolerance_note = f"drift correction refused: {metric.drift_refused}"
        return raw
    if not (metric.normalized_samples and stored.normalized_samples):
        return raw
    corrected = decide(
        metric.name,
        baseline_samples=stored.normalized_samples,
        current_samples=metric.normalized_samples,
        noise_floor=stored.normalized_spread,
        drift_corrected=True,
        **common,
    )
    return combine(raw, corrected)


@dataclass
class Judge:
    """Judges one test against its two baseline entries: the machine's (time, memory,
    energy) and the device type's work signature. None: there is no such entry. Each is
    a ``Reference``; a baseline file's entry (a dict) is read into one here."""

    entry: Reference | dict[str, Any] | None
    #: The machine baseline file, device and tier, for the "no baseline" notice.
    where: str = ""
    baseline_fingerprint: dict[str, Any] = field(default_factory=dict)
    current_fingerprint: dict[str, Any] = field(default_factory=dict)
    work_entry: Reference | dict[str, Any] | None = None
    #: The work baseline file, for its notice.
    work_where: str = ""
    #: How the work entry's dispatch context differs from this run's ("recorded without
    #: avx512_vnni", "torch 2.12 -> 2.13"): equal counts still gate, others only inform.
    #: "" for the same context.
    work_mismatch: str = ""
    #: Decisions already taken on interleaved pairs (``--llmperf-compare``), by metric name:
    #: they replace the comparison with the stored samples.
    paired: dict[str, Decision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.entry, dict):
            self.entry = Reference.from_entry(self.entry)
        if isinstance(self.work_entry, dict):
            self.work_entry = Reference.from_entry(self.work_entry)

    def _entry_for(self, metric: Metric) -> Reference | None:
        entry = self.work_entry if metric.kind is Kind.WORK else self.entry
        return entry if isinstance(entry, Reference) else None

    def decisions(self, result: TestResult, names: list[str] | None = None) -> list[Decision]:
        """One decision per gated metric that both the run and its baseline have (only
        those in ``names`` when given); none for a run that ran out of memory."""
        if result.status is Status.OOM:
            return []
        out = []
        for name, metric in sorted(result.metrics.items()):
            entry = self._entry_for(metric)
            stored = entry.metrics.get(name) if entry is not None else None
            if not metric.gated or stored is None or (names is not None and name not in names):
                continue
            out.append(self.paired.get(name) or decide_metric(metric, stored))
        return out

    def unclear(self, result: TestResult, names: list[str]) -> list[str]:
        """Which of these metrics are past the tolerance but not clearly: worth re-measuring."""
        if self._base_status() is not result.status:
            return []
        return [
            d.metric for d in self.decisions(result, names) if d.outcome is Verdict.INCONCLUSIVE
        ]

    def judge(self, result: TestResult) -> None:
        """Fill ``result.verdict``, ``verdict_lines``, ``baseline_values``, ``fingerprint_diff``
        and ``missing_baselines``."""
        entries = {"machine": self.entry, "work": self.work_entry}
        scopes = {"work" if m.kind is Kind.WORK else "machine" for m in result.metrics.values()}
        # A test with no metrics (out of memory) is judged on its status, in either file.
        result.missing_baselines = sorted(s for s in scopes or entries if entries[s] is None)
        if all(entries[s] is None for s in scopes or entries):
            result.verdict = Verdict.NO_BASELINE
            result.verdict_lines = [
                f"no baseline for this test in {self.where}"
                + (f" nor in {self.work_where}" if self.work_where else "")
                + f"; record one with {flag('update-baselines')}"
            ]
            return
        from ..measure.device import fingerprint_diff

        for entry in self._entries():
            result.baseline_values.update({k: v.value for k, v in entry.metrics.items()})
        if self.entry is not None and self.baseline_fingerprint and self.current_fingerprint:
            result.fingerprint_diff = fingerprint_diff(
                self.baseline_fingerprint, self.current_fingerprint
            )
        result.verdict, result.verdict_lines = self._verdict(result)
        if "machine" in result.missing_baselines:
            result.verdict_lines.append(
                f"time, memory and energy not compared: no baseline for this test in {self.where}"
            )
        if "work" in result.missing_baselines:
            result.verdict_lines.append(
                f"work not compared: no entry for this test in {self.work_where}"
            )
        if result.fingerprint_diff:
            changes = ", ".join(
                f"{k} {old} -> {new}" for k, (old, new) in result.fingerprint_diff.items()
            )
            result.verdict_lines.append(f"environment changed since the baseline: {changes}")

    def _entries(self) -> list[Reference]:
        """The machine's entry and the work entry, those there are."""
        return [e for e in (self.entry, self.work_entry) if isinstance(e, Reference)]

    def _base_status(self) -> Status:
        entries = self._entries()
        return entries[0].status if entries else Status.OK

    def _verdict(self, result: TestResult) -> tuple[Verdict, list[str]]:
        """Status first (ok -> oom fails; oom -> ok is an improvement), then every metric:
        the worst outcome is the verdict."""
        base = self._base_status()
        lines: list[str] = []
        if base is not result.status:
            if result.status is Status.OOM:
                return Verdict.REGRESSION, [f"status: baseline {base}, current {result.status}"]
            lines.append(f"status: baseline {base}, current {result.status} (now runs)")
        if result.status is Status.OOM:
            return Verdict.PASS, ["status: oom, as in the baseline"]
        decisions = self.decisions(result)
        work = [d for d in decisions if result.metrics[d.metric].kind is Kind.WORK]
        measured = [d for d in decisions if d not in work]
        for d in measured:
            if d.outcome in _LINE:
                head, tail = _LINE[d.outcome]
                if d.outcome is Verdict.INCONCLUSIVE and d.pairs:
                    tail = _PAIRED_INCONCLUSIVE
                lines.append(head + describe(d) + tail)
            if d.detectable is not None:
                result.detectable[d.metric] = [d.detectable, d.tolerance]
                if d.detectable_why:
                    result.detectable_why[d.metric] = d.detectable_why
        lines += self._work_lines(result, work)
        outcomes = {d.outcome for d in measured + work}
        # "now runs" where it ran out of memory before is an improvement by itself
        otherwise = Verdict.IMPROVED if base is not result.status else Verdict.PASS
        verdict = next((v for v in _WORST_FIRST if v in outcomes), otherwise)
        missing = sorted(
            k
            for entry in self._entries()
            for k, v in entry.metrics.items()
            if v.gated and k not in result.metrics
        )
        if missing:
            lines.append(f"metrics in the baseline but not recorded now: {', '.join(missing)}")
        return verdict, lines

    def _work_lines(self, result: TestResult, decisions: list[Decision]) -> list[str]:
        """One line for the work signature: what moved, by name. On another torch (or
        device) the counts may move for reasons of the stack's own: said, not failed."""
        stored = self.work_entry.work if isinstance(self.work_entry, Reference) else {}
        moved = [d for d in decisions if d.outcome is not Verdict.PASS]
        if decisions:
            result.work_context = self.work_mismatch
            result.work_gate = WorkGate.of(bool(self.work_mismatch), bool(moved))
        if self.work_mismatch:
            for d in decisions:
                d.outcome = Verdict.PASS
            if moved:  # a note, so the terminal shows it beside a passing verdict
                diff = work_diff(moved, result.work, stored)
                result.note(
                    f"work not gated: its entry was recorded under another dispatch context "
                    f"({self.work_mismatch}), where other counts are expected: {diff}; "
                    f"record this context's entry with {flag('update-baselines')}"
                )
            return []
        if moved:
            worst = next(v for v in _WORST_FIRST if v in {d.outcome for d in moved})
            head, tail = _LINE[worst]
            return [f"{head}work: {work_diff(moved, result.work, stored)}{tail}"]
        same_totals = all(d.current == d.baseline for d in decisions)
        if (
            decisions
            and same_totals
            and any(
                (result.work.get(k) or {}).get("ops") != v.get("ops") for k, v in stored.items()
            )
        ):
            changed = ", ".join(
                name
                for k, v in stored.items()
                for name in by_name(v.get("ops", {}), (result.work.get(k) or {}).get("ops", {}))
            )
            result.note(
                f"work: same totals, other operators ({changed}); "
                f"refresh with {flag('update-baselines')}"
            )
        return []


def blind_lines(result: TestResult) -> list[str]:
    """One line per gated metric whose samples could not show a change of its tolerance."""
    return [
        f"{name}: {sees_line(mdc, tolerance, result.detectable_why.get(name, ''))}"
        for name, (mdc, tolerance) in sorted(result.detectable.items())
        if mdc > tolerance
    ]


def strict_blind(result: TestResult, strict: bool) -> None:
    """A passing test whose gate cannot see its tolerance: said in a note; under
    ``--llmperf-strict`` its verdict is inconclusive (and fails), not a pass."""
    blind = blind_lines(result)
    if not blind or result.verdict not in (Verdict.PASS, Verdict.IMPROVED):
        return
    if strict:
        result.verdict = Verdict.INCONCLUSIVE
        result.verdict_lines += [f"INCONCLUSIVE {line}" for line in blind]
    else:
        for line in blind:
            result.note(line)
