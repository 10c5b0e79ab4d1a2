"""One object per pytest run: its facts, its baseline file, its results, its end.

The facts (device, baseline key, fingerprint) are found once, when the first
performance test needs them (they import torch, so a plain ``pytest`` never
pays). The object is registered as a plugin (pytest-memray's Manager idiom), so
the hooks that belong to the whole run (collecting results, writing the
baseline and the reports, the terminal summary) reach it without a global.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .baselines import BaselineError, BaselineFile, Project, find_project, load, write
from .config import (
    Policy,
    RunOptions,
    flag,
    ungated_names,
    unmatched_marker_names,
    without_options,
)
from .judge.outcome import Verdict
from .judge.verdict import Judge, failure_text, strict_blind
from .measure import distributed
from .metrics import Kind
from .results import Status, TestResult


class LLMPerfSession:
    """Options, device facts, the baseline file and the collected results of one run."""

    def __init__(self, config: pytest.Config, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.results: list[TestResult] = []
        #: Lines for the terminal summary from the end of the session (writes, errors).
        self.messages: list[str] = []
        self.started = time.time()
        #: The ``--llmperf-compare`` controller (``compare.controller``), when comparing.
        self.compare: Any = None
        #: The ``--llmperf-history`` recorder (``history.recorder``), when given.
        self.history: Any = None
        #: (test id, why) of performance tests that measured nothing.
        self.unmeasured: list[tuple[str, str]] = []
        #: Performance tests whose body ran once, unmeasured (a run without --llmperf).
        self.ran_once: list[str] = []
        #: torch's intra-op threads before --llmperf-threads set them (restored at the end).
        self._threads_before: int | None = None

    # -- facts, found once ------------------------------------------------------------
    @functools.cached_property
    def device(self) -> Any:
        """The device to measure on; one this machine lacks is a usage error naming the
        option (or LLMPERF_DEVICE) and the devices there are. Found at session start when
        measuring, so the error stops the run before any test."""
        from .measure import device as dev

        try:
            if self.options.device:
                dev.check_device(self.options.device, self.options.device_from)
                os.environ["LLMPERF_DEVICE"] = self.options.device
            device = dev.make_current(dev.worker_device(dev.current_device()))
        except dev.DeviceError as exc:
            raise pytest.UsageError(str(exc)) from None
        if device.type == "cpu" and self.options.threads:
            import torch

            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.options.threads)
        return device

    @property
    def tier(self) -> str:
        if self.options.tier != "auto":
            return self.options.tier
        return "smoke" if self.device.type == "cpu" else "standard"

    @functools.cached_property
    def device_info(self) -> dict[str, Any]:
        """The machine file's key (``--llmperf-machine`` or the device's model) and name."""
        from .measure.device import device_key, device_name

        key = self.options.machine or device_key(self.device)
        return {"key": key, "name": device_name(self.device)}

    @functools.cached_property
    def work_info(self) -> dict[str, Any]:
        """The work file's key: the device type, shared by every model of it."""
        from .measure.device import device_name

        kind = self.device.type
        return {"key": kind, "name": kind if kind == "cpu" else device_name(self.device)}

    @functools.cached_property
    def work_fingerprint(self) -> dict[str, Any]:
        """The dispatch context: stamped on each work entry, and what picks the entry a
        test is judged against (``measure.dispatch``)."""
        from .measure.dispatch import context

        return context(self.fingerprint, self.device)

    @functools.cached_property
    def fingerprint(self) -> dict[str, Any]:
        from .measure.device import fingerprint

        return fingerprint(self.device)

    @property
    def rootdir(self) -> Path:
        return Path(str(self.config.rootpath))

    @property
    def baselines_dir(self) -> Path:
        directory = Path(self.options.baselines_dir)
        return directory if directory.is_absolute() else self.rootdir / directory

    @functools.cached_property
    def project(self) -> Project:
        """The project whose baseline files this run reads and writes (``find_project``)."""
        return find_project(self.rootdir, self.options.project, self.options.project_from)

    @functools.cached_property
    def baseline_path(self) -> Path:
        return self.baselines_dir / f"{self.device_info['key']}.json"

    @functools.cached_property
    def work_path(self) -> Path:
        return self.baselines_dir / "work" / f"{self.work_info['key']}.json"

    @functools.cached_property
    def baseline(self) -> BaselineFile | None:
        """The machine's baseline file, None if there is none; BaselineError if unusable
        or another project's."""
        return load(self.baseline_path, self.device_info["key"], self.project)

    @functools.cached_property
    def work_baseline(self) -> BaselineFile | None:
        """The device type's work baseline, None if there is none; BaselineError if unusable
        or another project's."""
        return load(self.work_path, self.work_info["key"], self.project)

    # -- per test ---------------------------------------------------------------------
    def policy_for(self, item: pytest.Item) -> Policy:
        """The test's policy: run options, then its markers; ValueError names the test."""
        markers = reversed(list(item.iter_markers("llmperf")))
        policy = Policy.from_markers(markers, defaults=self.options.policy, where=item.nodeid)
        return replace(policy, strict=True) if self.options.strict else policy

    def judge_for(self, result: TestResult) -> Judge | None:
        """The test's judge; None when recording baselines (nothing to compare with) and in
        a compare worker (its controller judges)."""
        from . import compare

        if self.options.update or compare.in_worker:
            return None
        from .measure.dispatch import nearest

        baseline, work = self.baseline, self.work_baseline
        entries = work.entries(result.nodeid, result.tier) if work else []
        work_entry, differs = nearest(entries, self.work_fingerprint)
        return Judge(
            baseline.entry(result.nodeid, result.tier) if baseline else None,
            where=f"{self.baseline_path} (machine {self.device_info['key']}, tier {result.tier})",
            baseline_fingerprint=baseline.fingerprint if baseline else {},
            current_fingerprint=self.fingerprint,
            work_entry=work_entry,
            work_where=f"{self.work_path} (tier {result.tier})",
            work_mismatch=", ".join(differs),
        )

    def conclude(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, perf: Any
    ) -> None:
        """Turn what the test measured into its verdict, and a regression into its failure:
        the steps below in order; one that settles the test ends it."""
        result: TestResult = perf.result
        result.duration_s = round(call.duration, 3)
        if call.excinfo is not None and not _ran_out_of_memory(call.excinfo.value, report, result):
            return  # the test failed on its own: no verdict
        if report.outcome == "skipped" or (not result.metrics and result.status is Status.OK):
            return  # nothing was measured: nothing to judge or store
        if _marker_typo(item, report, result):
            return
        if isinstance(perf.policy.gate, tuple) and result.status is Status.OK:
            source = "@pytest.mark.llmperf(gate=...)"
            metrics, asks = result.metrics.values(), perf.policy.gates
            for note in ungated_names(source, perf.policy.gate, metrics, self.device.type, asks):
                result.note(note)
        self._judge(perf, result)
        self._fail_on_verdict(report, perf, result)
        attach_result(report, result)
        self._add_junit_properties(item, result)

    def _judge(self, perf: Any, result: TestResult) -> None:
        """The judge's verdict (a gate blind to its tolerance is said, or under strict
        inconclusive); "recorded" when there is nothing to compare with."""
        if perf.judge is None:
            result.verdict = Verdict.RECORDED
            result.verdict_lines = [f"recorded into {self.baseline_path}"]
            return
        perf.judge.judge(result)
        if self.history is not None:
            self.history.judge(result)
        strict_blind(result, perf.policy.strict)

    def _fail_on_verdict(self, report: pytest.TestReport, perf: Any, result: TestResult) -> None:
        """A verdict that fails (under strict, one that could not judge too) is the test's
        failure, with the trace or snapshot --llmperf-profile-on-failure took; a refresh
        fails nothing."""
        if not result.verdict.fails(perf.policy.strict) or self.options.update:
            return
        profile = [self._profile(perf, result)] if self.options.profile_on_failure else []
        report.outcome = "failed"
        report.longrepr = failure_text(result, f"on {self.device_info['name']}", profile)

    def _add_junit_properties(self, item: pytest.Item, result: TestResult) -> None:
        """junitxml writes the properties of the teardown report, copied from the item. A
        compare worker's result is not the verdict: its controller adds the judged one's."""
        from . import compare
        from .output.exporters import junit_properties

        if not compare.in_worker:
            item.user_properties.extend(junit_properties(result))

    def _profile(self, perf: Any, result: TestResult) -> str:
        memory = any(
            "memory" in line and line.startswith("REGRESSION") for line in result.verdict_lines
        )
        try:
            path = perf.profile(self.rootdir / ".llmperf-traces", memory=memory)
        except Exception as exc:  # diagnosis must never hide the verdict
            return f"profiling failed: {exc}"
        kind = "memory snapshot" if path and path.suffix == ".pickle" else "profiler trace"
        return f"{kind}: {path}" if path else "nothing to profile (no measured callable)"

    # -- the run's hooks ----------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from . import compare

        if self.options.enabled and self.options.device:
            self.device  # noqa: B018 - a device this machine lacks: a usage error before any test
        if not self.options.enabled or self.options.compare or compare.in_worker:
            return
        try:  # a corrupt file stops the run before any measuring
            self.baseline  # noqa: B018
            self.work_baseline  # noqa: B018
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collects results here on the controller, also when they come from xdist workers."""
        data = getattr(report, "llmperf", None)
        if data and report.when == "call":
            self.results.append(TestResult.from_dict(data))
        unmeasured = getattr(report, "llmperf_unmeasured", None)
        if unmeasured and report.when == "call":
            self.unmeasured.append((report.nodeid, unmeasured))

    def measured_nothing(self, item: pytest.Item, report: pytest.TestReport, why: str) -> None:
        """A performance test that measured nothing gates nothing: said in the summary, and
        under --llmperf-strict (or the marker's strict) its failure."""
        from . import compare

        if report.outcome != "passed" or compare.in_worker:
            return
        report.llmperf_unmeasured = why  # type: ignore[attr-defined]
        policy = self.policy_for(item)
        if policy.strict:
            report.outcome = "failed"
            report.longrepr = (
                f"llmperf: {item.nodeid} measured nothing: {why}; a performance test under "
                f"{flag('strict')} must measure (llmperf(fn), llmperf.pedantic or llmperf.record)"
            )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.options.enabled or not self._writes():
            return
        if self.options.update:
            self._write_baseline(session, exitstatus)
        if self.results:
            self._write_outputs(session)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Give torch back the thread count it had: a run inside another process (pytester,
        ``pytest.main``) must not leave that process on --llmperf-threads."""
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.options.enabled and self.ran_once:
            n = len(self.ran_once)
            terminalreporter.write_line(
                f"llmperf: {n} performance test{'s' if n != 1 else ''} ran once, unmeasured "
                f"(`pytest {flag('')}` measures and gates them; {flag('skip')} skips them)"
            )
        if not self.options.enabled or not self._is_controller():
            return
        if not self.results and not self.messages and not self.unmeasured:
            return
        tr = terminalreporter
        tr.section("llmperf")
        if self.unmeasured:
            n = len(self.unmeasured)
            tr.line(
                f"{n} performance test{'s' if n != 1 else ''} measured nothing, so "
                f"{'they gate' if n != 1 else 'it gates'} nothing ({flag('strict')} fails "
                f"{'them' if n != 1 else 'it'}):",
                yellow=True,
            )
            for line in named(f"{nodeid}: {why}" for nodeid, why in self.unmeasured):
                tr.line(line, yellow=True)
        if self.results:
            against = (
                f"compared with the reference {self.compare.tree.label}, interleaved"
                if self.compare
                else f"baselines {self.baseline_path} and {self.work_path}"
            )
            tr.line(
                f"device {self.device_info['name']} ({self.device_info['key']}), "
                f"tier {self.tier}, {against}"
            )
            from .measure.energy import why_no_energy

            why = why_no_energy(self.device)
            metrics = [m for r in self.results for m in r.metrics.values()]
            gate = self.options.policy.run_gate or ()
            ungated = ungated_names(flag("gate"), gate, metrics, self.device.type, scope="this run")
            for line in [why, *ungated]:
                if line:
                    tr.line(line, yellow=True)
            for line in summary_lines(self.results):
                tr.line(line)
            for line in self.compare.summary_lines() if self.compare else self._missing_lines():
                tr.line(line, yellow=True)
        for m in self.messages:
            tr.line(m, red=m.startswith("ERROR"))

    def _missing_lines(self) -> list[str]:
        """One line per baseline file that lacked tests, with the count and the command that
        records them, then the tests by name (``missing_lines``)."""
        command = " ".join(["pytest", *refresh_args(self.config.invocation_params.args)])
        lines = []
        for scope, what, path in (
            (
                "machine",
                f"time, memory and energy (machine {self.device_info['key']})",
                self.baseline_path,
            ),
            ("work", f"work ({self.work_info['key']})", self.work_path),
        ):
            n = sum(scope in r.missing_baselines for r in self.results)
            if n:
                lines.append(
                    f"{n} test{'s' if n != 1 else ''} not compared for {what}: no baseline "
                    f"in {path}; record with: {command}"
                )
        return lines + missing_lines(self.results)

    # -- the end of the run ---------------------------------------------------------------
    def _is_controller(self) -> bool:
        from . import compare

        return not hasattr(self.config, "workerinput") and not compare.in_worker

    def _writes(self) -> bool:
        """Only the xdist controller, and only rank 0 under torch.distributed, writes."""
        return self._is_controller() and distributed.rank() == 0

    def _write_baseline(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self.messages.append(f"interrupted: {self.baseline_path} left unchanged")
            return
        machine, work = split_by_file(self.results)
        for path, device, fingerprint, results, stack in (
            (self.baseline_path, self.device_info, self.fingerprint, machine, None),
            (self.work_path, self.work_info, self.work_fingerprint, work, self.work_fingerprint),
        ):
            if not results:
                continue
            try:
                # As read at the start (the write re-reads it under the lock): one that
                # named no project is adopted by this refresh, which is said.
                old = self.baseline if stack is None else self.work_baseline
                n = write(
                    path,
                    device=device,
                    fingerprint=fingerprint,
                    results=results,
                    pool=self.options.pool,
                    stack=stack,
                    project=self.project,
                )
                self.messages.append(f"wrote {n} entr{'y' if n == 1 else 'ies'} into {path}")
                if old is not None and old.project is None:
                    self.messages.append(
                        f"{path} named no project (written before baseline files recorded "
                        f"one): adopted for this project {self.project.name!r}; a run of "
                        "another project now refuses it"
                    )
            except (BaselineError, OSError) as exc:
                self.messages.append(f"ERROR: {exc}")
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def info(self) -> dict[str, Any]:
        """The run as reports and exporters describe it."""
        try:
            baseline_file = str(self.baseline_path.relative_to(self.rootdir))
        except ValueError:
            baseline_file = str(self.baseline_path)
        return {
            "device": self.device_info,
            "fingerprint": self.fingerprint,
            "tier": self.tier,
            "baseline_file": baseline_file,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "duration_s": round(time.time() - self.started, 3),
        }

    def _write_outputs(self, session: pytest.Session) -> None:
        """Every report and export asked for. One that cannot be written is an ERROR line
        naming it, its path and why, and fails the run (exit 3, as a baseline that cannot
        be written does: a CI gate that silently lost its report is a broken gate); the
        others are still written."""
        from .output import exporters, write_report
        from .output.files import failure_reason

        info = self.info()
        outputs = (
            (
                flag("report"),
                self.options.report,
                lambda p: write_report(p, self.results, info, hook=self.config.hook),
            ),
            (
                flag("benchmark-json"),
                self.options.benchmark_json,
                lambda p: exporters.write_benchmark_json(p, self.results, info),
            ),
            (flag("bmf"), self.options.bmf, lambda p: exporters.write_bmf(p, self.results)),
            (
                "$GITHUB_STEP_SUMMARY",
                os.environ.get("GITHUB_STEP_SUMMARY"),
                lambda p: exporters.write_github_step_summary(p, self.results, info),
            ),
        )
        for what, path, writer in outputs:
            if not path:
                continue
            try:
                writer(path)
            except Exception as exc:  # a conftest's report hook too: the others still get written
                self.messages.append(f"ERROR: could not write {what} {path}: {failure_reason(exc)}")
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            else:
                summary = what == "$GITHUB_STEP_SUMMARY"
                self.messages.append(
                    f"appended the verdicts to {what} ({path})" if summary else f"wrote {path}"
                )


#: Tests named in one list of the summary (those that measured nothing, those without a
#: baseline); the rest are counted.
SHOWN_TESTS = 10


def named(lines: Iterable[str], shown: int = SHOWN_TESTS) -> list[str]:
    """The first ``shown`` lines, indented under their heading, then how many more."""
    lines = list(lines)
    out = [f"    {line}" for line in lines[:shown]]
    if len(lines) > shown:
        out.append(f"    ... and {len(lines) - shown} more")
    return out


def missing_lines(results: list[TestResult], shown: int = SHOWN_TESTS) -> list[str]:
    """The tests a baseline file lacked, by name, those with no baseline at all first: a
    summary that said ``1 no-baseline`` left the reader to search the report for which."""
    missing = sorted(
        (r for r in results if r.missing_baselines),
        key=lambda r: r.verdict is not Verdict.NO_BASELINE,
    )
    return named(
        (f"{r.nodeid}: no {' or '.join(r.missing_baselines)} baseline" for r in missing), shown
    )


#: A note this many tests share is said once in the terminal summary, with its count.
SHARED_NOTE_TESTS = 4


def summary_lines(results: list[TestResult]) -> list[str]:
    """The terminal summary: every test with something to say, then the verdict counts."""
    from .output.tables import counts_line, detectable_line, work_gate_lines

    lines: list[str] = []
    # A note many tests share (a blind gate, no PyTorch operator seen) is said once, with
    # its count: at 2,000 tests, a line per test buries the regressions.
    seen = Counter(n for r in results for n in set(r.notes))
    shared = {n for n, k in seen.items() if k >= SHARED_NOTE_TESTS}
    for r in results:
        # A test with nothing to compare against is counted once, not listed: the
        # session adds one line per baseline file with the command that records them.
        quiet = r.verdict in (None, Verdict.PASS, Verdict.RECORDED, Verdict.NO_BASELINE)
        loud = not quiet or bool(r.fingerprint_diff)
        notes = [f"note: {n}" for n in r.notes if n not in shared]
        said = (r.verdict_lines if loud else []) + notes
        if said:
            lines.append(f"{str(r.verdict or '-').upper():13} {r.nodeid}")
            lines += [f"    {line}" for line in said]
    for note in sorted(shared, key=lambda n: (-seen[n], n)):
        lines.append(f"note ({seen[note]} tests): {note}")
    lines.append(counts_line(results))
    lines += work_gate_lines(results)
    seen = detectable_line(results)
    if seen:
        lines.append(seen)
    return lines


def split_by_file(results: list[TestResult]) -> tuple[list[TestResult], list[TestResult]]:
    """Each result as the machine file stores it (everything but work) and as the work file
    does (work metrics and their by-name counts); a status with no metrics goes to both."""
    machine, work = [], []
    for r in results:
        counted = {k: m for k, m in r.metrics.items() if m.kind is Kind.WORK}
        rest = {k: m for k, m in r.metrics.items() if m.kind is not Kind.WORK}
        machine.append(replace(r, metrics=rest, work={}))
        if counted or not r.metrics:
            work.append(replace(r, metrics=counted))
    return machine, work


#: Options of a comparing run that a refresh does not need (with their values).
_NOT_FOR_REFRESH = (flag("gate"), flag("report"), "--junitxml")


def refresh_args(args: tuple[str, ...] | list[str]) -> list[str]:
    """This run's arguments as a refresh: same tests and options, without what only a
    comparing run needs, plus ``--llmperf-update-baselines``."""
    kept = without_options(args, _NOT_FOR_REFRESH, [flag("strict")])
    return [*kept, flag("update-baselines")]


# -- the steps of ``LLMPerfSession.conclude`` that need no session ------------------------
def _ran_out_of_memory(error: BaseException, report: pytest.TestReport, result: TestResult) -> bool:
    """Whether the test's error is running out of memory: then that is its result (status
    oom, judged like any other), not its failure."""
    from .measure.oom import forget_last_error, is_oom, record_oom

    if not is_oom(error):
        return False
    record_oom(result, error)
    report.outcome = "passed"
    report.longrepr = None
    forget_last_error()
    return True


def _marker_typo(item: pytest.Item, report: pytest.TestReport, result: TestResult) -> bool:
    """Whether a name in the marker's gate= or tolerance keys matches no metric: the test
    could never fail on it, so that is its failure. After an OOM its metrics are not all
    known: not checked."""
    if result.status is not Status.OK:
        return False
    kinds = {name: m.kind for name, m in result.metrics.items()}
    typo = unmatched_marker_names(result.nodeid, item.iter_markers("llmperf"), kinds)
    if typo:  # a typo in gate= or a tolerance key: the test could never fail
        report.outcome = "failed"
        report.longrepr = typo
    return bool(typo)


def attach_result(report: pytest.TestReport, result: TestResult) -> None:
    """The result on its call report, where the session collects it, JSON-safe: xdist
    (execnet) and a compare worker's channel cannot send params such as a torch.dtype."""
    report.llmperf = json.loads(json.dumps(result.to_dict(), default=str))  # type: ignore[attr-defined]
