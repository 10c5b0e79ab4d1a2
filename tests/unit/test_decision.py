"""judge.decision: one metric's decision on seeded synthetic samples (fast, deterministic)."""

from __future__ import annotations

import random

import pytest

from pytest_llmperf.baselines import sketch
from pytest_llmperf.judge import decision as st
from pytest_llmperf.judge.decision import combine, decide, worse_ratio
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.judge.verdict import describe

PASS, REGRESSION, IMPROVED, INCONCLUSIVE = (
    Verdict.PASS,
    Verdict.REGRESSION,
    Verdict.IMPROVED,
    Verdict.INCONCLUSIVE,
)


def timings(seed: int, n: int = 200, centre: float = 0.004, sigma: float = 0.08) -> list[float]:
    """Round times of a CPU workload: log-normal around ``centre`` with a slow tail."""
    rng = random.Random(seed)
    xs = [centre * rng.lognormvariate(0.0, sigma) for _ in range(n)]
    for i in rng.sample(range(n), n // 20):  # 5% preempted rounds
        xs[i] *= 1 + 2 * rng.random()
    return xs


def med(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]


def time_decision(base: list[float], cur: list[float], **kw) -> st.Decision:
    kw.setdefault("tolerance", 0.10)
    return decide(
        "time",
        baseline=med(base),
        current=med(cur),
        higher_is_better=False,
        unit="s",
        baseline_samples=base,
        current_samples=cur,
        **kw,
    )


@pytest.mark.parametrize("seed", range(10))
def test_identical_distributions_pass(seed):
    d = time_decision(timings(seed), timings(seed + 100))
    assert d.outcome == PASS, describe(d)


@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_clear_slowdown_is_a_regression(factor):
    base = timings(1)
    cur = [x * factor for x in timings(2)]
    d = time_decision(base, cur)
    assert d.outcome == REGRESSION
    assert d.p_value is not None and d.p_value < st.ALPHA
    assert d.change == pytest.approx(factor - 1, rel=0.1)


def test_clear_speedup_is_improved():
    d = time_decision(timings(1), [x / 2 for x in timings(2)])
    assert d.outcome == IMPROVED


def test_small_change_within_tolerance_passes_even_if_significant():
    # 5% slower with tight samples: statistically clear, but inside a 10% tolerance.
    base = timings(3, sigma=0.01)
    cur = [x * 1.05 for x in timings(4, sigma=0.01)]
    assert time_decision(base, cur).outcome == PASS


def test_borderline_is_inconclusive():
    """Median past the tolerance, but the samples overlap too much to call it."""
    base = [0.8, 0.9, 1.0, 1.1, 1.2] * 4
    cur = [x * 1.15 for x in base]
    d = time_decision(base, cur)
    assert d.outcome == INCONCLUSIVE
    assert d.p_value is not None and d.p_value >= st.ALPHA


def test_few_samples_decide_on_values():
    d = decide("m", baseline=1.0, current=1.2, tolerance=0.1, higher_is_better=False)
    assert d.outcome == REGRESSION and d.p_value is None
    d = decide("m", baseline=1.0, current=1.05, tolerance=0.1, higher_is_better=False)
    assert d.outcome == PASS
    d = decide("m", baseline=1.0, current=0.8, tolerance=0.1, higher_is_better=False)
    assert d.outcome == IMPROVED
    # a sampled metric with fewer than MIN_SAMPLES rounds on a side is never failed on values:
    # short on this run's side, more rounds can settle it (re-measured, inconclusive) ...
    d = decide(
        "m",
        baseline=1.0,
        current=1.5,
        tolerance=0.1,
        higher_is_better=False,
        baseline_samples=[1.0] * 50,
        current_samples=[1.5] * (st.MIN_SAMPLES - 1),
    )
    assert d.outcome == INCONCLUSIVE and d.p_value is None and d.judged
    assert "too few" in describe(d)
    # ... short on the baseline's side, nothing this run does can: not judged, whatever the
    # values (a 5x change included), and not worth re-measuring
    for current in (1.0, 1.5, 5.0, 0.2):
        d = decide(
            "m",
            baseline=1.0,
            current=current,
            tolerance=0.1,
            higher_is_better=False,
            baseline_samples=[1.0] * (st.MIN_SAMPLES - 1),
            current_samples=[current] * 50,
        )
        assert d.outcome == PASS and not d.judged
        assert "the baseline has 4 rounds, fewer than 5: not judged" in d.tolerance_note


def test_higher_is_better_direction():
    base = [1000 / x for x in timings(5)]  # throughput
    halved = [1000 / (2 * x) for x in timings(6)]
    doubled = [2000 / x for x in timings(7)]
    kw = {"tolerance": 0.1, "higher_is_better": True, "unit": "tok/s"}
    d = decide(
        "throughput",
        baseline=med(base),
        current=med(halved),
        baseline_samples=base,
        current_samples=halved,
        **kw,
    )
    assert d.outcome == REGRESSION
    assert d.change == pytest.approx(-0.5, abs=0.05)
    assert "higher is better" in describe(d)
    d = decide(
        "throughput",
        baseline=med(base),
        current=med(doubled),
        baseline_samples=base,
        current_samples=doubled,
        **kw,
    )
    assert d.outcome == IMPROVED
    # same numbers read as lower-is-better flip the verdicts
    d = decide(
        "latency",
        baseline=med(base),
        current=med(doubled),
        baseline_samples=base,
        current_samples=doubled,
        tolerance=0.1,
        higher_is_better=False,
    )
    assert d.outcome == REGRESSION


def test_abs_slack_ignores_small_absolute_changes():
    mib = 2**20
    kw = {"tolerance": 0.05, "higher_is_better": False, "unit": "B", "abs_slack": 4 * mib}
    assert decide("peak_memory", baseline=1 * mib, current=4 * mib, **kw).outcome == PASS
    d = decide("peak_memory", baseline=1 * mib, current=6 * mib, **kw)
    assert d.outcome == REGRESSION
    assert "MiB" in describe(d)


def test_noise_floor_widens_the_tolerance():
    kw = {"tolerance": 0.10, "higher_is_better": False}
    assert decide("t", baseline=1.0, current=1.2, **kw).outcome == REGRESSION
    d = decide("t", baseline=1.0, current=1.2, noise_floor=0.3, **kw)
    assert d.outcome == PASS
    assert d.tolerance == pytest.approx(0.3)
    assert "widened" in describe(d)
    # a floor below the tolerance changes nothing
    d = decide("t", baseline=1.0, current=1.2, noise_floor=0.05, **kw)
    assert d.outcome == REGRESSION and d.tolerance == pytest.approx(0.10)
    assert d.tolerance_note == ""


def test_noise_floor_still_catches_a_clear_large_regression():
    base = timings(8)
    cur = [x * 2 for x in timings(9)]
    assert time_decision(base, cur, noise_floor=0.3).outcome == REGRESSION


def test_describe_names_everything():
    d = decide(
        "decode.throughput",
        baseline=100.0,
        current=80.0,
        tolerance=0.1,
        higher_is_better=True,
        unit="tok/s",
    )
    text = describe(d)
    for part in ("decode.throughput", "100 tok/s", "80 tok/s", "-20.0%", "tolerance 10%"):
        assert part in text


def test_sketch_keeps_quantiles():
    rng = random.Random(0)
    xs = [rng.lognormvariate(0, 0.5) for _ in range(10_000)]
    s = sketch(xs, size=64)
    assert len(s) == 64
    assert s == sorted(s)
    ref = sorted(xs)
    assert s[0] == ref[0] and s[-1] == ref[-1]
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        got = s[round(q * 63)]
        want = ref[round(q * (len(ref) - 1))]
        assert got == pytest.approx(want, rel=0.05), q
    short = [3.0, 1.0, 2.0]
    assert sketch(short) == [1.0, 2.0, 3.0]


def test_sketch_of_a_baseline_still_detects():
    """A baseline stored as a 64-point sketch decides like the full sample."""
    base = timings(10, n=1000)
    cur = [x * 2 for x in timings(11)]
    assert time_decision(sketch(base), cur).outcome == REGRESSION
    assert time_decision(sketch(base), timings(12)).outcome == PASS


def test_worse_ratio():
    assert worse_ratio(1.0, 2.0, False) == 2.0
    assert worse_ratio(2.0, 1.0, True) == 2.0
    assert worse_ratio(1.0, 0.5, False) == 0.5
    assert worse_ratio(0.0, 1.0, False) == float("inf")
    assert worse_ratio(1.0, 0.0, True) == float("inf")
    assert worse_ratio(0.0, 0.0, False) == 1.0


def test_zero_baseline_change():
    d = decide("m", baseline=0.0, current=0.0, tolerance=0.1, higher_is_better=False)
    assert d.outcome == PASS and d.change == 0.0
    d = decide("m", baseline=0.0, current=1.0, tolerance=0.1, higher_is_better=False)
    assert d.outcome == REGRESSION
    assert "from zero" in describe(d)


def _outcome(outcome: Verdict, p: float | None = None) -> st.Decision:
    return st.Decision("time", outcome, 1.0, 2.0, 1.0, 0.1, "s", p_value=p)


@pytest.mark.parametrize(
    "raw, corrected, combined",
    [
        # agreement keeps the outcome
        (REGRESSION, REGRESSION, REGRESSION),
        (IMPROVED, IMPROVED, IMPROVED),
        (PASS, PASS, PASS),
        (INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE),
        # a regression one side does not confirm is never a failure
        (REGRESSION, PASS, INCONCLUSIVE),
        (PASS, REGRESSION, INCONCLUSIVE),
        (REGRESSION, IMPROVED, INCONCLUSIVE),
        (REGRESSION, INCONCLUSIVE, INCONCLUSIVE),
        (INCONCLUSIVE, PASS, INCONCLUSIVE),
        # an improvement one side does not confirm is a plain pass
        (IMPROVED, PASS, PASS),
        (PASS, IMPROVED, PASS),
    ],
)
def test_raw_and_drift_corrected_must_agree(raw, corrected, combined):
    assert combine(_outcome(raw), _outcome(corrected)).outcome == combined


def test_agreeing_decisions_keep_the_weaker_p_value_and_the_corrected_change():
    corrected = _outcome(REGRESSION, p=0.004)
    corrected.drift_corrected_change = 0.8
    d = combine(_outcome(REGRESSION, p=0.001), corrected)
    assert d.p_value == 0.004 and d.drift_corrected_change == 0.8
    assert "drift-corrected change +80.0%" in describe(d)


def test_tolerance_comes_before_significance():
    """A clear (p ~ 0) but small change is a pass; a large but unclear one is not a failure."""
    tight = [1.0 + 0.001 * i for i in range(50)]
    d = time_decision(tight, [x * 1.08 for x in tight])
    assert d.outcome == PASS and d.p_value is None  # inside 10%: no test is even run
    wide = [0.2 + 0.08 * i for i in range(21)]  # median 1.0, spread 0.2 .. 1.8
    d = time_decision(wide, [x + 0.2 for x in wide])  # median 20% higher, mostly overlapping
    assert d.outcome == INCONCLUSIVE and d.p_value >= st.ALPHA


# --------------------------------------------------------------------------- paired decisions


def test_the_median_interval_is_the_sign_test_order_statistics():
    xs = list(range(20))
    # Binomial(20, 1/2): P(X <= 4) = 0.006 <= 1% < P(X <= 5) = 0.021
    assert st.median_interval(xs) == (4, 15)
    assert st.median_interval(list(range(7))) == (0, 6)  # 2**-7 < 1%
    assert st.median_interval(list(range(6))) == (float("-inf"), float("inf"))


def paired(ratios: list[float], **kw) -> st.Decision:
    kw.setdefault("tolerance", 0.10)
    kw.setdefault("higher_is_better", False)
    return st.decide_paired("time", ratios=ratios, reference=1.0, current=1.0, **kw)


def spread(centre: float, n: int = 15, width: float = 0.04) -> list[float]:
    return [centre * (1 - width + 2 * width * i / (n - 1)) for i in range(n)]


def test_paired_ratios_decide_regression_inconclusive_improved_and_pass():
    d = paired(spread(1.5))
    assert d.outcome is REGRESSION and d.pairs == 15 and d.ci[0] > 1.1
    assert paired(spread(1.0)).outcome is PASS
    assert paired(spread(0.5)).outcome is IMPROVED
    # Past the tolerance in the median, but half the pairs say otherwise: not clear.
    assert paired([1.0] * 6 + [1.5] * 9).outcome is INCONCLUSIVE
    assert paired([1.5, 1.5]).outcome is INCONCLUSIVE  # too few pairs to reach ALPHA


def test_a_throughput_ratio_below_one_is_the_regression_and_shown_in_its_own_terms():
    d = paired(spread(0.5), higher_is_better=True)
    assert d.outcome is REGRESSION
    assert d.ratio == pytest.approx(0.5) and d.ci[1] < 1 / 1.1
    line = describe(d)
    assert "candidate/reference x0.500" in line and "over 15 interleaved pairs" in line


def test_pairs_stop_once_the_interval_clears_the_tolerance():
    assert not st.paired_settled(spread(1.5, n=6), 0.1, False)  # fewer than MIN_PAIRS
    assert st.paired_settled(spread(1.5, n=7), 0.1, False)
    assert st.paired_settled(spread(1.0, n=7), 0.1, False)
    assert not st.paired_settled([0.9, 1.2] * 5, 0.1, False)  # straddles 1.1


def test_the_detectable_change_shrinks_with_samples_and_floors_at_the_run_spread():
    from pytest_llmperf.judge import detectable as dt

    few, many = timings(1, n=10), timings(1, n=400)
    assert dt.stored_detectable(few) > 2 * dt.stored_detectable(many)
    assert dt.stored_detectable(many, run_spread=0.3) == 0.3
    assert dt.stored_detectable(timings(1, n=4)) is None  # below MIN_SAMPLES: values decide
    assert dt.paired_detectable(spread(1.0, n=40, width=0.02)) < 0.01
    assert dt.paired_detectable(spread(1.0, n=8, width=0.3)) > 0.1
    assert "cannot see its tolerance" in dt.sees_line(0.2, 0.1)
    assert dt.sees_line(0.04, 0.1) == "can see >= 4% here; tolerance 10%"
