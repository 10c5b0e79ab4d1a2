"""Issue 26: the terminal summary names the tests that had no baseline, not only a count."""

from __future__ import annotations

import pytest

#: Tests that only record a number: judged like any other, in no time.
RECORDED = """
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_score(llmperf, i):
    llmperf.record("score", 1.0 + i)
"""


def test_one_test_without_a_baseline_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_scores=RECORDED.format(n=1))
    result = pytester.runpytest("--llmperf", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "1 no-baseline",
            "1 test not compared for time, memory and energy *: no baseline in *",
            "    test_scores.py::test_score[[]0[]]: no machine baseline",
        ]
    )


def test_many_tests_without_a_baseline_are_named_up_to_ten(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_scores=RECORDED.format(n=12))
    result = pytester.runpytest("--llmperf", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)
    out = result.stdout.str()
    named = [line for line in out.splitlines() if line.endswith(": no machine baseline")]
    assert named == [
        f"    test_scores.py::test_score[{i}]: no machine baseline" for i in range(10)
    ], out
    result.stdout.fnmatch_lines(["    ... and 2 more"])
    # Recorded: nothing is missing any more, and nothing is named.
    pytester.runpytest("--llmperf", "-p", "no:cacheprovider", "--llmperf-update-baselines")
    again = pytester.runpytest("--llmperf", "-p", "no:cacheprovider").stdout.str()
    assert "no machine baseline" not in again and "12 pass" in again
