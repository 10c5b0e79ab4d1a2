"""``--llmperf-compare`` pairs batches and stops as it says (``compare.pairing.drive``).

Each pair times one batch on each side, back to back, and records candidate /
reference of *that* pair's batch medians: machine drift moves both alike and
cancels. It stops once ``paired_settled`` says so, or once the budget (4 x
``max_time``) or ``MAX_PAIRS`` is spent, never before ``MIN_PAIRS``.

Fake sides run on a fake machine that gets 2x slower every pair while the
candidate stays a fixed factor of the reference within a pair, so a ratio taken
across two pairs is off by 2x, never by noise. The factors are exact in binary,
so the ratios are exact; a ratio on the tolerance's boundary never settles, so
the budget or the cap decides. No real time is measured: the budget is spent by
a fake clock, or by a budget of 4 ns on the real one.
"""

from __future__ import annotations

import random

import pytest

from pytest_llmperf.compare.pairing import (
    MAX_PAIRS,
    Batch,
    Pairs,
    drive,
    paired_decision,
    paired_decisions,
)
from pytest_llmperf.judge.decision import MIN_PAIRS
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.metrics import Kind, Metric
from pytest_llmperf.results import TestResult

#: A round's time on the fake machine in the first pair (a power of two: exact ratios).
BASE = 2.0**-10


class Machine:
    """What both sides run on: 2x slower every pair, and a clock that each batch
    advances by ``seconds_per_batch``."""

    def __init__(self, seconds_per_batch: float = 1.0) -> None:
        self.now = 0.0
        self.seconds_per_batch = seconds_per_batch
        #: (pair, side) of each kept batch, in the order they ran.
        self.batches: list[tuple[int, str]] = []

    def batch(self, side: str, factor: float, n: int) -> list[float]:
        pair = len(self.batches) // 2  # one batch a side per pair
        # Past the cap, fail here rather than pair forever (no decision ever settles).
        assert pair < 2 * MAX_PAIRS, "still pairing at twice MAX_PAIRS: the cap is not kept"
        self.batches.append((pair, side))
        self.now += self.seconds_per_batch
        return [factor * BASE * 2.0**pair] * n

    def clock(self) -> float:
        return self.now


class FakeSide:
    """A side as ``drive`` sees it; ``factor`` scales its rounds against the machine's (the
    candidate's change); ``series`` adds per-round statistics scaled alike."""

    def __init__(self, name: str, machine: Machine, factor: float, series: bool = False) -> None:
        self.name, self.machine, self.factor, self.series = name, machine, factor, series
        self.calls: list[tuple[str, int]] = []

    def warmup(self) -> bool:
        self.calls.append(("warmup", 0))
        return True

    def probe(self) -> float:
        self.calls.append(("probe", 1))
        return self.machine.seconds_per_batch

    def batch(self, n: int) -> Batch:
        self.calls.append(("batch", n))
        values = self.machine.batch(self.name, self.factor, n)
        series = {"ttft": [2 * v for v in values], "tpot": values} if self.series else {}
        return Batch(values, series)


class Policy:
    """The two things ``drive`` asks of the test's policy."""

    def __init__(self, max_time: float, tolerance: float) -> None:
        self.max_time, self.tolerance = max_time, tolerance
        self.asked: list[tuple[str, str]] = []

    def tolerance_for(self, name: str, kind: str) -> float:
        self.asked.append((name, kind))
        return self.tolerance


def run(
    factor: float,
    tolerance: float,
    max_time: float,
    machine: Machine | None = None,
    higher_is_better: bool = False,
    series: bool = False,
) -> tuple[Pairs, FakeSide, FakeSide, Machine, Policy]:
    """One measurement driven to its end: the pairs, both sides, the machine, the policy.
    Without a machine, the real clock: a batch takes no time on it."""
    clock = machine.clock if machine is not None else None
    machine = machine or Machine()
    ref = FakeSide("ref", machine, 1.0, series)
    cand = FakeSide("cand", machine, factor, series)
    policy = Policy(max_time, tolerance)
    names = ["throughput", "time"]
    extra = {"clock": clock} if clock is not None else {}
    pairs = drive(ref, cand, names, higher_is_better, policy, random.Random(0), **extra)
    return pairs, ref, cand, machine, policy


def kept(side: FakeSide) -> list[tuple[str, int]]:
    return [c for c in side.calls if c[0] == "batch"]


@pytest.mark.parametrize(
    ("factor", "tolerance", "higher_is_better", "kind"),
    [
        (1.25, 0.25, False, Kind.TIME),  # 25% slower at a 25% tolerance: on the boundary
        (0.5, 1.0, True, Kind.RATIO),  # a speedup halved at 100%: worse ratio 2 = 1 + 1
    ],
)
def test_each_ratio_is_its_own_pairs_candidate_over_reference(
    factor: float, tolerance: float, higher_is_better: bool, kind: Kind
) -> None:
    """The machine doubles its times every pair; each ratio is still exactly the factor.
    A candidate paired with another pair's reference would read 2x or 0.5x it. On the
    boundary nothing settles and the budget (4e6 s) is never spent: the cap stops it."""
    pairs, ref, cand, machine, policy = run(
        factor, tolerance, max_time=1e6, higher_is_better=higher_is_better
    )
    assert pairs.ratios == [factor] * MAX_PAIRS
    assert policy.asked == [("time", kind)]
    # every pair is one batch a side, both orders drawn (the order is random per pair)
    assert sorted(machine.batches) == sorted(
        [(k, "ref") for k in range(MAX_PAIRS)] + [(k, "cand") for k in range(MAX_PAIRS)]
    )
    firsts = {machine.batches[2 * k][1] for k in range(MAX_PAIRS)}
    assert firsts == {"ref", "cand"}
    for side in (ref, cand):
        assert side.calls[:2] == [("warmup", 0), ("probe", 1)]
        assert len(kept(side)) == MAX_PAIRS and len(side.calls) == 2 + MAX_PAIRS


def test_an_unchanged_candidate_on_a_drifting_machine_reads_exactly_one() -> None:
    """Both sides drift upward pair by pair (2x each pair): correctly paired, every ratio
    is exactly 1.0 and the decision settles as soon as it may; a candidate batch over
    the previous pair's reference batch would read 2.0."""
    pairs, *_ = run(1.0, 0.10, max_time=1e6)
    assert pairs.ratios == [1.0] * MIN_PAIRS


def test_the_cap_ends_the_pairs_however_much_budget_is_left() -> None:
    """On the boundary nothing settles; the budget (4e6 s on a clock that moves 1 s a batch)
    is never spent: MAX_PAIRS, not one more, is what stops it."""
    machine = Machine(seconds_per_batch=1.0)
    pairs, ref, cand, *_ = run(1.25, 0.25, max_time=1e6, machine=machine)
    assert len(pairs.ratios) == MAX_PAIRS
    assert len(kept(ref)) == len(kept(cand)) == MAX_PAIRS


def test_a_spent_budget_still_takes_min_pairs() -> None:
    """A budget of 4 ns is spent by the first pair on any machine, however fast (real
    clock); on the boundary the decision never settles, so exactly MIN_PAIRS pairs run,
    each ratio its own pair's."""
    pairs, ref, cand, machine, _ = run(1.25, 0.25, max_time=1e-9)
    assert pairs.ratios == [1.25] * MIN_PAIRS
    assert len(kept(ref)) == len(kept(cand)) == MIN_PAIRS
    assert len(machine.batches) == 2 * MIN_PAIRS


def test_past_min_pairs_the_budget_stops_at_the_first_pair_past_it() -> None:
    """On a fake clock, a batch takes 1 s: a budget of 4 x 5.5 = 22 s is passed by the
    12th pair (24 s), which is the last; 2.4 s (9.6 s) is passed by the 5th, before
    MIN_PAIRS, so MIN_PAIRS it is."""
    for max_time, n in ((5.5, 12), (2.4, MIN_PAIRS)):
        machine = Machine(seconds_per_batch=1.0)
        pairs, *_ = run(1.25, 0.25, max_time=max_time, machine=machine)
        assert pairs.ratios == [1.25] * n, max_time


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_a_clear_decision_stops_as_soon_as_it_may(factor: float) -> None:
    """2x slower or 2x faster at a 10% tolerance: settled at MIN_PAIRS, the budget
    (4e6 s) far from spent."""
    pairs, *_ = run(factor, 0.10, max_time=1e6)
    assert pairs.ratios == [factor] * MIN_PAIRS


def test_a_generations_per_round_statistics_are_paired_by_the_same_batches() -> None:
    pairs, *_ = run(2.0, 0.10, max_time=1e6, series=True)
    assert pairs.series == {"tpot": [2.0] * MIN_PAIRS, "ttft": [2.0] * MIN_PAIRS}


def test_a_side_that_fails_ends_the_pairs_with_those_taken() -> None:
    class Failing(FakeSide):
        def batch(self, n: int) -> Batch | None:
            return super().batch(n) if len(kept(self)) < 3 else None

    machine = Machine()
    ref, cand = FakeSide("ref", machine, 1.0), Failing("cand", machine, 2.0)
    pairs = drive(ref, cand, ["time"], False, Policy(1e6, 0.1), random.Random(0))
    assert len(pairs.ratios) in (2, 3) and set(pairs.ratios) == {2.0}


# -- what the ratios decide, per metric -------------------------------------------------
def _metric(name: str, value: float, kind: Kind, hib: bool | None = None) -> Metric:
    return Metric(name, value, "", kind=kind, higher_is_better=hib, tolerance=0.1)


@pytest.mark.parametrize(
    ("metric", "ratios", "hib", "ratio"),
    [
        # seconds 2x the reference's: the time regressed 2x...
        (_metric("time", 2.0, Kind.TIME), [2.0] * 10, False, 2.0),
        # ...and the throughput, timed by the same seconds, halved (its inverse)
        (_metric("throughput", 0.5, Kind.THROUGHPUT), [2.0] * 10, False, 0.5),
        # an A/B speedup halved, paired as a speedup: the ratio as it is
        (_metric("speedup", 1.0, Kind.RATIO, hib=True), [0.5] * 10, True, 0.5),
    ],
)
def test_paired_ratios_are_oriented_to_the_metric(
    metric: Metric, ratios: list[float], hib: bool, ratio: float
) -> None:
    """Ratios of seconds decide a throughput as their inverse: each case here is 2x worse,
    whichever way its metric is better, so each is a regression shown in its own terms."""
    reference = _metric(metric.name, 1.0, metric.kind, metric.higher_is_better)
    d = paired_decision(metric, reference, ratios, hib, "reference main")
    assert d.outcome is Verdict.REGRESSION
    assert d.ratio == pytest.approx(ratio)


def test_the_default_tolerance_is_the_metric_kinds() -> None:
    """A metric with no tolerance of its own is decided at its kind's: ITL p99 (a tail) at
    25%, so 20% slower pairs pass; a time at 10% regresses."""
    tail = Metric("itl_p99", 1.2, "s", kind=Kind.TAIL, higher_is_better=False)
    time = Metric("time", 1.2, "s", kind=Kind.TIME)
    for metric, outcome in ((tail, Verdict.PASS), (time, Verdict.REGRESSION)):
        reference = Metric(metric.name, 1.0, "s", kind=metric.kind, higher_is_better=False)
        d = paired_decision(metric, reference, [1.2] * 20, False, "reference main")
        assert d.tolerance == metric.kind.tolerance
        assert d.outcome is outcome, metric.name


def test_each_measurement_decides_its_first_gated_metric_and_a_rate_its_statistic() -> None:
    def result(value: float) -> TestResult:
        r = TestResult(nodeid="t.py::t", tier="smoke")
        for m in (
            _metric("gen.time", value, Kind.TIME),
            _metric("gen.ttft", value, Kind.TIME),
            _metric("gen.prefill_throughput", 1 / value, Kind.THROUGHPUT),
        ):
            r.metrics[m.name] = m
        return r

    pairs = {("gen.throughput", "gen.time"): ([2.0] * 10, False)}
    decided = paired_decisions(
        result(2.0), result(1.0), pairs, {"gen.ttft": [2.0] * 10}, "reference main"
    )
    assert sorted(decided) == ["gen.prefill_throughput", "gen.time", "gen.ttft"]
    assert {d.outcome for d in decided.values()} == {Verdict.REGRESSION}
