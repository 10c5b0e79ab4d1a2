"""judge.verdict: a test's verdict from its result and its stored entry (pure, deterministic).

Each test here guards one decision rule; the effects are far past any noise
(3x, or exact numbers), so none of them can flap.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from pytest_llmperf.config import Policy
from pytest_llmperf.fixture import LLMPerf
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.judge.verdict import Judge, strict_blind
from pytest_llmperf.results import Metric, Status, TestResult

MIB = 2**20


def stored(value: float, *runs: list[float], normalized: list[list[float]] = (), **kw) -> dict:
    """A metric as a baseline file stores it: value and the pooled runs' samples."""
    runs_ = [{"samples": list(r)} for r in runs] or [{"samples": [value]}]
    for run, norm in zip(runs_, normalized, strict=False):
        run["normalized_samples"] = list(norm)
    entry = {"value": value, "unit": "s", "higher_is_better": False, "kind": "time"}
    entry.update(gated=True, tolerance=None, runs=runs_)
    entry.update(kw)
    return entry


def entry(status: str = "ok", **metrics: dict) -> dict:
    return {"status": status, "tier": "smoke", "metrics": metrics}


def result(status: Status = Status.OK, *metrics: Metric) -> TestResult:
    r = TestResult("t.py::test_it", status=status, tier="smoke")
    for m in metrics:
        r.add(m)
    return r


def timing(scale: float, normalized_scale: float | None = None, n: int = 21) -> Metric:
    """A time metric of n rounds around ``scale`` ms (spread +-10%), 10% tolerance."""
    xs = [scale * 1e-3 * (0.9 + 0.2 * i / (n - 1)) for i in range(n)]
    norm = [] if normalized_scale is None else [x * normalized_scale / scale for x in xs]
    return Metric(
        "time",
        sorted(xs)[n // 2],
        "s",
        higher_is_better=False,
        kind="time",
        samples=xs,
        tolerance=0.1,
        normalized_samples=norm,
    )


BASE_TIMES = timing(1.0).samples


def judged(r: TestResult, e: dict | None, **kw) -> TestResult:
    Judge(e, where="baselines/x.json", **kw).judge(r)
    return r


def test_no_baseline_is_a_notice_naming_the_file():
    r = judged(result(Status.OK, timing(1.0)), None)
    assert r.verdict is Verdict.NO_BASELINE
    assert "no baseline for this test in baselines/x.json" in r.verdict_lines[0]


def test_unchanged_passes_and_three_times_slower_is_a_regression():
    e = entry(time=stored(1e-3, BASE_TIMES))
    assert judged(result(Status.OK, timing(1.0)), e).verdict is Verdict.PASS
    r = judged(result(Status.OK, timing(3.0)), e)
    assert r.verdict is Verdict.REGRESSION
    assert r.verdict_lines[0].startswith("REGRESSION time: baseline 1 ms, current 3 ms (+200.0%")
    assert r.baseline_values == {"time": 1e-3}


def test_three_times_faster_is_improved_with_a_refresh_notice():
    r = judged(result(Status.OK, timing(1 / 3)), entry(time=stored(1e-3, BASE_TIMES)))
    assert r.verdict is Verdict.IMPROVED
    assert "refresh with --llmperf-update-baselines" in r.verdict_lines[0]


def test_the_worst_outcome_of_the_metrics_is_the_verdict():
    faster = timing(1 / 3)
    slower = timing(3.0)
    slower.name = "decode.time"
    e = entry(time=stored(1e-3, BASE_TIMES), **{"decode.time": stored(1e-3, BASE_TIMES)})
    assert judged(result(Status.OK, faster, slower), e).verdict is Verdict.REGRESSION


@pytest.mark.parametrize(
    "base, now, verdict, line",
    [
        ("ok", Status.OOM, Verdict.REGRESSION, "status: baseline ok, current oom"),
        ("oom", Status.OOM, Verdict.PASS, "status: oom, as in the baseline"),
        ("oom", Status.OK, Verdict.IMPROVED, "status: baseline oom, current ok (now runs)"),
    ],
)
def test_status_changes(base: str, now: Status, verdict: Verdict, line: str):
    e = entry(base, time=stored(1e-3, BASE_TIMES))
    r = judged(result(now, timing(1.0)) if now is Status.OK else result(now), e)
    assert r.verdict is verdict
    assert line in r.verdict_lines


def peak(mib: float) -> TestResult:
    """A run whose one memory peak (no rounds) is ``mib`` MiB, at memory's 5% tolerance."""
    return result(Status.OK, Metric("peak_memory", mib * MIB, "B", kind="memory", tolerance=0.05))


def test_memory_below_the_absolute_slack_is_never_a_regression():
    e = entry(peak_memory=stored(10 * MIB, unit="B", kind="memory"))

    assert judged(peak(13.5), e).verdict is Verdict.PASS  # +35%, but only 3.5 MiB
    r = judged(peak(30), e)  # +200%, 20 MiB
    assert r.verdict is Verdict.REGRESSION
    assert "baseline 10 MiB, current 30 MiB" in r.verdict_lines[0]


def test_pooled_runs_that_spread_widen_the_tolerance():
    """A baseline pooled from runs whose medians spread 50% cannot gate at 10%."""
    now = result(Status.OK, timing(1.4))
    one_run = entry(time=stored(1e-3, BASE_TIMES))
    assert judged(now, one_run).verdict is Verdict.REGRESSION
    spread = [x * 1.5 for x in BASE_TIMES], BASE_TIMES, [x * 0.8 for x in BASE_TIMES]
    r = judged(result(Status.OK, timing(1.4)), entry(time=stored(1e-3, *spread)))
    assert r.verdict is Verdict.PASS
    r = judged(result(Status.OK, timing(3.0)), entry(time=stored(1e-3, *spread)))
    assert r.verdict is Verdict.REGRESSION
    assert "widened to 50%: the baseline's runs spread that much" in r.verdict_lines[0]


def test_raw_and_drift_corrected_samples_must_agree():
    e = entry(time=stored(1e-3, BASE_TIMES, normalized=[BASE_TIMES]))
    # slower in wall time, not once the machine's drift is taken out: not a failure
    drifted = judged(result(Status.OK, timing(3.0, normalized_scale=1.0)), e)
    assert drifted.verdict is Verdict.INCONCLUSIVE
    # slower in both: a regression
    real = judged(result(Status.OK, timing(3.0, normalized_scale=3.0)), e)
    assert real.verdict is Verdict.REGRESSION
    assert "drift-corrected change +200.0%" in real.verdict_lines[0]


def test_ungated_and_missing_metrics():
    quiet = timing(3.0)
    quiet.gated = False
    e = entry(time=stored(1e-3, BASE_TIMES), throughput=stored(100.0, unit="tokens/s"))
    r = judged(result(Status.OK, quiet), e)
    assert r.verdict is Verdict.PASS  # an informational metric is never judged
    assert "metrics in the baseline but not recorded now: throughput" in r.verdict_lines


def test_a_changed_environment_is_shown_beside_the_verdict():
    e = entry(time=stored(1e-3, BASE_TIMES))
    r = judged(
        result(Status.OK, timing(3.0)),
        e,
        baseline_fingerprint={"torch": "2.12.0", "python": "3.11.7"},
        current_fingerprint={"torch": "2.13.0", "python": "3.11.7"},
    )
    assert r.fingerprint_diff == {"torch": ["2.12.0", "2.13.0"]}
    assert r.verdict_lines[-1] == "environment changed since the baseline: torch 2.12.0 -> 2.13.0"


#: Baseline rounds that no number of current rounds tells apart from 1 ms x1.1 (a third
#: of them far above): past the tolerance by the medians, never clearly.
NEVER_CLEAR = [1e-7] * 4 + [1.0] * 3


def test_unclear_names_only_inconclusive_metrics_of_a_comparable_status():
    e = entry(
        time=stored(1e-7, NEVER_CLEAR),
        other=stored(1e-3, BASE_TIMES),
        short=stored(1e-3, [1e-3, 1e-3]),
    )
    other, short = timing(1.0), timing(3.0)
    other.name, short.name = "other", "short"
    r = result(Status.OK, timing(3.0), other, short)
    judge = Judge(e)
    assert judge.unclear(r, ["time", "other", "short"]) == ["time"]
    assert judge.unclear(r, ["other"]) == []
    # 2 baseline rounds: no re-measurement can make it judgeable
    assert judge.unclear(r, ["short"]) == []


def test_a_baseline_of_too_few_rounds_is_blind_not_inconclusive():
    """Rounds fixed at 3 on both sides: not judged every time (a blind gate, which strict
    fails), instead of inconclusive or pass as the noise falls, re-measured twice."""
    e = entry(time=stored(1e-3, [1e-3] * 3))
    for scale in (1.0, 5.0):
        r = judged(result(Status.OK, timing(scale, n=3)), e)
        assert r.verdict is Verdict.PASS
        assert r.detectable["time"][0] == math.inf
        strict_blind(r, strict=False)
        assert r.verdict is Verdict.PASS
        assert r.notes == [
            "time: cannot judge any change: fewer than 5 rounds in the baseline; "
            "tolerance 10%: this gate cannot see its tolerance"
        ]
        r = judged(result(Status.OK, timing(scale, n=3)), e)
        strict_blind(r, strict=True)
        assert r.verdict is Verdict.INCONCLUSIVE
    assert Judge(entry("oom", **e["metrics"])).unclear(r, ["time"]) == []
    assert Judge(None).unclear(r, ["time"]) == []


def _sleepy_perf(judge: Judge | None, remeasure: int) -> LLMPerf:
    policy = Policy(rounds=5, warmup=0, remeasure=remeasure, drift_correction=False)
    return LLMPerf(
        TestResult("t.py::test_it", tier="smoke"), policy, torch.device("cpu"), "smoke", judge
    )


@pytest.mark.parametrize("remeasure", [0, 2])
def test_unclear_metrics_are_remeasured_then_reported_inconclusive(remeasure: int):
    """The fixture re-measures what its judge finds unclear, pooling rounds, and the
    verdict then comes from the same judge: inconclusive, never a failure."""
    judge = Judge(entry(time=stored(1e-7, NEVER_CLEAR)))
    perf = _sleepy_perf(judge, remeasure)
    perf(time.sleep, 0.001)
    assert perf.last.rounds == 5 * (1 + remeasure)
    judge.judge(perf.result)
    assert perf.result.verdict is Verdict.INCONCLUSIVE
    assert perf.result.verdict_lines[0].startswith("INCONCLUSIVE time:")


def test_a_clear_regression_is_not_remeasured():
    judge = Judge(entry(time=stored(1e-7, [1e-7] * 20)))
    perf = _sleepy_perf(judge, remeasure=2)
    perf(time.sleep, 0.001)
    assert perf.last.rounds == 5
    judge.judge(perf.result)
    assert perf.result.verdict is Verdict.REGRESSION


def test_recording_measures_once():
    perf = _sleepy_perf(None, remeasure=2)
    perf(time.sleep, 0.001)
    assert perf.last.rounds == 5


@pytest.mark.parametrize(
    "verdict, fails, fails_strict",
    [
        (Verdict.REGRESSION, True, True),
        (Verdict.INCONCLUSIVE, False, True),
        (Verdict.NO_BASELINE, False, True),
        (Verdict.IMPROVED, False, False),
        (Verdict.PASS, False, False),
        (Verdict.RECORDED, False, False),
    ],
)
def test_which_verdicts_fail_a_test(verdict: Verdict, fails: bool, fails_strict: bool):
    assert verdict.fails(strict=False) is fails
    assert verdict.fails(strict=True) is fails_strict


# --------------------------------------------------------------------------- pooled memory


def test_a_pooled_memory_baseline_is_decided_on_values_with_its_run_spread():
    """One value per run: pooled runs are runs, not rounds (a +613% regression once passed as
    "too few rounds to judge"); their spread widens the tolerance, the values decide."""
    runs = [10 * MIB], [11 * MIB], [12 * MIB], [10.5 * MIB], [11.5 * MIB]
    e = entry(peak_memory=stored(11 * MIB, *runs, unit="B", kind="memory"))

    r = judged(peak(11 * 7.13), e)
    assert r.verdict is Verdict.REGRESSION, r.verdict_lines
    assert "too few" not in r.verdict_lines[0]
    assert judged(peak(12), e).verdict is Verdict.PASS  # within the runs' own spread


# --------------------------------------------------------------------------- what a gate sees


def test_a_gate_that_cannot_see_its_tolerance_is_said_and_fails_under_strict():
    from pytest_llmperf.judge.verdict import strict_blind

    def noisy() -> TestResult:
        xs = [1e-3 * (0.5 + i % 5 * 0.4) for i in range(6)]  # 6 rounds spread -50%..+30%
        return result(
            Status.OK,
            Metric(
                "time", 1e-3, "s", higher_is_better=False, kind="time", samples=xs, tolerance=0.1
            ),
        )

    e = entry(time=stored(1e-3, [1e-3 * (0.5 + i % 5 * 0.4) for i in range(6)]))
    r = judged(noisy(), e)
    strict_blind(r, strict=False)
    assert r.verdict is Verdict.PASS
    assert any("cannot see its tolerance" in n and "tolerance 10%" in n for n in r.notes), r.notes
    r = judged(noisy(), e)
    strict_blind(r, strict=True)
    assert r.verdict is Verdict.INCONCLUSIVE and r.verdict.fails(strict=True)
    # A precise one sees its tolerance: nothing to say, under strict too.
    r = judged(
        result(Status.OK, timing(1.0, n=41)), entry(time=stored(1e-3, timing(1.0, n=41).samples))
    )
    strict_blind(r, strict=True)
    assert r.verdict is Verdict.PASS and not r.notes
    assert r.detectable["time"][0] < 0.1


def test_a_refused_drift_correction_cannot_fail_a_test_on_raw_times_alone():
    slow = timing(3.0)
    slow.drift_refused = "other threads did the work"
    r = judged(result(Status.OK, slow), entry(time=stored(1e-3, BASE_TIMES)))
    assert r.verdict is Verdict.INCONCLUSIVE
    assert "drift correction refused: other threads did the work" in r.verdict_lines[0]
    assert judged(result(Status.OK, timing(3.0)), entry(time=stored(1e-3, BASE_TIMES))).verdict is (
        Verdict.REGRESSION
    )
