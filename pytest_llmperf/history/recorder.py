"""``--llmperf-history=DIR``: the run appended to a history, and the history gate.

A plugin object (as ``LLMPerfSession`` is), registered when the option is given. The
controller appends one record for the whole run at its end (an xdist worker's results
reach it as the session's); under ``--llmperf-history-gate`` every process that judges
reads the history once at the start (a corrupt file stops the run there, named) and
judges each test's gated metrics against their recent runs (``judge``).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .. import units
from ..judge.outcome import Verdict
from ..judge.verdict import tolerance_of
from ..measure.dispatch import context_id
from ..results import TestResult
from . import acks
from .changes import Change, analyse, past
from .series import (
    Point,
    Series,
    best,
    collect,
    git_state,
    metric_summary,
    place,
    run_record,
    short_sha,
)
from .store import HistoryError, append_run, read


class HistoryRecorder:
    """Appends this run to ``directory``; with ``gate``, fails a test whose metric stepped or
    crept past its tolerance over the last ``window`` runs (since its last acknowledgement)."""

    def __init__(self, session: Any, directory: Path, gate: bool, window: int) -> None:
        self.session = session
        self.directory = directory
        self.gate = gate
        self.window = window

    @functools.cached_property
    def _history(self) -> tuple[dict[tuple[str, str, str, str], Series], list[dict[str, Any]]]:
        history = read(self.directory)
        return collect(history.runs), history.acks

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.gate and self.session.options.enabled:
            try:
                self._history  # noqa: B018 - a corrupt file stops the run before measuring
            except HistoryError as exc:
                raise pytest.UsageError(str(exc)) from None

    def _place(self, kind: str) -> str:
        s = self.session
        return place({"machine": s.device_info["key"], "context": self._context}, kind)

    @functools.cached_property
    def _git(self) -> dict[str, Any]:
        """This run's commit, found once (``series.git_state``)."""
        return git_state(self.session.rootdir)

    @functools.cached_property
    def _context(self) -> str:
        return context_id(self.session.work_fingerprint)

    def judge(self, result: TestResult) -> None:
        """Each gated metric's recent runs plus this one: a regression step or creep past the
        tolerance that has not been acknowledged, and whose level this run still has, fails."""
        if not self.gate:
            return
        series, ack_list = self._history
        lines = []
        for name, metric in result.metrics.items():
            if not metric.gated or not units.finite(metric.value):
                continue
            key = (result.nodeid, name, self._place(str(metric.kind)), result.tier)
            old = series.get(key)
            if old is None:
                continue
            points = acks.since(old.points, ack_list, result.nodeid, name)[-self.window :]
            git, value = self._git, best(metric_summary(metric))  # the series' own basis
            now = Point(self.session.started, git["commit"], git["dirty"], value)
            points = [*points, now]
            now_series = replace(
                old, tolerance=tolerance_of(metric), higher_is_better=bool(metric.higher_is_better)
            )
            lines += self._lines(now_series, points)
        if lines:
            result.verdict = Verdict.REGRESSION
            result.verdict_lines += lines

    def _lines(self, s: Series, points: list[Point]) -> list[str]:
        """This run's metric (its own tolerance and direction) against its recent runs."""
        values = [p.value for p in points]
        found = analyse(values, s.higher_is_better, s.tolerance, exact=s.exact).changes
        out = []
        for change in found:
            if change.regression and _still(change, values, s.tolerance, s.exact):
                out.append(self._line(s, points, change))
        return out

    def _line(self, s: Series, points: list[Point], change: Change) -> str:
        a, b = points[change.start], points[change.end]
        this = " (this run)" if change.start == len(points) - 1 else ""
        shape = (
            f"a step at commit {a.short}{this}"
            if change.kind == "step"
            else f"creep over {change.end - change.start + 1} runs, commits {a.short} .. {b.short}"
        )
        return (
            f"REGRESSION history: {s.metric} {units.quantity(change.before, s.unit)} -> "
            f"{units.quantity(change.after, s.unit)} ({units.change(change.change)}, "
            f"tolerance {units.percent(s.tolerance)}) in {shape}, over the last "
            f"{len(points)} runs in {self.directory}; a deliberate change is acknowledged "
            f"with: python -m pytest_llmperf history ack {self.directory} --test "
            f"'{s.test}' --metric {s.metric} --commit {short_sha(a.commit, 12)}"
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        s = self.session
        if not s.options.enabled or not s._writes() or not s.results:
            return
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            s.messages.append(f"interrupted: nothing appended to the history {self.directory}")
            return
        record = run_record(
            s.results,
            git=self._git,
            machine=s.device_info["key"],
            device=s.device_info["name"],
            dispatch=s.work_fingerprint,
            fingerprint=s.fingerprint,
            tier=s.tier,
            gate=s.options.policy.run_gate,
        )
        try:
            path = append_run(self.directory, record)
        except HistoryError as exc:
            s.messages.append(f"ERROR: {exc}")
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        else:
            n = len(s.results)
            s.messages.append(f"appended {n} test{'s' if n != 1 else ''} to the history: {path}")


#: The latest runs of a timed series that must all sit past the tolerance for the gate to
#: fail: a spell of another tenant's load over the last run or two fails nothing.
STILL_RUNS = 3


def _still(change: Change, values: list[float], tolerance: float, exact: bool) -> bool:
    """Whether the regression ``change`` is still there: this run (exact work), or each of
    the last ``STILL_RUNS`` runs (timed), past the tolerance from the level before it the
    same way. An undone regression fails nothing."""
    recent = values[change.end :][-1 if exact else -STILL_RUNS :]
    if not exact and len(recent) < STILL_RUNS:
        return False
    up = change.after > change.before
    return all(past(change.before, v, tolerance) and (v > change.before) == up for v in recent)
