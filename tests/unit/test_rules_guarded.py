"""Tests for rules that ``scripts/break_rules.py`` found no other test guarding.

Each test here fails when its rule's edit in ``break_rules.BREAKS`` is applied.
"""

import json
import math
import os
import random
from statistics import median

import pytest

from pytest_llmperf.judge.detectable import sees_line
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.judge.verdict import blind_lines, decide_metric, describe, strict_blind
from pytest_llmperf.results import Metric, TestResult


def test_a_count_is_decided_on_its_value_not_widened_by_pooled_runs() -> None:
    """A work count is exact: a stored entry's run spread (a hand-pooled or legacy file)
    must not widen its tolerance the way it widens a time's."""
    stored = {"value": 100, "runs": [{"samples": [90]}, {"samples": [110]}], "kind": "work"}
    count = Metric("work.ops", 105, kind="work", tolerance=0.0)
    assert decide_metric(count, stored).outcome is Verdict.REGRESSION
    assert decide_metric(Metric("work.ops", 100, kind="work", tolerance=0.0), stored).outcome is (
        Verdict.PASS
    )


# --------------------------------------------------------------------------- issue 27's survivors
# A reviewer broke 46 rules one at a time; these six passed every test. Each test below
# fails when its rule is broken (scripts/break_rules.py applies each break and checks).


def _decide(samples_b: list[float], samples_c: list[float], hib: bool, tolerance: float = 0.1):
    from pytest_llmperf.judge.decision import decide

    return decide(
        "m",
        baseline=median(samples_b),
        current=median(samples_c),
        tolerance=tolerance,
        higher_is_better=hib,
        baseline_samples=samples_b,
        current_samples=samples_c,
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("slower", [1.0, 1.05, 1.11, 1.3, 0.8])
def test_a_throughput_is_judged_exactly_as_its_times_are(seed: int, slower: float) -> None:
    """Throughput is items / time: the same rounds judged as times (lower is better) and as
    throughputs (higher is better) must give the same outcome and p-value (Mann-Whitney U
    is rank-based, so the inversion changes nothing). Shifting a throughput baseline the
    wrong way by the tolerance turned an inconclusive -11% into a regression at p=3e-8."""
    rng = random.Random(seed)
    base = [1.0 + rng.gauss(0, 0.06) for _ in range(15)]
    cur = [slower * (1.0 + rng.gauss(0, 0.06)) for _ in range(15)]
    as_time = _decide(base, cur, hib=False)
    as_rate = _decide([1 / t for t in base], [1 / t for t in cur], hib=True)
    assert as_rate.outcome is as_time.outcome
    assert (as_rate.p_value is None) == (as_time.p_value is None)
    if as_time.p_value is not None:
        assert as_rate.p_value == pytest.approx(as_time.p_value, rel=1e-9)


def test_a_drop_just_past_the_tolerance_in_noise_is_not_a_regression_either_way() -> None:
    """The reviewer's case: -11% throughput at a 10% tolerance, samples spread ~6%: not clear."""
    spread = [0.06 * (i / 5.5 - 1) for i in range(12)]  # -6% .. +6%, the same on both sides
    d = _decide([100 * (1 + s) for s in spread], [89 * (1 + s) for s in spread], hib=True)
    assert d.outcome is Verdict.INCONCLUSIVE and d.p_value > 0.01, d


def test_the_message_shows_the_numbers_that_decided() -> None:
    """A pooled value (ITL p99 over all intervals) can sit within the tolerance while its
    per-generation samples are well past it: the failure must not print +10% against 25%."""
    base = [10e-3 * (1 + 0.01 * i) for i in range(10)]
    cur = [14e-3 * (1 + 0.01 * i) for i in range(10)]
    metric = Metric("gen.itl_p99", 11e-3, "s", kind="tail", higher_is_better=False, samples=cur)
    metric.tolerance = 0.25
    stored = {"value": 10e-3, "runs": [{"samples": base}]}
    d = decide_metric(metric, stored)
    assert d.outcome is Verdict.REGRESSION
    assert d.change == pytest.approx(median(cur) / median(base) - 1)
    line = describe(d)
    assert "+40.0%" in line and "+10.0%" not in line, line


@pytest.mark.parametrize("seed", range(20))
def test_a_regression_always_prints_a_change_past_its_tolerance(seed: int) -> None:
    """The invariant behind the last test, over random samples and pooled values."""
    rng = random.Random(seed)
    hib = bool(seed % 2)
    base = [rng.uniform(0.9, 1.1) for _ in range(9)]
    cur = [rng.uniform(1.1, 1.6) for _ in range(9)]
    if hib:
        base, cur = [1 / b for b in base], [1 / c for c in cur]
    kind = "throughput" if hib else "time"
    pooled = median(cur) * rng.uniform(0.8, 1.2)  # a value that is not the samples' median
    metric = Metric("m", pooled, "s", kind=kind, samples=cur, tolerance=0.1)
    d = decide_metric(metric, {"value": median(base) * rng.uniform(0.9, 1.1), "samples": base})
    if d.outcome is Verdict.REGRESSION:
        worse = -d.change / (1 + d.change) if hib else d.change
        assert worse > d.tolerance, describe(d)


def test_work_is_exact_by_default() -> None:
    """Counted work has no noise: any growth is a regression unless a tolerance says so."""
    from pytest_llmperf.config import Policy
    from pytest_llmperf.metrics import Kind

    assert Kind.WORK.tolerance == 0.0
    assert Policy().tolerance_for("decode.work.ops", "work") == 0.0
    assert Policy().tolerance_for("decode.time", "time") > 0


WORK_PROJECT = """
import os
import torch

def test_steps(llmperf):
    x = torch.ones(8)
    def step():
        y = x
        for _ in range(int(os.environ.get("STEPS", "400"))):
            y = y + 1
        return y
    llmperf.pedantic(step, rounds=3, warmup=1)
"""


def test_a_quarter_percent_more_operators_fails_the_work_gate(pytester: pytest.Pytester) -> None:
    """401 adds where the baseline has 400 (+0.25% ops): exact means exact."""
    pytester.makepyfile(test_counted_steps=WORK_PROJECT)
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
    pytester.runpytest("--llmperf", "--llmperf-gate=work").assert_outcomes(passed=1)
    os.environ["STEPS"] = "401"
    try:
        result = pytester.runpytest("--llmperf", "--llmperf-gate=work")
    finally:
        del os.environ["STEPS"]
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*REGRESSION work: aten.add 400 -> 401 (+1)*"])


@pytest.mark.parametrize("times_tolerance", [1.01, 1.5, 1.99])
def test_a_gate_is_blind_as_soon_as_it_cannot_see_its_tolerance(times_tolerance: float) -> None:
    """Blind means the minimum detectable change is past the tolerance, not past twice it:
    said in a note, and under --llmperf-strict an inconclusive verdict."""
    tol = 0.1
    mdc = tol * times_tolerance
    assert "cannot see its tolerance" in sees_line(mdc, tol)
    for strict, verdict in ((False, Verdict.PASS), (True, Verdict.INCONCLUSIVE)):
        r = TestResult("t.py::t", verdict=Verdict.PASS, detectable={"time": [mdc, tol]})
        assert blind_lines(r) == [f"time: {sees_line(mdc, tol)}"]
        strict_blind(r, strict)
        assert r.verdict is verdict
    seen = TestResult("t.py::t", verdict=Verdict.PASS, detectable={"time": [tol * 0.99, tol]})
    assert blind_lines(seen) == [] and "cannot see" not in sees_line(tol * 0.99, tol)


OOM_PROJECT = """
import os
import torch

def test_big(llmperf):
    n = 2**46 if os.environ.get("HUGE") else 2**20  # far more than any machine has
    llmperf(lambda: torch.empty(n, dtype=torch.uint8))
"""


def test_out_of_memory_is_written_to_the_work_file_too(pytester: pytest.Pytester) -> None:
    """A shared CPU runner gates work only, from the work file: an out-of-memory result must
    reach it, or ok -> oom could never fail there and an accepted oom would fail forever."""
    pytester.makepyfile(test_oom=OOM_PROJECT)
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
    (work_file,) = (pytester.path / "baselines" / "work").glob("*.json")
    for machine_file in (pytester.path / "baselines").glob("*.json"):
        machine_file.unlink()  # the work file alone decides from here on
    os.environ["HUGE"] = "1"
    try:
        failed = pytester.runpytest("--llmperf", "--llmperf-gate=work")
        failed.assert_outcomes(failed=1)
        failed.stdout.fnmatch_lines(["*status: baseline ok, current oom*"])
        pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
        entry = json.loads(work_file.read_text())["tests"]["test_oom.py::test_big"]
        assert [c["status"] for c in entry["contexts"].values()] == ["oom"]
        pytester.runpytest("--llmperf", "--llmperf-gate=work").assert_outcomes(passed=1)
    finally:
        del os.environ["HUGE"]


# --------------------------------------------------------------------------- the metric model


def test_a_kind_carries_its_direction_and_no_site_can_contradict_it() -> None:
    from pytest_llmperf.metrics import Kind

    assert Metric("t", 1.0, "s", kind="time").higher_is_better is False
    assert Metric("r", 1.0, "tokens/s", kind="throughput").higher_is_better is True
    assert Metric("m", 1.0, "B", kind=Kind.MEMORY).higher_is_better is False
    assert Metric("e", 0.5, "", kind="efficiency").higher_is_better is True
    assert Metric("w", 3, "ops", kind="work").higher_is_better is False
    with pytest.raises(ValueError, match="'r': a throughput metric is higher is better"):
        Metric("r", 1.0, "tokens/s", kind="throughput", higher_is_better=False)
    with pytest.raises(ValueError, match="'t': a time metric is lower is better"):
        Metric("t", 1.0, "s", kind="time", higher_is_better=True)
    for told in ("other", "ratio", "tail"):  # a ratio or a tail of what? the metric says
        with pytest.raises(ValueError, match=f"kind {told} needs higher_is_better"):
            Metric("x", 1.0, "x", kind=told)
        assert Metric("x", 1.0, "x", kind=told, higher_is_better=True).higher_is_better
    with pytest.raises(ValueError, match="unknown kind 'speed'; one of time, throughput"):
        Metric("x", 1.0, kind="speed", higher_is_better=True)
    # read back from a file or another process: the same metric, its kind a Kind again
    m = Metric("r", 2.0, "tokens/s", kind="throughput", samples=[2.0])
    back = Metric.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m and back.kind is Kind.THROUGHPUT and m.to_dict()["kind"] == "throughput"


RECORD_PROJECT = """
import os

def test_rate(llmperf):
    llmperf.record("rate", float(os.environ.get("RATE", "100")), "tokens/s", kind="throughput")
"""


def test_record_takes_its_direction_from_its_kind(pytester: pytest.Pytester) -> None:
    """``record(kind="throughput")`` without ``higher_is_better``: a drop is the regression.
    Before the metric model, such a rate was lower-is-better and a halving passed improved."""
    pytester.makepyfile(test_rec=RECORD_PROJECT)
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
    os.environ["RATE"] = "50"
    try:
        result = pytester.runpytest("--llmperf")
    finally:
        del os.environ["RATE"]
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*REGRESSION rate: baseline 100 tokens/s, current 50*"])
    pytester.makepyfile(
        test_rec=RECORD_PROJECT.replace('kind="throughput"', 'kind="time", higher_is_better=True')
    )
    refused = pytester.runpytest("--llmperf")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*llmperf.record('rate')*a time metric is lower is better*"])


def test_the_documented_default_tolerances_are_the_kinds() -> None:
    """docs/noise.md's table of defaults is what ``Kind`` holds: one place, said truly."""
    from pathlib import Path

    from pytest_llmperf.metrics import Kind

    doc = (Path(__file__).parents[2] / "docs" / "noise.md").read_text()
    table = doc.split("### Defaults", 1)[1].split("\n\n", 2)[1]
    documented = {}
    for row in table.splitlines()[2:]:
        kinds, tolerance = (cell.strip() for cell in row.strip("|").split("|")[:2])
        percent = float(tolerance.split("%")[0].split(":")[0])
        for kind in kinds.split("(")[0].split(","):
            documented[kind.strip()] = percent / 100
    assert documented == {k.value: k.tolerance for k in Kind}


# --------------------------------------------------------------------------- the thresholds


def test_min_samples_is_the_fewest_rounds_that_can_reach_alpha() -> None:
    """Mann-Whitney U's smallest one-sided p for n against n is 1 / C(2n, n): below
    MIN_SAMPLES even completely separated samples cannot be clear, at it they can."""
    from pytest_llmperf.judge.decision import clearly_worse
    from pytest_llmperf.judge.thresholds import ALPHA, MIN_SAMPLES

    def best_p(n: int) -> float:
        return clearly_worse([1.0 + i / 100 for i in range(n)], [3.0] * n, 1.1, False)

    assert best_p(MIN_SAMPLES) < ALPHA <= best_p(MIN_SAMPLES - 1)


def test_min_pairs_is_the_fewest_pairs_whose_interval_can_reach_alpha() -> None:
    from pytest_llmperf.judge.decision import median_interval
    from pytest_llmperf.judge.thresholds import MIN_PAIRS

    ratios = [1.5 + i / 100 for i in range(MIN_PAIRS)]
    assert all(map(math.isfinite, median_interval(ratios)))
    assert median_interval(ratios[:-1]) == (-math.inf, math.inf)


def test_the_documented_significance_is_alpha() -> None:
    from pathlib import Path

    from pytest_llmperf.judge.thresholds import ALPHA

    doc = (Path(__file__).parents[2] / "docs" / "noise.md").read_text()
    assert f"Significance: one-sided p < {ALPHA:g}." in doc


def test_an_improvement_needs_its_samples_to_show_it() -> None:
    """A median 15% better at a 10% tolerance, in samples spread +-30%: not clearly better,
    so a pass, not a notice to refresh (a refresh to a lucky run loosens the gate)."""
    spread = [0.3 * (i / 5.5 - 1) for i in range(12)]
    d = _decide([1 + s for s in spread], [0.85 * (1 + s) for s in spread], hib=False)
    assert d.outcome is Verdict.PASS and d.p_value is not None and d.p_value > 0.01, d
    clear = _decide([1 + s / 10 for s in spread], [0.7 * (1 + s / 10) for s in spread], False)
    assert clear.outcome is Verdict.IMPROVED


def test_a_paired_improvement_needs_its_interval_past_the_tolerance() -> None:
    """Pairs whose median ratio is 20% better but whose interval reaches back past 1: a pass."""
    from pytest_llmperf.judge.decision import decide_paired

    def paired(ratios: list[float]):
        return decide_paired(
            "t", ratios=ratios, reference=1.0, current=0.8, tolerance=0.1, higher_is_better=False
        )

    wide = [0.5, 0.6, 0.7, 0.75, 0.8, 0.8, 0.82, 1.2, 1.3, 1.4, 0.8]
    assert paired(wide).outcome is Verdict.PASS
    assert paired([0.8 + i / 1000 for i in range(11)]).outcome is Verdict.IMPROVED


def test_a_blind_gate_never_softens_a_regression() -> None:
    """Strict mode turns a blind pass into inconclusive; a regression stays a regression."""
    for verdict in (Verdict.REGRESSION, Verdict.NO_BASELINE):
        r = TestResult("t.py::t", verdict=verdict, detectable={"time": [0.5, 0.1]})
        strict_blind(r, True)
        assert r.verdict is verdict
