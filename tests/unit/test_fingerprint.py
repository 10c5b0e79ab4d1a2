"""The software fingerprint: where it differs from the baseline's, the verdict shows it.

Real pytest runs of the plugin (pytester, in-process: torch is already imported).
"""

from __future__ import annotations

import json
import re

import pytest
import torch

MODULE = """
import os
import time
import pytest

DELAY = float(os.environ.get("LLMPERF_TEST_DELAY", "0.01"))

# 300%: a 10 ms sleep overran by up to 12 ms at load 6 on 2 cores (+120%), never by 30 ms.
@pytest.mark.llmperf(warmup=1, rounds=7, drift_correction=False, remeasure=0, tolerance="300%")
def test_perf(llmperf):
    llmperf(time.sleep, DELAY)
"""


def _llmperf_section(text: str) -> str:
    """The lines of the terminal section named llmperf."""
    match = re.search(r"^=+ llmperf =+$(.*?)(?=^=+ |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no llmperf section in:\n{text}"
    return match.group(1)


def _record_baseline_with_old_torch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fp_mod=MODULE)
    rec = pytester.runpytest("--llmperf", "--llmperf-update-baselines", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").glob("*.json")
    data = json.loads(path.read_text())
    assert data["fingerprint"]["torch"] == torch.__version__
    data["fingerprint"]["torch"] = "2.0.0"
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def test_changed_torch_is_shown_beside_a_passing_verdict(pytester: pytest.Pytester) -> None:
    _record_baseline_with_old_torch(pytester)
    rec = pytester.runpytest("--llmperf", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=1)
    section = _llmperf_section(rec.stdout.str())
    expected = f"environment changed since the baseline: torch 2.0.0 -> {torch.__version__}"
    assert expected in section, section


def test_changed_torch_is_shown_beside_a_regression(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record_baseline_with_old_torch(pytester)
    # 10x slower than the baseline: 4.5x and more against a baseline slowed by load
    monkeypatch.setenv("LLMPERF_TEST_DELAY", "0.1")
    rec = pytester.runpytest("--llmperf", "-p", "no:cacheprovider")
    rec.assert_outcomes(failed=1)
    out = rec.stdout.str()
    expected = f"environment changed since the baseline: torch 2.0.0 -> {torch.__version__}"
    assert expected in _llmperf_section(out)
    # ... and in the test's own failure message, beside the regressed metric.
    failure = out.split("FAILURES", 1)[1].split("= llmperf =", 1)[0]
    assert "REGRESSION time" in failure and expected in failure, failure


def test_unchanged_fingerprint_shows_no_difference(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fp_mod=MODULE)
    rec = pytester.runpytest("--llmperf", "--llmperf-update-baselines", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=1)
    rec = pytester.runpytest("--llmperf", "-p", "no:cacheprovider")
    rec.assert_outcomes(passed=1)
    assert "environment changed" not in rec.stdout.str()
