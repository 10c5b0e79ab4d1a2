"""Generation latency (issue 15): TTFT, TPOT, inter-token latency percentiles.

The arithmetic is tested on hand-built ``GenerationLog``s (no clock, so exact); the
user's view with a few pytester runs of small projects, each exercising several
cases. Where a run must time something, the step time is set by busy-waiting on
``time.perf_counter()`` and every effect is 4x or more on the statistic it gates,
so a noisy shared runner cannot flip an outcome.
"""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest

from pytest_llmperf.measure.generation import (
    HISTOGRAM_CAP,
    GenerationError,
    GenerationLog,
    TokenClock,
    generation_metrics,
    histogram_intervals,
    intervals,
    paired_token_metrics,
    per_round_series,
    token_record,
)
from pytest_llmperf.metrics import percentile as quantile

MS = 1e-3
approx = pytest.approx


def by_name(metrics: list) -> dict:
    return {m.name: m for m in metrics}


# --------------------------------------------------------------------------- pure functions


def test_quantile_interpolates_linearly_like_numpy():
    import numpy as np

    rng = np.random.default_rng(15)
    for n in (1, 2, 7, 31, 100):
        values = sorted(rng.random(n).tolist())
        for q in (0.0, 50.0, 90.0, 99.0, 100.0):
            assert quantile(values, q) == approx(float(np.percentile(values, q)))
    assert quantile([1.0, 2.0, 3.0, 4.0], 50.0) == 2.5
    assert math.isnan(quantile([], 50.0))


def test_intervals_are_between_token_marks_not_from_the_start():
    assert intervals([0.0, 0.1, 0.3, 0.6]) == approx([0.2, 0.3])
    assert intervals([0.0, 0.1]) == []  # one token: no interval


# Two generations, seconds from the call to each token mark.
#   A: TTFT 10 ms, intervals 1, 2, 3 ms            (4 tokens)
#   B: TTFT 20 ms, intervals 1, 1, 1, 11 ms        (5 tokens)
# Pooled intervals, sorted: 1 1 1 1 2 3 11 ms.
GEN_A = [0.0, 10 * MS, 11 * MS, 13 * MS, 16 * MS]
GEN_B = [0.0, 20 * MS, 21 * MS, 22 * MS, 23 * MS, 34 * MS]
TIMES = [20 * MS, 40 * MS]  # end-to-end round times


def hand_log() -> GenerationLog:
    return GenerationLog(batch=4, prompt_tokens=8, marks=[list(GEN_A), list(GEN_B)])


def test_per_round_series_per_generation():
    s = per_round_series([GEN_A, GEN_B])
    assert s["ttft"] == approx([10 * MS, 20 * MS])
    # TPOT: (last - first) / (n - 1), the first token excluded
    assert s["tpot"] == approx([6 * MS / 3, 14 * MS / 4])
    assert s["itl_p50"] == approx([2 * MS, 1 * MS])
    assert s["itl_p99"] == approx([2.98 * MS, 10.7 * MS])
    assert s["itl_max"] == approx([3 * MS, 11 * MS])


def test_generation_metrics_from_a_hand_built_log():
    metrics, notes = generation_metrics(hand_log(), TIMES, [], "", "")
    m = by_name(metrics)
    assert notes == []
    assert set(m) == {
        "ttft",
        "prefill_throughput",
        "tpot",
        "decode_throughput",
        "itl_p50",
        "itl_p90",
        "itl_p99",
        "itl_tail",
        "itl_max",
        "e2e_latency",
        "throughput",
        "output_tokens",
    }
    # TTFT: the first mark; TPOT: (last - first) / (n - 1)
    assert m["ttft"].samples == approx([10 * MS, 20 * MS])
    assert m["ttft"].value == approx(15 * MS)
    assert m["tpot"].samples == approx([2 * MS, 3.5 * MS])
    assert m["tpot"].value == approx(2.75 * MS)
    # ITL percentiles: the value over every interval of every generation (pooled),
    # the samples per generation (what the statistical test compares)
    assert m["itl_p50"].value == approx(1 * MS)  # the median of per-generation p50s is 1.5
    assert m["itl_p50"].samples == approx([2 * MS, 1 * MS])
    assert m["itl_p90"].value == approx(6.2 * MS)
    assert m["itl_p99"].value == approx(10.52 * MS)
    assert m["itl_p99"].samples == approx([2.98 * MS, 10.7 * MS])
    # the tail's shape, p99 / p50: pooled for the value, within each generation for samples
    assert m["itl_tail"].value == approx(10.52)
    assert m["itl_tail"].samples == approx([2.98 / 2, 10.7 / 1])
    assert (m["itl_tail"].unit, m["itl_tail"].kind) == ("x", "tail")
    assert not m["itl_tail"].higher_is_better
    assert m["itl_max"].value == approx(11 * MS)
    assert m["itl_max"].samples == approx([3 * MS, 11 * MS])
    # batch 4, 8 prompt tokens per sequence
    assert m["prefill_throughput"].samples == approx([32 / (10 * MS), 32 / (20 * MS)])
    assert m["prefill_throughput"].value == approx(2400)
    assert m["decode_throughput"].samples == approx([4 / (2 * MS), 4 / (3.5 * MS)])
    # throughput: batch * tokens / end-to-end time
    assert m["throughput"].samples == approx([4 * 4 / (20 * MS), 4 * 5 / (40 * MS)])
    assert m["throughput"].value == approx(650)
    assert m["e2e_latency"].samples == approx(TIMES) and m["e2e_latency"].value == approx(30 * MS)
    assert m["output_tokens"].value == 18.0 and m["output_tokens"].unit == "tokens"
    # directions, units and kinds
    for name in ("prefill_throughput", "decode_throughput", "throughput"):
        assert m[name].higher_is_better and m[name].unit == "tokens/s"
        assert m[name].kind == "throughput"
    for name in ("ttft", "tpot", "itl_p50", "itl_p90", "itl_p99", "e2e_latency"):
        assert not m[name].higher_is_better and m[name].unit == "s"
    assert [m[f"itl_{p}"].kind for p in ("p50", "p90", "p99", "tail", "max")] == [
        "time",
        "time",
        "tail",
        "tail",
        "tail",
    ]
    # one preempted token sets the maximum; the end-to-end latency includes the prompt
    ungated = {n for n, x in m.items() if not x.gated}
    assert ungated == {"itl_max", "e2e_latency", "output_tokens"}
    # no drift correction given: none applied
    assert all(x.normalized_samples == [] for x in metrics)


def test_prefix_and_no_prompt_tokens():
    log = GenerationLog(batch=1, marks=[list(GEN_A), list(GEN_B)])
    m = by_name(generation_metrics(log, TIMES, [], "decode.", "")[0])
    assert "decode.prefill_throughput" not in m
    assert m["decode.decode_throughput"].samples == approx([1 / (2 * MS), 1 / (3.5 * MS)])
    assert m["decode.output_tokens"].value == 4.5  # the median of 4 and 5 tokens


def test_drift_normalized_samples_scale_with_each_rounds_factor():
    # round 1 ran on a machine twice as fast as its drift reference says: factor 2
    normalized = [40 * MS, 40 * MS]
    m = by_name(generation_metrics(hand_log(), TIMES, normalized, "", "")[0])
    factors = [2.0, 1.0]
    for name in ("ttft", "tpot", "itl_p50", "itl_p90", "itl_p99", "itl_max"):
        expected = [s * f for s, f in zip(m[name].samples, factors, strict=True)]
        assert m[name].normalized_samples == approx(expected), name  # seconds x factor
    for name in ("prefill_throughput", "decode_throughput", "throughput"):
        expected = [s / f for s, f in zip(m[name].samples, factors, strict=True)]
        assert m[name].normalized_samples == approx(expected), name  # rates / factor
    assert m["ttft"].normalized_samples == approx([20 * MS, 20 * MS])
    assert m["e2e_latency"].normalized_samples == []  # its own correction is elsewhere
    assert m["itl_tail"].normalized_samples == []  # a ratio within a generation: no drift
    # a correction that does not cover every generation is not applied
    short = by_name(generation_metrics(hand_log(), TIMES, normalized[:1], "", "")[0])
    assert all(x.normalized_samples == [] for x in short.values())


def test_ungated_form_gates_nothing():
    metrics, _ = generation_metrics(hand_log(), TIMES, [], "s.reference.", "", gated=False)
    assert metrics and not any(m.gated for m in metrics)


def test_one_token_generations_have_no_inter_token_latency():
    log = GenerationLog(marks=[[0.0, 10 * MS], [0.0, 12 * MS]])
    metrics, notes = generation_metrics(log, [11 * MS, 13 * MS], [], "g.", "")
    assert set(by_name(metrics)) == {"g.ttft", "g.e2e_latency", "g.throughput", "g.output_tokens"}
    assert notes == ["g.one token per generation: no inter-token latency (TPOT, ITL) to report"]


def test_paired_token_metrics_ratio_per_pair_reference_over_candidate():
    # Pair 1: TTFT 10 vs 5 ms; intervals ref 1, 2, 6 ms, cand 2, 1, 3 ms.
    # Pair 2: TTFT 4 vs 4 ms; intervals ref 1, 1, 1 ms, cand 2, 2, 2 ms.
    reference = GenerationLog(
        marks=[[0.0, 10 * MS, 11 * MS, 13 * MS, 19 * MS], [0.0, 4 * MS, 5 * MS, 6 * MS, 7 * MS]]
    )
    candidate = GenerationLog(
        marks=[[0.0, 5 * MS, 7 * MS, 8 * MS, 11 * MS], [0.0, 4 * MS, 6 * MS, 8 * MS, 10 * MS]]
    )
    m = by_name(paired_token_metrics(reference, candidate, "s", 0.07))
    assert set(m) == {"s.ttft_speedup", "s.itl_speedup", "s.itl_p99_speedup"}
    # > 1: the candidate is faster
    assert m["s.ttft_speedup"].samples == approx([2.0, 1.0])
    assert m["s.ttft_speedup"].value == approx(1.5)
    # per token, then the median over positions: [0.5, 2, 2] -> 2 (the ratio of the
    # pair's median ITLs would be 1, of its means 1.5)
    assert m["s.itl_speedup"].samples == approx([2.0, 0.5])
    assert m["s.itl_p99_speedup"].samples == approx([5.92 / 2.98, 0.5])
    for x in m.values():
        assert x.higher_is_better and x.unit == "x" and x.gated
    assert (m["s.ttft_speedup"].kind, m["s.itl_speedup"].kind) == ("ratio", "ratio")
    assert m["s.ttft_speedup"].tolerance == m["s.itl_speedup"].tolerance == 0.07
    assert m["s.itl_p99_speedup"].kind == "tail" and m["s.itl_p99_speedup"].tolerance is None
    # swapped sides: the ratios invert
    back = by_name(paired_token_metrics(candidate, reference, "s", None))
    assert back["s.ttft_speedup"].samples == approx([0.5, 1.0])
    # one-token generations: only the TTFT ratio
    one = GenerationLog(marks=[[0.0, 2 * MS]])
    assert [x.name for x in paired_token_metrics(one, one, "s", None)] == ["s.ttft_speedup"]


def test_token_record_counts_tokens_marked_and_thins_the_histogram():
    record = token_record(hand_log())
    assert record["generations"] == 2 and record["tokens"] == [4, 5]
    assert (record["batch"], record["prompt_tokens"]) == (4, 8)
    assert record["ttft_s"] == approx([10 * MS, 20 * MS])
    assert record["itl_s"] == approx([1 * MS, 2 * MS, 3 * MS, 1 * MS, 1 * MS, 1 * MS, 11 * MS])
    long = GenerationLog(marks=[[0.0] + [k * MS for k in range(1, 5002)]])
    assert len(histogram_intervals(long)) == HISTOGRAM_CAP


def test_marks_out_of_order_are_an_error_naming_the_test():
    clock = TokenClock(SimpleNamespace(type="cpu"), "t.py::test_it")
    # perf_counter_ns marks: the start, then each token
    assert clock.seconds([1_000, 2_000, 1_002_000]) == approx([0.0, 1e-6, 1.001e-3])
    with pytest.raises(GenerationError) as err:
        clock.seconds([1_000, 2_000_000, 1_500_000])
    assert str(err.value).startswith("t.py::test_it: token marks out of order: mark 2 is 500 us")


# --------------------------------------------------------------------------- pytester runs

API = """
import time
import pytest

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def decode(n, step=0.0):
    for i in range(n):
        spin(step)
        yield i * 10

@pytest.mark.llmperf(warmup=2, rounds=3)
def test_yield(llmperf):
    assert llmperf.generation(decode, args=(5,)) == [0, 10, 20, 30, 40]

@pytest.mark.llmperf(warmup=1, rounds=3)
def test_tick(llmperf):
    def generate(prompt, callback):
        for i in range(6):
            callback(i)
        return "done " + prompt
    out = llmperf.generation(
        generate, args=("p",), kwargs={"callback": llmperf.tick}, batch=4, prompt_tokens=8
    )
    assert out == "done p"

@pytest.mark.llmperf(warmup=0, rounds=3)
def test_ab(llmperf):
    llmperf.ab(
        lambda: decode(8, 0.0005), lambda: decode(8, 0.002), generation=True, name="s"
    )

@pytest.mark.llmperf(warmup=0, rounds=2)
def test_oom(llmperf):
    def gen():
        yield 1
        yield 2
        raise MemoryError("no room")
    llmperf.generation(gen)

def test_no_token(llmperf):
    llmperf.generation(lambda: 1)

def test_tick_outside(llmperf):
    llmperf.tick()

def test_tick_in_yielding(llmperf):
    def gen():
        yield 1
        llmperf.tick()
        yield 2
    llmperf.generation(gen)

def test_tick_then_iterator(llmperf):
    def gen():
        llmperf.tick()
        return iter([1, 2])
    llmperf.generation(gen)

@pytest.mark.parametrize("kw", [{"batch": 0}, {"batch": True}, {"prompt_tokens": -1}])
def test_count(llmperf, kw):
    llmperf.generation(decode, args=(2,), **kw)

def test_raises(llmperf):
    def gen():
        yield 1
        yield 2
        yield 3
        raise KeyError("boom")
    llmperf.generation(gen)

def test_generator_to_llmperf(llmperf):
    llmperf(decode, 3)

@pytest.mark.llmperf(warmup=0, rounds=2)
def test_name_clash(llmperf):
    llmperf.generation(decode, args=(2,))
    def second():
        raise RuntimeError("the second generation was run")
        yield
    llmperf.generation(second)
"""

PASSING = ("test_yield", "test_tick", "test_ab", "test_oom")
FAILING = {
    "test_no_token": "the generation marked no token: yield each new token",
    "test_tick_outside": "llmperf.tick() called outside a generation",
    "test_tick_in_yielding": "llmperf.tick() called inside a generator that yields its tokens",
    "test_tick_then_iterator": "called llmperf.tick() and then returned an iterator of tokens",
    "test_count[kw0]": "llmperf.generation(batch=...): expected an int >= 1, got 0",
    "test_count[kw1]": "llmperf.generation(batch=...): expected an int >= 1, got True",
    "test_count[kw2]": "llmperf.generation(prompt_tokens=...): expected an int >= 0, got -1",
    "test_generator_to_llmperf": "the call returned a generator, so only its creation was "
    "timed; measure a generation that yields its tokens with llmperf.generation(fn)",
    "test_name_clash": "llmperf.generation: metric ttft already measured; pass name=... "
    "to llmperf.generation",
}


@pytest.fixture
def api(pytester: pytest.Pytester) -> tuple:
    pytester.makepyfile(test_api=API)
    # -rN: no short summary, whose FAILED lines would read as this file's own failures
    result = pytester.runpytest(
        "--llmperf", "--llmperf-report=r.json", "-p", "no:cacheprovider", "-rN"
    )
    report = json.loads((pytester.path / "r.json").read_text())
    tests = {r["nodeid"].split("::", 1)[1]: r for r in report["results"]}
    # each failed test: the exception it failed with (type: message)
    failures = {
        rep.nodeid.split("::", 1)[1]: rep.longrepr.reprcrash.message
        for rep in result.reprec.getreports("pytest_runtest_logreport")
        if rep.failed
    }
    return result, tests, failures


def test_generation_run_records_metrics_tokens_and_bad_input(api: tuple) -> None:
    result, tests, failures = api
    assert set(failures) == {*FAILING, "test_raises"}, failures
    for name in PASSING:
        assert name in tests, name
    result.assert_outcomes(passed=len(PASSING), failed=len(FAILING) + 1)

    # -- the generator form: returns what it yielded (asserted in the project)
    gen = tests["test_yield"]
    assert gen["status"] == "ok"
    metrics = gen["metrics"]
    for name in (
        "ttft",
        "tpot",
        "itl_p50",
        "itl_p90",
        "itl_p99",
        "itl_tail",
        "itl_max",
        "decode_throughput",
        "e2e_latency",
        "throughput",
        "output_tokens",
    ):
        assert name in metrics, name
    assert "prefill_throughput" not in metrics  # no prompt_tokens given
    record = gen["tokens"][""]
    # 3 rounds: 3 generations logged, the 2 warm-up generations not
    assert record["generations"] == 3 and record["tokens"] == [5, 5, 5]
    assert len(record["itl_s"]) == 3 * 4 and len(record["ttft_s"]) == 3
    assert metrics["ttft"]["samples"] == approx(record["ttft_s"])
    assert metrics["output_tokens"]["value"] == 5
    assert len(metrics["e2e_latency"]["samples"]) == 3

    # -- the tick form, 4 sequences of 8 prompt tokens
    tick = tests["test_tick"]
    metrics, record = tick["metrics"], tick["tokens"][""]
    assert record["generations"] == 3 and record["tokens"] == [6, 6, 6]
    assert (record["batch"], record["prompt_tokens"]) == (4, 8)
    assert metrics["output_tokens"]["value"] == 24  # batch x tokens
    assert metrics["prefill_throughput"]["samples"] == approx([32 / t for t in record["ttft_s"]])
    assert metrics["decode_throughput"]["samples"] == approx(
        [4 / t for t in metrics["tpot"]["samples"]]
    )
    assert metrics["throughput"]["samples"] == approx(
        [24 / t for t in metrics["e2e_latency"]["samples"]]
    )
    assert metrics["itl_p99"]["kind"] == "tail" and metrics["itl_p99"]["gated"]
    assert not metrics["itl_max"]["gated"]

    # -- the A/B of generations: the candidate is 4x slower per token
    ab = tests["test_ab"]["metrics"]
    for name in ("s.speedup", "s.ttft_speedup", "s.itl_speedup", "s.itl_p99_speedup"):
        assert ab[name]["gated"] and ab[name]["unit"] == "x", name
    for side in ("s.reference", "s.candidate"):
        for name in ("ttft", "tpot", "itl_p99", "throughput"):
            assert not ab[f"{side}.{name}"]["gated"], (side, name)
        assert tests["test_ab"]["tokens"][side]["tokens"] == [8, 8, 8]
    assert ab["s.itl_speedup"]["value"] < 0.5
    assert len(ab["s.itl_speedup"]["samples"]) == 3

    # -- an OOM in a generation: status oom with how far it got; no baseline, so it passes
    oom = tests["test_oom"]
    assert oom["status"] == "oom"
    assert any("no room (after 2 token(s) of a generation)" in n for n in oom["notes"]), oom

    # -- bad input: the test fails with a message naming it
    for name, words in FAILING.items():
        assert f"test_api.py::{name}: " in failures[name], (name, failures[name])
        assert words in failures[name], (name, failures[name])
    # the clash is found before the second generation runs
    assert failures["test_name_clash"].startswith("ValueError: test_api.py::test_name_clash")
    # an exception of the user's code stays that exception, with how far it got
    assert failures["test_raises"] == (
        "KeyError: 'boom'\nllmperf: the generation raised after 3 token mark(s)"
    )
    assert "INTERNALERROR" not in result.stdout.str()


TAIL = """
import os, time
import pytest

STALL = float(os.environ.get("STALL", "1"))

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def decode():
    # 16 tokens at 0.5 ms, every 8th 10 ms: a tail of the code's own, larger than the
    # machine's preemptions (2-6 ms on a shared 2-core runner), so those do not set the
    # p99 of an unchanged run; STALL=8 makes those tokens 80 ms
    for i in range(16):
        spin(0.010 * STALL if i % 8 == 7 else 0.0005)
        yield i

@pytest.mark.llmperf(
    warmup=1, rounds=6, drift_correction=False, gate="itl_p99", tolerance={"itl_p99": "100%"}
)
def test_decode(llmperf):
    llmperf.generation(decode)
"""


def test_gate_catches_a_tail_regression_not_an_unchanged_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ITL p99 moves 8x with the stall (10 -> 80 ms, each generation's too); the gate
    fails past 2x. Only the tail decides here (``gate``): the stall moves the mean
    (TPOT) 6x as well. Drift correction is off: its per-round factor swung 3x between
    rounds on the shared runner, and raw and corrected must agree to fail."""
    pytester.makepyfile(test_tail=TAIL)
    args = ("--llmperf", "-p", "no:cacheprovider", "-rN")
    pytester.runpytest(*args, "--llmperf-update-baselines").assert_outcomes(passed=1)
    unchanged = pytester.runpytest(*args)
    unchanged.assert_outcomes(passed=1)
    assert "REGRESSION" not in unchanged.stdout.str()
    monkeypatch.setenv("STALL", "8")
    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*REGRESSION itl_p99: baseline *, current * ms (+*%*"])


# --------------------------------------------------------------------------- endless generations


def test_a_generation_stops_at_the_token_cap_with_marks_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exactly the cap is a generation; one token more is endless: a ``GenerationError``
    naming the test and the tokens, with the clock's marks never past the cap (bounded
    memory), by yield and by tick. The cap is lowered here so the test is instant."""
    from pytest_llmperf.measure import generation

    monkeypatch.setattr(generation, "MAX_TOKENS", 1000)
    clock = TokenClock(SimpleNamespace(type="cpu"), "t.py::test_it")
    tokens, marks = clock.run(lambda: iter(range(1000)))
    assert len(tokens) == 1000 and len(marks) == 1001
    assert len(clock.run(lambda: [clock.tick() for _ in range(1000)])[1]) == 1001
    seen: list[int] = []  # len(clock.marks) as the generation runs
    closed: list[bool] = []

    def look() -> None:
        seen.append(len(clock.marks))
        if len(seen) > 5000:  # a safety net: were the cap not kept, fail, not fill memory
            raise RuntimeError("llmperf did not stop an endless generation")

    def forever():
        try:
            while True:
                look()
                yield 0
        finally:
            closed.append(True)  # the abandoned generator is closed, not left running

    def decode(callback):
        while True:
            look()
            callback(0)

    for fn in (forever, lambda: decode(clock.tick)):
        seen.clear()
        with pytest.raises(GenerationError) as err:
            clock.run(fn)
        assert str(err.value).startswith(
            "t.py::test_it: the generation did not end: over 1,000 tokens in "
        )
        assert "max_time bounds the rounds, not one generation" in str(err.value)
        assert max(seen) == 1001 and clock.marks == []  # start + 1000 tokens, then dropped
    assert closed == [True]
    # the clock still works afterwards
    assert len(clock.run(lambda: iter([1, 2]))[1]) == 3


ENDLESS = """
import pytest

#: A safety net, not the rule under test: were the plugin never to stop these, the test
#: fails here (5x its cap) instead of filling the machine's memory.
GUARD = 5_000_000

@pytest.mark.llmperf(max_time=1)
def test_yield_forever(llmperf):
    def forever():
        n = 0
        while True:
            n += 1
            if n > GUARD:
                raise RuntimeError(f"llmperf did not stop an endless generation: {n} tokens")
            yield 0
    llmperf.generation(forever)

@pytest.mark.llmperf(max_time=1)
def test_tick_forever(llmperf):
    def generate(callback):
        n = 0
        while True:
            n += 1
            if n > GUARD:
                raise RuntimeError(f"llmperf did not stop an endless generation: {n} tokens")
            callback(n)
    llmperf.generation(generate, kwargs={"callback": llmperf.tick})
"""


def test_an_endless_generation_fails_fast_naming_the_test_and_the_tokens(
    pytester: pytest.Pytester,
) -> None:
    """Generators that never end, under ``max_time=1``: each test fails at the real cap
    (a million tokens, under a second here) with a message naming it, the cap and the time,
    instead of growing until the machine kills it."""
    from pytest_llmperf.measure.generation import MAX_TOKENS

    assert MAX_TOKENS == 1_000_000
    pytester.makepyfile(test_endless=ENDLESS)
    result = pytester.runpytest("--llmperf", "-p", "no:cacheprovider", "-rN")
    failures = {
        rep.nodeid.split("::", 1)[1]: rep.longrepr.reprcrash.message
        for rep in result.reprec.getreports("pytest_runtest_logreport")
        if rep.failed
    }
    assert set(failures) == {"test_yield_forever", "test_tick_forever"}, failures
    for name, message in failures.items():
        assert re.fullmatch(
            rf"pytest_llmperf\.measure\.generation\.GenerationError: test_endless\.py::{name}: "
            r"the generation did not end: "
            r"over 1,000,000 tokens in \d+\.\d s \(one generation may mark 1,000,000; "
            r"max_time bounds the rounds, not one generation\)\. .*",
            message,
            re.S,
        ), message
    result.assert_outcomes(failed=2)
    assert "INTERNALERROR" not in result.stdout.str()
