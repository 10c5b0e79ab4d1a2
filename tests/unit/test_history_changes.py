"""Change points and creep in one series (``history.changes``), on seeded series whose truth
is known: steps of 15% against 2-4% noise, creep of 1% per run, flat controls, spikes."""

from __future__ import annotations

import math
import random

import pytest

from pytest_llmperf.history.changes import analyse


def noisy(levels: list[float], sd: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [v * math.exp(rng.gauss(0.0, sd)) for v in levels]


def step(at: int, n: int = 40, size: float = 0.15) -> list[float]:
    return [1.0 + size * (i >= at) for i in range(n)]


def creep(first: int, runs: int, n: int = 40, per_run: float = 0.01) -> list[float]:
    return [1.0 + per_run * min(max(i - first + 1, 0), runs) for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_flat_series_have_no_change(seed: int) -> None:
    for sd in (0.02, 0.04):
        assert analyse(noisy([1.0] * 40, sd, seed), False, 0.10).changes == []


@pytest.mark.parametrize("seed", range(10))
def test_a_step_is_found_at_its_run(seed: int) -> None:
    changes = analyse(noisy(step(20), 0.02, seed), False, 0.10).changes
    assert [(c.kind, c.regression) for c in changes] == [("step", True)]
    assert abs(changes[0].start - 20) <= 1
    assert changes[0].change == pytest.approx(0.15, abs=0.04)


def test_a_step_down_in_throughput_is_a_regression_and_up_an_improvement() -> None:
    down = analyse(noisy([1 / v for v in step(20)], 0.02, 1), True, 0.10).changes
    up = analyse(noisy(step(20), 0.02, 1), True, 0.10).changes
    assert [c.regression for c in down] == [True]
    assert [c.regression for c in up] == [False]


@pytest.mark.parametrize("seed", range(10))
def test_creep_of_one_percent_per_run_is_creep_where_it_happened(seed: int) -> None:
    changes = analyse(noisy(creep(10, 15), 0.02, seed), False, 0.10).changes
    assert [c.kind for c in changes] == ["creep"]
    assert abs(changes[0].start - 10) <= 4 and abs(changes[0].end - 24) <= 4


def test_creep_below_the_tolerance_is_not_reported() -> None:
    assert analyse(noisy(creep(10, 5), 0.01, 3), False, 0.10).changes == []


def test_spikes_of_one_or_two_runs_are_not_changes() -> None:
    values = noisy([1.0] * 40, 0.02, 7)
    values[15] *= 1.5
    values[16] *= 1.4
    values[30] *= 2.0
    values[-1] *= 1.6  # the latest run alone: not confirmed
    assert analyse(values, False, 0.10).changes == []


def test_exact_series_change_exactly_where_the_value_does() -> None:
    """Work counts: every change of value past the tolerance (0: any) at its own run, and a
    run of one-way changes in consecutive runs is one creep over exactly those runs."""
    steps = analyse([100.0] * 20 + [115.0] * 20, False, 0.0)
    assert steps.exact and [(c.kind, c.start, c.end) for c in steps.changes] == [("step", 20, 20)]
    ramp = [100.0 + min(max(i - 9, 0), 15) for i in range(40)]
    got = analyse(ramp, False, 0.0).changes
    assert [(c.kind, c.start, c.end, c.before, c.after) for c in got] == [
        ("creep", 10, 24, 100.0, 115.0)
    ]
    two = analyse([5.0] * 10 + [6.0] + [7.0] * 10, False, 0.0).changes
    assert [(c.kind, c.start) for c in two] == [("step", 10), ("step", 11)]


def test_an_exact_change_within_the_tolerance_is_not_reported() -> None:
    assert analyse([100.0] * 10 + [104.0] * 10, False, 0.05).changes == []


def test_too_short_a_series_says_why() -> None:
    assert analyse([1.0], False, 0.1).why_not == "fewer than 2 runs"
    assert "too few" in analyse([1.0, 1.1, 0.9], False, 0.1).why_not


def test_counted_work_is_exact_from_its_first_runs() -> None:
    """Three runs of a work count, the last one stepped: a change at once, not "too few"."""
    got = analyse([196608.0, 196608.0, 262144.0], False, 0.0, exact=True)
    assert [(c.kind, c.start) for c in got.changes] == [("step", 2)]


#: Real runs (ms) of the first 28 commits of scripts/evidence/history_series.py on a shared
#: 2-core VM (load 1-1.5): 15% more forwards from commit 20 on in ``test_step``, 1% more
#: per commit from commit 10 on in ``test_creep``, nothing in ``test_flat[b]``. Note the
#: load spikes: 127.2 three runs after the step, 82.1 and 88.8 at commit 8, and the
#: machine's own drift of a few percent over the first ten commits.
REAL_STEP = [64.0, 66.3, 65.8, 67.4, 67.1, 66.7, 68.3, 66.7, 65.8, 65.9, 67.4, 72.2, 69.7,
             67.0, 66.4, 68.7, 65.8, 65.4, 65.9, 65.7, 76.3, 75.9, 77.8, 127.2, 76.6, 77.7,
             74.7, 96.2]  # fmt: skip
REAL_CREEP = [67.2, 66.1, 65.9, 63.7, 65.6, 68.0, 68.0, 69.9, 82.1, 69.7, 75.6, 70.5, 75.1,
              69.7, 70.6, 70.1, 70.6, 68.9, 71.9, 74.3, 75.1, 76.6, 76.2, 74.9, 76.7, 77.5,
              78.2, 75.7]  # fmt: skip
REAL_FLAT = [67.7, 65.5, 68.7, 65.3, 66.9, 68.3, 68.1, 70.5, 88.8, 70.7, 69.2, 67.8, 68.2,
             67.5, 67.6, 65.0, 63.8, 66.7, 66.6, 67.2, 66.9, 68.6, 66.0, 67.4, 66.5, 67.1,
             65.8, 68.1]  # fmt: skip


def test_real_runs_with_load_spikes_give_the_step_the_creep_and_a_flat_control() -> None:
    step_changes = analyse(REAL_STEP, False, 0.10).changes
    assert [(c.kind, c.start) for c in step_changes] == [("step", 20)]
    assert step_changes[0].change == pytest.approx(0.15, abs=0.03)
    creep_changes = analyse(REAL_CREEP, False, 0.10).changes
    assert [c.kind for c in creep_changes] == ["creep"]
    assert creep_changes[0].change == pytest.approx(0.15, abs=0.04)
    assert analyse(REAL_FLAT, False, 0.10).changes == []
