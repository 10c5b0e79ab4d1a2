"""Faults a user's tests can throw at the plugin, in real pytest runs (pytester).

Each case once broke a session or passed a test that gates nothing: a bare
``MemoryError()`` aborted the whole run, a marked test that never measured passed
silently under --llmperf-strict, and rounds fixed too low were re-measured twice
and then came out inconclusive or pass as the noise fell.
"""

from __future__ import annotations

import json

import pytest

FAULTS = """
import pytest

@pytest.mark.llmperf(rounds=2, warmup=0)
def test_bare_memoryerror_in_call(llmperf):
    def f():
        raise MemoryError()
    llmperf(f)

@pytest.mark.llmperf(rounds=2, warmup=0)
def test_bare_memoryerror_in_body(llmperf):
    raise MemoryError()

@pytest.mark.llmperf(rounds=2, warmup=0)
def test_marker_only():
    pass

def test_fixture_unused(llmperf):
    pass

def test_after():
    pass
"""


def test_a_bare_memoryerror_is_status_oom_and_the_session_goes_on(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user=FAULTS)
    result = pytester.runpytest("--llmperf", "--llmperf-report=r.json", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(passed=5)
    report = json.loads((pytester.path / "r.json").read_text())
    status = {r["nodeid"].split("::")[1]: r["status"] for r in report["results"]}
    assert status == {
        "test_bare_memoryerror_in_call": "oom",
        "test_bare_memoryerror_in_body": "oom",
    }
    out = result.stdout.str()
    assert "note: out of memory: MemoryError" in out


def test_a_performance_test_that_measures_nothing_is_said_and_strict_fails_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user=FAULTS)
    result = pytester.runpytest("--llmperf", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "2 performance tests measured nothing, so they gate nothing*",
            "*test_marker_only: marked @pytest.mark.llmperf but does not use the llmperf fixture",
            "*test_fixture_unused: no llmperf(...), llmperf.pedantic(...) or llmperf.record(...)*",
        ]
    )
    strict = pytester.runpytest("--llmperf", "--llmperf-strict", "-p", "no:cacheprovider")
    # the two that measured nothing, and the two out-of-memory ones (no baseline: strict)
    strict.assert_outcomes(passed=1, failed=4)
    strict.stdout.fnmatch_lines(["*test_marker_only measured nothing: marked*"])
    # the marker's own strict says the same, without the option
    pytester.makepyfile(
        test_user="""
import pytest

@pytest.mark.llmperf(strict=True)
def test_marker_only():
    pass
"""
    )
    pytester.runpytest("--llmperf", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    # and a plain pytest runs the body as any test, saying nothing of measuring
    plain = pytester.runpytest("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1)
    assert "measured nothing" not in plain.stdout.str()


FEW_ROUNDS = """
import os, time
import pytest

SLOW = float(os.environ.get("SLOW", "1"))

@pytest.mark.parametrize("i", range(4))
@pytest.mark.llmperf(rounds=3, warmup=0)
def test_few(llmperf, i):
    llmperf(time.sleep, 0.002 * SLOW)
"""


def test_rounds_too_few_to_judge_are_not_remeasured_and_said_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3 rounds a side cannot be judged, so no re-measurement can help: each test is measured
    once, passes unjudged even 5x slower (strict fails it), and the summary says so once."""
    pytester.makepyfile(test_few=FEW_ROUNDS)
    args = ("--llmperf", "-p", "no:cacheprovider", "--llmperf-report=r.json")
    pytester.runpytest(*args, "--llmperf-update-baselines").assert_outcomes(passed=4)
    monkeypatch.setenv("SLOW", "5")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=4)
    report = json.loads((pytester.path / "r.json").read_text())
    for r in report["results"]:
        assert len(r["metrics"]["time"]["samples"]) == 3, r["nodeid"]  # measured once
        assert r["verdict"] == "pass"
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        ["note (4 tests): time: cannot judge any change: fewer than 5 rounds in the baseline*"]
    )
    assert out.count("cannot judge any change") == 2  # the shared note, the "can see" line
    assert "INCONCLUSIVE" not in out
    strict = pytester.runpytest(*args, "--llmperf-strict")
    strict.assert_outcomes(failed=4)
