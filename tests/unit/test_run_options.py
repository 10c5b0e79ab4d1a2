"""Run-level options that decide what a run can see (issue 24, items 3 and 4).

- One intra-op thread on the CPU while measuring, unless ``--llmperf-threads=N|auto``
  says otherwise; and where the drift correction is refused anyway, a raw change far
  past any drift (``decision.FAR_PAST_DRIFT_*``) still fails.
- Every run-level metric name (``--llmperf-gate``, ``--llmperf-tolerance`` keys, their ini
  twins) is checked: a typo is a usage error, not a gate switched off.

Where a run must time something it busy-waits on ``time.perf_counter()`` (wall time, so a
loaded machine can only stretch a round, never shorten it) and the effect is 8x; the
decision rules are tested on synthetic samples.
"""

from __future__ import annotations

import json

import pytest
import torch

from pytest_llmperf.config import (
    DEFAULT_CPU_THREADS,
    MAX_THREADS,
    OPTIONAL_METRICS,
    PLUGIN_METRICS,
    RunOptions,
    unknown_run_names,
)
from pytest_llmperf.judge.decision import FAR_PAST_DRIFT_P, FAR_PAST_DRIFT_RATIO
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.judge.verdict import decide_metric
from pytest_llmperf.measure.work import WorkSignature
from pytest_llmperf.results import Metric

# --------------------------------------------------------------------------- threads


def options(pytester: pytest.Pytester, *args: str, ini: str = "") -> RunOptions:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    return RunOptions.from_pytest_config(pytester.parseconfig(*args))


def test_one_thread_by_default_when_measuring_and_auto_leaves_torch_alone(
    pytester: pytest.Pytester,
):
    assert DEFAULT_CPU_THREADS == 1
    assert options(pytester, "--llmperf").threads == 1
    assert options(pytester, "--llmperf-update-baselines").threads == 1
    assert options(pytester).threads is None  # a plain pytest does not touch torch
    assert options(pytester, "--llmperf", "--llmperf-threads=auto").threads is None
    assert options(pytester, "--llmperf", "--llmperf-threads=3").threads == 3
    assert options(pytester, "--llmperf", ini="llmperf_threads = auto").threads is None
    assert options(pytester, "--llmperf", ini="llmperf_threads = 2").threads == 2


@pytest.mark.parametrize(
    "args, ini, words",
    [
        (
            ["--llmperf-threads=two"],
            "",
            "--llmperf-threads: expected an integer or 'auto', got 'two'",
        ),
        (["--llmperf-threads=0"], "", "--llmperf-threads: must be >= 1, got 0"),
        (
            ["--llmperf-threads=1.5"],
            "",
            "--llmperf-threads: expected an integer or 'auto', got '1.5'",
        ),
        (["--llmperf-threads=AUTO"], "", "got 'AUTO'"),
        ([f"--llmperf-threads={MAX_THREADS + 1}"], "", f"must be <= {MAX_THREADS}"),
        ([], "llmperf_threads = many", "ini option llmperf_threads: expected an integer or 'auto'"),
    ],
)
def test_a_bad_thread_count_is_a_usage_error_naming_option_and_value(
    pytester: pytest.Pytester, args: list[str], ini: str, words: str
):
    pytester.makepyfile(test_ok="def test_ok(): pass")
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest("--llmperf", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert words in result.stderr.str()


THREADS = """
import torch

def test_threads(llmperf):
    with open("threads.txt", "w") as f:
        f.write(str(torch.get_num_threads()))
    llmperf.pedantic(lambda: None, rounds=5, warmup=0)
"""


def test_the_run_measures_on_one_thread_and_gives_torch_its_count_back(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(test_thr=THREADS)
    seen = pytester.path / "threads.txt"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pytester.runpytest("--llmperf").assert_outcomes(passed=1)
        assert seen.read_text() == "1"
        assert torch.get_num_threads() == 2  # undone when the run ends
        pytester.runpytest("--llmperf", "--llmperf-threads=auto").assert_outcomes(passed=1)
        assert seen.read_text() == "2"  # torch's own count, untouched
        pytester.runpytest("--llmperf", "--llmperf-threads=2").assert_outcomes(passed=1)
        assert seen.read_text() == "2"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- far past drift

MS = 1e-3
#: 24 rounds around 10 ms, +-10%: the baseline's samples.
BASE = [10 * MS * (0.9 + 0.2 * i / 23) for i in range(24)]


def refused(scale: float, *, n: int = 24, throughput: bool = False) -> Metric:
    """This run's samples: BASE's shape at ``scale`` times the time, the drift correction
    refused (as ``drift.untrusted`` refuses a pass where other threads did the work)."""
    times = [10 * MS * scale * (0.9 + 0.2 * i / (n - 1)) for i in range(n)]
    why = "other threads of the process used 120% of the measuring thread's CPU time"
    if throughput:
        rates = [8 / t for t in times]
        return Metric(
            "throughput", sorted(rates)[n // 2], "tokens/s", higher_is_better=True, kind="throughput", samples=rates, tolerance=0.1,
            drift_refused=why,
        )  # fmt: skip
    return Metric(
        "time",
        sorted(times)[n // 2],
        "s",
        higher_is_better=False,
        kind="time",
        samples=times,
        tolerance=0.1,
        drift_refused=why,
    )


def stored(metric: Metric, samples: list[float]) -> dict:
    return {
        "value": sorted(samples)[len(samples) // 2],
        "unit": metric.unit,
        "higher_is_better": metric.higher_is_better,
        "kind": metric.kind,
        "gated": True,
        "tolerance": None,
        "runs": [{"samples": list(samples)}],
    }


def test_a_refused_correction_still_fails_a_change_far_past_drift():
    assert (FAR_PAST_DRIFT_RATIO, FAR_PAST_DRIFT_P) == (5.0, 1e-6)
    for throughput in (False, True):
        slow = refused(8.0, throughput=throughput)
        base = [8 / t for t in BASE] if throughput else BASE
        d = decide_metric(slow, stored(slow, base))
        assert d.outcome is Verdict.REGRESSION, d
        assert d.p_value is not None and d.p_value < FAR_PAST_DRIFT_P
        assert "drift correction refused, but the change is far past drift: x8.0 worse" in (
            d.tolerance_note
        )
        assert "other threads of the process used 120%" in d.tolerance_note


@pytest.mark.parametrize(
    "scale, n, why",
    [
        (1.5, 24, "clearly past the tolerance, but well within drift"),
        (4.0, 24, "under FAR_PAST_DRIFT_RATIO"),
        (8.0, 6, "far, but 6 rounds cannot reach p < 1e-6"),
    ],
)
def test_a_refused_correction_leaves_anything_less_inconclusive(scale: float, n: int, why: str):
    for throughput in (False, True):
        slow = refused(scale, n=n, throughput=throughput)
        base = [8 / t for t in BASE] if throughput else BASE
        d = decide_metric(slow, stored(slow, base))
        assert d.outcome is Verdict.INCONCLUSIVE, why
        assert d.tolerance_note.startswith("drift correction refused: other threads"), why


# A test whose process has another busy thread, as torch's intra-op workers are: a
# 1024x1024 matmul in a loop (the GIL released inside it), so the drift correction is
# refused (``drift.untrusted``) whatever the thread count. The measured call busy-waits.
FAR = """
import os, threading, time
import pytest
import torch

SLOW = float(os.environ.get("SLOW", "1"))


def busy(seconds):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass


@pytest.fixture
def other_thread():
    stop = threading.Event()
    a = torch.randn(1024, 1024)

    def spin():
        while not stop.is_set():
            torch.mm(a, a)

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    yield
    stop.set()
    t.join()


@pytest.mark.llmperf(warmup=1, rounds=24, work=False)
def test_busy(llmperf, other_thread):
    llmperf(busy, 0.02 * SLOW)


@pytest.mark.llmperf(warmup=1, rounds=24, work=False)
def test_busy_default_threads(llmperf):
    assert torch.get_num_threads() == 1
    llmperf(busy, 0.01 * SLOW)
"""


def test_an_8x_slowdown_fails_with_the_correction_refused_and_on_default_threads(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
):
    pytester.makepyfile(test_far=FAR)
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=2)
    monkeypatch.setenv("SLOW", "8")
    result = pytester.runpytest("--llmperf", "--llmperf-report=r.json")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "drift correction refused, but the change is far past drift" in out
    judged = {
        r["nodeid"].split("::")[1]: r
        for r in json.loads(pytester.path.joinpath("r.json").read_text())["results"]
    }
    assert judged["test_busy"]["verdict"] == "regression"
    assert judged["test_busy"]["metrics"]["time"]["drift_refused"]  # refused, yet failed
    assert judged["test_busy_default_threads"]["verdict"] == "regression"
    # one thread: the correction stands, raw and corrected agree
    assert not judged["test_busy_default_threads"]["metrics"]["time"]["drift_refused"]


# --------------------------------------------------------------------------- run-level names


@pytest.mark.parametrize(
    "args, ini, bad, where",
    [
        (["--llmperf-gate=wrok"], "", "'wrok'", "--llmperf-gate"),
        ([], "llmperf_gate = wrok", "'wrok'", "ini option llmperf_gate"),
        (["--llmperf-gate=work,troughput"], "", "'troughput'", "--llmperf-gate"),
        (["--llmperf-gate=decode.ops"], "", "'decode.ops'", "--llmperf-gate"),
        (["--llmperf-tolerance=wrok=5%"], "", "'wrok'", "--llmperf-tolerance"),
        ([], "llmperf_tolerance = time=20%,wrok=5%", "'wrok'", "ini option llmperf_tolerance"),
        (["--llmperf-tolerance=.time=5%"], "", "'.time'", "--llmperf-tolerance"),
    ],
)
def test_an_unknown_run_level_name_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], ini: str, bad: str, where: str
):
    """Exit 4, naming the option and the name, listing the valid kinds and names, and
    saying how to reach a metric a test records itself."""
    pytester.makepyfile(test_ok="def test_ok(): pass")
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    for extra in ([], ["--llmperf"]):  # a typo is one, measuring or not
        result = pytester.runpytest(*extra, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        err = result.stderr.str()
        assert f"{where}: unknown metric name or kind {bad}" in err, err
        assert (
            "a kind (time, throughput, memory, energy, ratio, tail, efficiency, other, work)" in err
        )
        assert "work.ops" in err and "ab.speedup" in err and "decode.throughput" in err
        assert "llmperf.record('weights', ...)) is named at run level by its kind" in err
        assert "Traceback" not in err


#: Every run-level spelling the README, docs and tests use, and the forms names take.
VALID = [
    "--llmperf-gate=work",
    "--llmperf-gate=work,speedup",
    "--llmperf-gate=tail",
    "--llmperf-gate=time,memory,energy,ratio,efficiency,other,throughput",
    "--llmperf-gate=decode.throughput,ab.speedup,ops,tensor_peak,ab.reference.work.ops",
    "--llmperf-gate=itl_p99,s.ttft_speedup,decode.work.kernels,peak_memory_reserved",
    "--llmperf-tolerance=10%",
    "--llmperf-tolerance=0.1",
    "--llmperf-tolerance=work=5%",
    "--llmperf-tolerance=time=15%,memory=2%",
    "--llmperf-tolerance=time=900%",
    "--llmperf-tolerance=decode.time=20%,work.ops=0,itl_tail=30%",
]


def test_valid_run_level_names_pass(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_ok="""
        import pytest

        @pytest.mark.llmperf(warmup=0, rounds=5)
        def test_it(llmperf):
            llmperf.record("weights", 1.0, kind="memory")
        """
    )
    for arg in VALID:
        assert pytester.runpytest(arg).ret == pytest.ExitCode.OK, arg
    pytester.makeini("[pytest]\nllmperf_gate = work,speedup\nllmperf_tolerance = work=5%\n")
    pytester.runpytest("--llmperf").assert_outcomes(passed=1)


def test_run_level_names_by_kind_full_name_tail_and_prefix():
    names = ["work", "time", "ops", "work.ops", "decode.work.ops", "ab.speedup", "speedup"]
    names += ["decode.throughput", "ab.reference.time", "s.itl_p99_speedup", "energy", "mfu"]
    assert unknown_run_names(names) == []
    typos = ["wrok", "tiem", "decode.ops", "ops.work", ".time", "time.", "a..time", "weights", ""]
    assert unknown_run_names(typos) == typos


# The metrics real runs yield: a call with items and FLOPs, named and not, a generation,
# an A/B of calls and one of generations, a recorded number.
EVERY_METRIC = """
import pytest
import torch

A = torch.randn(32, 32)


def step():
    return A @ A


def gen():
    for i in range(4):
        yield A @ A


@pytest.mark.llmperf(warmup=0, rounds=5)
def test_every_metric(llmperf):
    llmperf.pedantic(step, items=8, flops=2 * 32**3, bytes=3 * 32 * 32 * 4)
    llmperf.pedantic(step, items=8, name="decode")
    llmperf.generation(gen, prompt_tokens=4, name="g")
    llmperf.ab(step, step, items=8)
    llmperf.ab(gen, gen, generation=True, name="s")
    llmperf.record("weights", 1.0, kind="memory")
"""


def test_plugin_metrics_names_every_metric_the_plugin_takes(pytester: pytest.Pytester):
    """``PLUGIN_METRICS`` is the one list of the plugin's metric names: each metric a real
    run yields is in it with its kind, behind the measurement's name; so are the work
    signature's totals and the metrics only some devices take."""
    pytester.makepyfile(test_every=EVERY_METRIC)
    pytester.runpytest("--llmperf", "--llmperf-report=r.json").assert_outcomes(passed=1)
    (result,) = json.loads(pytester.path.joinpath("r.json").read_text())["results"]
    yielded = {name: m["kind"] for name, m in result["metrics"].items() if name != "weights"}
    prefixes = ("", "decode.", "g.", "ab.", "ab.reference.", "ab.candidate.")
    prefixes += ("s.", "s.reference.", "s.candidate.")
    missing = []
    for name, kind in yielded.items():
        bare = next(
            (name[len(p) :] for p in sorted(prefixes, key=len, reverse=True) if name.startswith(p)
             and name[len(p) :] in PLUGIN_METRICS),
            None,
        )  # fmt: skip
        if bare is None or PLUGIN_METRICS[bare] != kind:
            missing.append((name, kind))
    assert not missing, f"metrics the plugin takes but PLUGIN_METRICS lacks: {missing}"
    # what this run could not show: every total a signature can have, device-only metrics
    full = WorkSignature(graphs=1, kernels={}).totals()  # type: ignore[arg-type]
    assert {f"work.{name}" for name, _, _ in full} <= {
        k for k, v in PLUGIN_METRICS.items() if v == "work"
    }
    assert set(OPTIONAL_METRICS) <= set(PLUGIN_METRICS)
    # and every name in it is one a run yields or an optional one: no stale entries
    seen = {n for name in yielded for n in PLUGIN_METRICS if name == n or name.endswith("." + n)}
    seen |= {f"work.{name}" for name, _, _ in full} | set(OPTIONAL_METRICS)
    assert set(PLUGIN_METRICS) - seen == set()
