"""The reports pytest prints for a compared test.

The candidate's worker ran the test as pytest runs any test. Its reports come to
the controller serialized by pytest's own hook (``pytest_report_to_serializable``,
as pytest-xdist sends them) and are rebuilt by its twin, so a skip, an xfail, an
error in setup or teardown, the test's properties and its captured output read as
the worker saw them. The comparison changes only what it decides, as
``LLMPerfSession.conclude`` does in a run of one tree: the call report's outcome
and failure when the verdict fails, its result (``llmperf``), and the JUnit
properties. Reports are made here by hand only where no worker report exists
(``made``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ..output.exporters import junit_properties
from ..results import TestResult
from ..session import attach_result


def serialized(config: pytest.Config, report: pytest.TestReport) -> dict[str, Any]:
    """A worker's report for the controller: pytest's serialization, JSON-safe (a property
    pytest would write with ``str`` is sent as its ``str``)."""
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    return json.loads(json.dumps(data, default=str))


def rebuilt(config: pytest.Config, data: list[dict[str, Any]]) -> list[pytest.TestReport]:
    """A worker's reports as pytest made them there. JSON made lists of their tuples, which
    the terminal and junitxml read as tuples (a skip's ``(path, line, reason)``)."""
    reports = []
    for d in data:
        report = config.hook.pytest_report_from_serializable(config=config, data=d)
        report.location = tuple(report.location)
        if isinstance(report.longrepr, list):
            report.longrepr = tuple(report.longrepr)
        report.sections = [tuple(s) for s in report.sections]
        report.user_properties = [tuple(p) for p in report.user_properties]
        reports.append(report)
    return reports


def call_report(reports: list[pytest.TestReport]) -> pytest.TestReport | None:
    """The report of the test's body; None when setup failed or skipped it."""
    return next((r for r in reports if r.when == "call"), None)


def apply_verdict(reports: list[pytest.TestReport], result: TestResult, failure: str) -> None:
    """The comparison's verdict on the candidate's reports: ``failure`` (when it fails, ""
    when not) is the call report's; the result is on the call report, where the session
    collects it; its JUnit properties on the teardown report, whose junitxml writes."""
    call = call_report(reports)
    assert call is not None
    if failure:
        call.outcome = "failed"
        call.longrepr = failure
    attach_result(call, result)
    for report in reports:
        if report.when == "teardown":
            report.user_properties.extend(junit_properties(result))


def made(item: pytest.Item, outcome: str, longrepr: Any, start: float) -> list[pytest.TestReport]:
    """setup, call and teardown reports as pytest would have made them, where the worker
    made none: it died, it did not collect the test, or the comparison was refused.
    ``outcome`` "error" is pytest's ERROR, in setup: the comparison itself cannot be
    trusted; "failed" is the call's."""
    stop = time.time()
    when_failed = "call"
    if outcome == "error":
        outcome, when_failed = "failed", "setup"
    reports = []
    for when in ("setup", "call", "teardown"):
        if when_failed == "setup" and when == "call":
            continue
        reports.append(
            pytest.TestReport(
                item.nodeid,
                item.location,
                {k: 1 for k in item.keywords},
                outcome if when == when_failed else "passed",
                longrepr if when == when_failed else None,
                when,
                duration=stop - start if when == "call" else 0.0,
                start=start,
                stop=stop,
                user_properties=list(item.user_properties),
            )
        )
    return reports
