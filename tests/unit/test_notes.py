"""Issue 26: each note once per test, and an "unsettled" note only where warm-up would help.

The re-measurement runs are real pytest runs (``pytester``) whose judge always finds the
test unclear (a ``Judge`` that answers ``unclear`` with every name), so each test is
measured three times, deterministically; the unsettled rule is a pure function of its
rounds, tested with constructed timings.
"""

from __future__ import annotations

import json

import pytest

from pytest_llmperf.measure import timing

#: A test measured three times (the judge's re-measurement), whose first round is cold.
REMEASURED = """
import time
from pytest_llmperf.judge.verdict import Judge

class AlwaysUnclear(Judge):
    def unclear(self, result, names):
        return list(names)

calls = []

def cold():
    calls.append(1)
    time.sleep(0.2 if len(calls) == 1 else 0.002)

def test_it(llmperf):
    llmperf.judge = AlwaysUnclear(None, where="nowhere")
    llmperf.pedantic(cold, warmup=0, rounds=5)
    assert len(llmperf.last.times) == 15  # three passes, pooled
"""


def test_a_remeasured_test_says_its_unsettled_note_once(pytester: pytest.Pytester) -> None:
    """The note of each pass had other numbers (the rounds are pooled), so the once-only
    rule for identical notes let all three through."""
    pytester.makepyfile(test_cold=REMEASURED)
    args = ("--llmperf", "-p", "no:cacheprovider", "--llmperf-report=r.json")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    (r,) = json.loads((pytester.path / "r.json").read_text())["results"]
    unsettled = [n for n in r["notes"] if n.startswith("not settled")]
    assert len(unsettled) == 1, r["notes"]
    assert result.stdout.str().count("not settled") == 1


# ------------------------------------------------------------------ the unsettled rule

#: Reference 001 without warm-up: the first step many times the rest.
COLD = [0.5] + [0.01] * 9


def test_a_cold_first_round_without_warm_up_is_flagged():
    note = timing.unsettled_note(COLD, [], 0)
    assert note is not None and note.startswith("not settled: the first round")
    assert "add warm-up" in note


@pytest.mark.parametrize(
    "times",
    [
        # a 1.5 ms round preempted three times, scattered (the shipped suite's cells)
        [1.5e-3, 1.5e-3, 6e-3, 1.4e-3, 7e-3, 1.5e-3, 1.6e-3, 5e-3, 1.5e-3, 1.5e-3],
        # the first round preempted (7x), after warm-up calls that had settled
        [10.5e-3] + [1.5e-3] * 9,
    ],
)
def test_shared_runner_noise_on_a_warmed_measurement_is_not_called_unsettled(times):
    """Five warm-up calls that agreed with the rounds: slow rounds are another process
    taking the core, and more warm-up does not cure them (18 such notes on the suite)."""
    warmed = [1.6e-3, 1.5e-3, 1.5e-3, 1.5e-3, 1.5e-3]
    assert timing.unsettled_note(times, warmed, 5) is None


def test_a_warm_up_still_falling_when_the_rounds_began_is_flagged():
    """One warm-up call, itself 70x the rounds' median, and a first round still 5x: the
    measurement was still warming up, so more warm-up is the true advice."""
    note = timing.unsettled_note([5e-3] + [1e-3] * 9, [70e-3], 1)
    assert note is not None and "the last still 70x the median" in note
    assert "a count larger than 1" in note


def test_a_first_round_far_past_interference_is_flagged_even_after_warm_up():
    note = timing.unsettled_note(COLD, [0.01, 0.01], 2)
    assert note is not None and "50x" in note
