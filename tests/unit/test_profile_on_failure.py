"""--llmperf-profile-on-failure: a regressed test is re-run once under torch.profiler
and its failure message names the saved chrome trace.

Real pytest runs of the plugin (pytester, in-process: torch is already imported).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch  # noqa: F401 - imported before pytester snapshots sys.modules
import torch.profiler  # noqa: F401

MODULE = """
import os
import time
import pytest

SLOW = float(os.environ.get("LLMPERF_TEST_SLOW", "0.01"))

def work(delay):
    time.sleep(delay)

@pytest.mark.llmperf(warmup=1, rounds=7, drift_correction=False, remeasure=0, tolerance="50%")
def test_regressed(llmperf):
    llmperf(work, SLOW)

# 300%: a 10 ms sleep overran by up to 12 ms at load 6 on 2 cores (+120%), never by 30 ms.
@pytest.mark.llmperf(warmup=1, rounds=7, drift_correction=False, remeasure=0, tolerance="300%")
def test_steady(llmperf):
    llmperf(work, 0.01)
"""


def test_regression_names_a_saved_chrome_trace(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_prof_mod=MODULE)
    rec = pytester.runpytest("--llmperf", "--llmperf-update-baselines", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=2)

    # 5x slower than the baseline: 2.3x and more against a baseline slowed by load
    monkeypatch.setenv("LLMPERF_TEST_SLOW", "0.05")
    rec = pytester.runpytest("--llmperf", "--llmperf-profile-on-failure", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=1, failed=1)
    rec.stdout.fnmatch_lines(["FAILED test_prof_mod.py::test_regressed*"])
    # The failure message: the FAILURES section, before the llmperf terminal section.
    message = rec.stdout.str().split("FAILURES", 1)[1].split("= llmperf =", 1)[0]
    assert "REGRESSION time" in message, message
    match = re.search(r"profiler trace: (\S+\.json)", message)
    assert match, f"no trace named in:\n{message}"
    trace = Path(match.group(1))
    if not trace.is_absolute():
        trace = pytester.path / trace
    assert trace.is_file(), trace
    data = json.loads(trace.read_text())
    events = data["traceEvents"] if isinstance(data, dict) else data
    assert isinstance(events, list) and events, "empty chrome trace"
    # The steady test passed and was not profiled: one trace only.
    traces = list(trace.parent.glob("*.json"))
    assert traces == [trace], traces
    assert "test_steady" not in trace.name


def test_without_the_option_nothing_is_profiled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_prof_mod=MODULE)
    rec = pytester.runpytest("--llmperf", "--llmperf-update-baselines", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=2)
    monkeypatch.setenv("LLMPERF_TEST_SLOW", "0.05")
    rec = pytester.runpytest("--llmperf", "-p", "no:cacheprovider", "-k", "regressed")
    rec.assert_outcomes(failed=1)
    assert "profiler trace" not in rec.stdout.str()
    assert not (pytester.path / ".llmperf-traces").exists()
