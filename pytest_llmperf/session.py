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
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .baselines import BaselineError, BaselineFile
from .config import Policy, RunOptions
from .judge.outcome import Verdict
from .judge.verdict import Judge
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

    # -- facts, found once ------------------------------------------------------------
    @functools.cached_property
    def device(self) -> Any:
        from .measure.device import current_device, worker_device

        if self.options.device:
            os.environ["LLMPERF_DEVICE"] = self.options.device
        device = worker_device(current_device())
        if device.type == "cpu" and self.options.threads:
            import torch

            torch.set_num_threads(self.options.threads)
        return device

    @property
    def tier(self) -> str:
        if self.options.tier != "auto":
            return self.options.tier
        return "smoke" if self.device.type == "cpu" else "standard"

    @functools.cached_property
    def device_info(self) -> dict[str, Any]:
        from .measure.device import device_key, device_name

        return {"key": device_key(self.device), "name": device_name(self.device)}

    @functools.cached_property
    def fingerprint(self) -> dict[str, Any]:
        from .measure.device import fingerprint

        return fingerprint(self.device)

    @property
    def rootdir(self) -> Path:
        return Path(str(self.config.rootpath))

    @functools.cached_property
    def baseline_path(self) -> Path:
        directory = Path(self.options.baselines_dir)
        if not directory.is_absolute():
            directory = self.rootdir / directory
        return directory / f"{self.device_info['key']}.json"

    @functools.cached_property
    def baseline(self) -> BaselineFile | None:
        """The device's baseline file, None if there is none; BaselineError if unusable."""
        from .baselines import load

        return load(self.baseline_path, self.device_info["key"])

    # -- per test ---------------------------------------------------------------------
    def policy_for(self, item: pytest.Item) -> Policy:
        """The test's policy: run options, then its markers; ValueError names the test."""
        markers = reversed(list(item.iter_markers("llmperf")))
        policy = Policy.from_markers(markers, defaults=self.options.policy, where=item.nodeid)
        return replace(policy, strict=True) if self.options.strict else policy

    def judge_for(self, result: TestResult) -> Judge | None:
        """The test's judge; None when recording baselines (nothing to compare with)."""
        if self.options.update:
            return None
        baseline = self.baseline
        return Judge(
            baseline.entry(result.nodeid, result.tier) if baseline else None,
            where=f"{self.baseline_path} (device {self.device_info['key']}, tier {result.tier})",
            baseline_fingerprint=baseline.fingerprint if baseline else {},
            current_fingerprint=self.fingerprint,
        )

    def conclude(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, perf: Any
    ) -> None:
        """Turn what the test measured into its verdict, and a regression into its failure."""
        from .measure.oom import forget_last_error, is_oom, record_oom

        result: TestResult = perf.result
        result.duration_s = round(call.duration, 3)
        if call.excinfo is not None:
            if not is_oom(call.excinfo.value):
                return  # the test failed on its own: no verdict
            record_oom(result, call.excinfo.value)
            report.outcome = "passed"
            report.longrepr = None
            forget_last_error()
        if report.outcome == "skipped" or (not result.metrics and result.status is Status.OK):
            return  # nothing was measured: nothing to judge or store
        if perf.judge is None:
            result.verdict = Verdict.RECORDED
            result.verdict_lines = [f"recorded into {self.baseline_path}"]
        else:
            perf.judge.judge(result)
        if result.verdict.fails(perf.policy.strict) and not self.options.update:
            report.outcome = "failed"
            report.longrepr = self._failure_text(perf, result)
        # JSON-safe: xdist (execnet) cannot send params such as a torch.dtype to the controller.
        report.llmperf = json.loads(json.dumps(result.to_dict(), default=str))  # type: ignore[attr-defined]
        from .output.exporters import junit_properties

        # junitxml writes the properties of the teardown report, copied from the item.
        item.user_properties.extend(junit_properties(result))

    def _failure_text(self, perf: Any, result: TestResult) -> str:
        lines = [f"llmperf: {result.verdict} in {result.nodeid} on {self.device_info['name']}"]
        lines += ["  " + line for line in result.verdict_lines]
        lines += ["  note: " + n for n in result.notes]
        if self.options.profile_on_failure:
            lines.append("  " + self._profile(perf, result))
        return "\n".join(lines)

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
        if not self.options.enabled:
            return
        try:
            self.baseline  # noqa: B018 - a corrupt file stops the run before any measuring
        except BaselineError as exc:
            raise pytest.UsageError(str(exc)) from None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collects results here on the controller, also when they come from xdist workers."""
        data = getattr(report, "llmperf", None)
        if data and report.when == "call":
            self.results.append(TestResult.from_dict(data))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.options.enabled or not self._writes():
            return
        if self.options.update:
            self._write_baseline(session, exitstatus)
        if self.results:
            self._write_outputs()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.options.enabled or not self._is_controller():
            return
        if not self.results and not self.messages:
            return
        tr = terminalreporter
        tr.section("llmperf")
        if self.results:
            tr.line(
                f"device {self.device_info['name']} ({self.device_info['key']}), "
                f"tier {self.tier}, baselines {self.baseline_path}"
            )
            for line in summary_lines(self.results):
                tr.line(line)
        for m in self.messages:
            tr.line(m, red=m.startswith("ERROR"))

    # -- the end of the run ---------------------------------------------------------------
    def _is_controller(self) -> bool:
        return not hasattr(self.config, "workerinput")

    def _writes(self) -> bool:
        """Only the xdist controller, and only rank 0 under torch.distributed, writes."""
        from .measure import distributed

        return self._is_controller() and distributed.rank() == 0

    def _write_baseline(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self.messages.append(f"interrupted: {self.baseline_path} left unchanged")
            return
        if not self.results:
            return
        from .baselines import write

        try:
            n = write(
                self.baseline_path,
                device=self.device_info,
                fingerprint=self.fingerprint,
                results=self.results,
                pool=self.options.pool,
            )
            self.messages.append(
                f"wrote {n} entr{'y' if n == 1 else 'ies'} into {self.baseline_path}"
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

    def _write_outputs(self) -> None:
        from .output import exporters, write_report

        info = self.info()
        outputs = (
            (
                self.options.report,
                lambda p: write_report(p, self.results, info, hook=self.config.hook),
            ),
            (
                self.options.benchmark_json,
                lambda p: exporters.write_benchmark_json(p, self.results, info),
            ),
            (self.options.bmf, lambda p: exporters.write_bmf(p, self.results)),
        )
        for path, writer in outputs:
            if not path:
                continue
            try:
                writer(path)
                self.messages.append(f"wrote {path}")
            except (OSError, ValueError) as exc:
                self.messages.append(f"ERROR: could not write {path}: {exc}")
        if exporters.append_github_step_summary(self.results, info):
            self.messages.append("appended the verdicts to $GITHUB_STEP_SUMMARY")


def summary_lines(results: list[TestResult]) -> list[str]:
    """The terminal summary: every test with something to say, then the verdict counts."""
    from .output.tables import counts_line

    lines: list[str] = []
    for r in results:
        quiet = r.verdict in (None, Verdict.PASS, Verdict.RECORDED)
        if not quiet or r.notes or r.fingerprint_diff:
            lines.append(f"{str(r.verdict or '-').upper():13} {r.nodeid}")
            lines += [f"    {line}" for line in r.verdict_lines + [f"note: {n}" for n in r.notes]]
    lines.append(counts_line(results))
    return lines
