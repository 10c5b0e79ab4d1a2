"""measure.timing's round loop and warm-up, driven by scripted samplers and a fake clock.

Deterministic: nothing here reads the real clock, so the stopping rules are
checked exactly, not on a noisy machine.
"""

from __future__ import annotations

import itertools
import math

import pytest

from pytest_llmperf.measure import timing
from pytest_llmperf.measure.sequence import Measurement, PairSampler
from pytest_llmperf.measure.timing import (
    AUTO_WARMUP_MAX_CALLS,
    MIN_STOP_ROUNDS,
    measure_rounds,
    relative_uncertainty,
    warm_up,
)


class FakeClock:
    """Stands in for the ``time`` module inside timing: advances only when a round runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Scripted:
    """A sampler whose rounds take ``cost`` fake seconds and yield values from ``values``."""

    def __init__(self, clock: FakeClock, values, cost: float = 0.001) -> None:
        self.clock, self.values, self.cost = clock, iter(values), cost
        self.batches: list[int] = []

    def sample(self, n: int) -> list[float]:
        self.batches.append(n)
        self.clock.now += n * self.cost
        return [next(self.values) for _ in range(n)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def run(sampler: Scripted, **kw):
    args = {"rounds": "auto", "min_rounds": 5, "max_rounds": 1000, "max_time": 100.0}
    args.update(precision=0.01, **kw)
    return measure_rounds(sampler, **args)


def test_fixed_rounds_are_one_batch(clock: FakeClock):
    calls = []
    sampler = Scripted(clock, itertools.repeat(1.0))
    out = run(sampler, rounds=7, between_batches=lambda: calls.append(1))
    assert out.values == [1.0] * 7 and out.batch_sizes == [7] and calls == [1]


def test_precise_samples_stop_at_the_first_batch_past_the_minimum(clock: FakeClock):
    sampler = Scripted(clock, itertools.repeat(1.0))
    out = run(sampler)
    n = len(out.values)
    assert n >= MIN_STOP_ROUNDS and n - out.batch_sizes[-1] < MIN_STOP_ROUNDS
    assert out.batch_sizes == sampler.batches and sum(out.batch_sizes) == n
    # a larger min_rounds is a floor too
    out = run(Scripted(clock, itertools.repeat(1.0)), min_rounds=40)
    assert len(out.values) >= 40


def test_noisy_samples_run_to_the_round_cap_and_never_past_it(clock: FakeClock):
    noisy = itertools.cycle([1.0, 2.0, 3.0])
    out = run(Scripted(clock, noisy), max_rounds=137)
    assert len(out.values) == 137


def test_the_time_budget_stops_the_loop(clock: FakeClock):
    noisy = itertools.cycle([1.0, 2.0, 3.0])
    out = run(Scripted(clock, noisy, cost=0.1), max_time=2.0)
    # 0.1 s a round, 2 s of budget: about 20 rounds, and growth never overshoots it much
    assert 20 <= len(out.values) <= 22
    assert clock.now == pytest.approx(0.1 * len(out.values))


def test_batches_grow_geometrically(clock: FakeClock):
    noisy = itertools.cycle([1.0, 2.0, 3.0])
    out = run(Scripted(clock, noisy), max_rounds=1000)
    assert out.batch_sizes[:4] == [5, 5, 5, 7] and max(out.batch_sizes) > 100


def test_relative_uncertainty_of_the_median():
    assert relative_uncertainty([1.0, 1.0]) == math.inf  # too few to tell
    assert relative_uncertainty([1.0] * 10) == 0.0
    xs = [1.0, 1.1, 0.9] * 30
    # 1.2533 x MAD x 1.4826 / sqrt(n) / median, with MAD = 0.1
    assert relative_uncertainty(xs) == pytest.approx(1.2533 * 0.1 * 1.4826 / math.sqrt(90))


class ScriptedTimer:
    """A RoundTimer stand-in: each call to ``run`` takes the next scripted time."""

    def __init__(self, times) -> None:
        self.times = iter(times)
        self.calls = 0

    def run(self, fn, n, setup=None):
        self.calls += n
        return [next(self.times) for _ in range(n)], fn()


def test_auto_warm_up_stops_once_three_calls_agree():
    timer = ScriptedTimer([0.05, 0.03, 0.02, 0.0101, 0.0100, 0.0102, 0.5])
    times = warm_up(timer, lambda: None, "auto", budget_s=100.0)
    assert times == [0.05, 0.03, 0.02, 0.0101, 0.0100, 0.0102]
    assert warm_up(ScriptedTimer([1.0, 1.0]), lambda: None, 2, 1.0) == [1.0, 1.0]
    assert warm_up(ScriptedTimer([]), lambda: None, 0, 1.0) == []


def test_a_pair_round_is_the_ratio_of_reference_to_candidate():
    ref, cand = (
        Measurement("ab.reference", call=lambda: None),
        Measurement("ab.candidate", call=lambda: None),
    )
    sampler = PairSampler(ScriptedTimer([3.0, 1.0, 4.0, 2.0]), ref, cand)  # ref, cand, ref, cand
    assert sampler.sample(2) == [3.0, 2.0]
    assert ref.times == [3.0, 4.0] and cand.times == [1.0, 2.0]
    assert sampler.ratios == [3.0, 2.0]


# ------------------------------------------------------------------ the unsettled note

COLD = [0.5] + [0.01] * 9  # a cold first round: 50x the median


def test_unsettled_note_flags_a_cold_first_round_and_not_one_preempted_round():
    assert timing.unsettled_note([0.01] * 9 + [0.5], []) is None  # one slow round of ten
    assert timing.unsettled_note([0.01] * 10, []) is None
    note = timing.unsettled_note(COLD, [])
    assert note is not None and note.startswith("not settled: the first round")


def test_unsettled_note_without_a_policy_suggests_auto_or_a_count():
    """No warm-up ran (or the policy is unknown): both remedies are new to the user."""
    for warmup in (None, 0):
        note = timing.unsettled_note(COLD, [], warmup)
        assert note is not None and "warmup='auto'" in note and "or a count" in note


def test_unsettled_note_after_a_count_asks_for_a_larger_one():
    note = timing.unsettled_note(COLD, [0.02, 0.01], 2)
    assert note is not None and "a count larger than 2" in note


def test_unsettled_note_after_auto_never_suggests_auto_again():
    """warmup='auto' already ran: the hint names why it stopped and what else to do."""
    cases = {
        # stopped by the time budget before three calls agreed
        "budget": ([0.05, 0.03, 0.02], "time budget", "raise max_time"),
        # stopped at the call cap, never settled
        "cap": ([0.01, 0.02] * (AUTO_WARMUP_MAX_CALLS // 2), "cap of", "warmup=40"),
        # settled, then the rounds were slow again
        "settled": ([0.03, 0.0101, 0.0100, 0.0102], "three calls agreed", "warmup=10"),
    }
    for name, (warm, why, remedy) in cases.items():
        note = timing.unsettled_note(COLD, warm, "auto")
        assert note is not None, name
        assert "add warm-up" not in note and "warmup='auto' or" not in note, (name, note)
        assert why in note and remedy in note, (name, note)
        assert f"after {len(warm)} warm-up call(s)" in note, (name, note)
