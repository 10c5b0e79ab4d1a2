"""A plain ``pytest`` runs each performance test's body once, unmeasured, so the tests
stay smoke tests of the code they measure; ``--llmperf-skip`` skips them instead; and
pytest-benchmark's ``pedantic`` spellings mean what they mean there. Real pytest runs
(pytester); what is asserted is counted calls and outcomes, never a time."""

from __future__ import annotations

import json

import pytest

# Every call of a measured function appends one line to calls.txt, so a run's call count
# is read back exactly.
PROJECT = """
import pytest

def count(tag):
    with open("calls.txt", "a") as f:
        f.write(tag + "\\n")

@pytest.mark.llmperf(warmup=2, rounds=5)
def test_call(llmperf):
    assert llmperf(lambda x: count("call") or x * 2, 21) == 42

@pytest.mark.llmperf(warmup=2, rounds=5)
def test_generation(llmperf):
    def gen():
        count("generation")
        for i in range(3):
            yield i
    assert llmperf.generation(gen) == [0, 1, 2]

def test_ab(llmperf):
    result = llmperf.ab(lambda: count("ab.reference"), lambda: count("ab.candidate"), rounds=4)
    assert len(result.ratios) >= 1

def test_ticks(llmperf):
    def decode():
        count("ticks")
        for _ in range(4):
            llmperf.tick()
    llmperf.generation(decode)
    assert llmperf.last.generation.log.marks, "the marks are logged once too"

def test_broken(llmperf):
    llmperf(lambda: 1 / 0)

@pytest.mark.llmperf
def test_marker_only():
    count("marker_only")
"""


def _calls(pytester: pytest.Pytester) -> list[str]:
    path = pytester.path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def test_plain_run_calls_each_body_once_and_fails_a_broken_one(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_perf=PROJECT)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    assert sorted(_calls(pytester)) == sorted(
        ["call", "generation", "ab.reference", "ab.candidate", "ticks", "marker_only"]
    )
    result.stdout.fnmatch_lines(["*ZeroDivisionError*", "llmperf: 5 performance tests ran once*"])
    assert not (pytester.path / "baselines").exists(), "a plain run writes nothing"


def test_llmperf_measures_the_same_bodies_many_times(pytester: pytest.Pytester) -> None:
    """The counter's check: with --llmperf the same call runs warm-up + rounds times."""
    pytester.makepyfile(test_perf=PROJECT)
    pytester.runpytest("-p", "no:cacheprovider", "--llmperf", "-k", "test_call")
    assert _calls(pytester).count("call") >= 2 + 5


@pytest.mark.parametrize("how", ["option", "ini"])
def test_llmperf_skip_skips_them(pytester: pytest.Pytester, how: str) -> None:
    pytester.makepyfile(test_perf=PROJECT)
    args = ["-p", "no:cacheprovider", "-rs"]
    if how == "option":
        args.append("--llmperf-skip")
    else:
        pytester.makeini("[pytest]\nllmperf_skip = true\n")
    result = pytester.runpytest(*args)
    result.assert_outcomes(skipped=6)
    result.stdout.fnmatch_lines(["*--llmperf-skip*measure it with `pytest --llmperf`*"])
    assert _calls(pytester) == []
    if how == "ini":  # the ini option does not stop a run that measures
        measured = pytester.runpytest("-p", "no:cacheprovider", "--llmperf", "-k", "test_call")
        measured.assert_outcomes(passed=1)


def test_torchrun_test_is_skipped_with_a_reason_in_a_plain_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_tp="""
def test_tp(llmperf):
    if llmperf.torchrun(2):
        return
    raise AssertionError("a rank's body must not run in a plain session")
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*torchrun(2) launches 2 ranks*--llmperf*"])


BENCHMARK_SPELLINGS = """
import json, pytest

seen = []

def work(a, b=0):
    seen.append((a, b))

@pytest.mark.llmperf(rounds=3)
def test_spellings(llmperf):
    llmperf.extra_info["model"] = "tiny"
    llmperf.pedantic(work, setup=lambda: ((len(seen),), {"b": 7}), warmup_rounds=1, iterations=1)
    # setup's (args, kwargs) reach every call, warm-up and measured rounds alike
    assert seen and all(b == 7 for _, b in seen), seen
    assert seen[0][0] == 0 and seen[1][0] == 1, "fresh arguments each round"

@pytest.mark.llmperf(warmup=0, rounds=3)
def test_iterations(llmperf):
    llmperf.pedantic(work, args=(1,), iterations=4, name="looped")
    assert llmperf.last.iterations == 4
    with open("iter.json", "w") as f:
        json.dump({"calls": len(seen)}, f)
"""


def test_pytest_benchmark_spellings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCHMARK_SPELLINGS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--llmperf", "--llmperf-report=r.json")
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "r.json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t for t in report["results"]}
    assert tests["test_spellings"]["params"]["model"] == "tiny"
    # 3 rounds of 4 calls, nothing else timed (warm-up 0): each round one loop of 4
    calls = json.loads((pytester.path / "iter.json").read_text())["calls"]
    assert calls % 4 == 0 and calls >= 12, calls


ITERATIONS_TIME = """
import time, pytest

@pytest.mark.llmperf(warmup=0, rounds=3, drift_correction=False)
def test_looped(llmperf):
    llmperf.pedantic(time.sleep, args=(0.01,), iterations=5)
"""


def test_iterations_time_is_per_call(pytester: pytest.Pytester) -> None:
    """Five 10 ms sleeps per round: the time recorded is one call's (10-40 ms under load),
    not the round's 50 ms or more."""
    pytester.makepyfile(test_it=ITERATIONS_TIME)
    result = pytester.runpytest("-p", "no:cacheprovider", "--llmperf", "--llmperf-report=r.json")
    result.assert_outcomes(passed=1)
    (test,) = json.loads((pytester.path / "r.json").read_text())["results"]
    assert 0.009 < test["metrics"]["time"]["value"] < 0.045, test["metrics"]["time"]


@pytest.mark.parametrize(
    ("call", "words"),
    [
        ("llmperf.pedantic(f, warmup=1, warmup_rounds=1)", "warmup and warmup_rounds are the same"),
        ("llmperf.pedantic(f, iterations=0)", "iterations=...): expected an int >= 1"),
        ("llmperf.pedantic(f, iterations=2, setup=lambda: None)", "iterations=2 with setup"),
        ("llmperf.pedantic(f, args=(1,), setup=lambda: ((1,), {}))", "cannot be given as well"),
        ("llmperf.pedantic(f, setup=lambda: 5)", "setup returned 5"),
    ],
)
@pytest.mark.parametrize("measuring", [True, False], ids=["llmperf", "plain"])
def test_spelling_mistakes_are_errors_naming_the_call(
    pytester: pytest.Pytester, call: str, words: str, measuring: bool
) -> None:
    pytester.makepyfile(
        test_bad=f"""
def f(*a):
    pass

def test_bad(llmperf):
    {call}
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", *(["--llmperf"] if measuring else []))
    result.assert_outcomes(failed=1)
    assert words in result.stdout.str()
    assert "test_bad.py::test_bad: llmperf.pedantic" in result.stdout.str()


def test_out_of_memory_once_is_a_skip_that_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_oom="""
def too_big():
    raise MemoryError("cannot allocate 80 GiB")

def test_oom(llmperf):
    llmperf(too_big)
"""
    )
    plain = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    plain.assert_outcomes(skipped=1)
    plain.stdout.fnmatch_lines(["*out of memory running the body once*80 GiB*"])
    # measured, the same test passes with status oom (a result, not an error)
    measured = pytester.runpytest("-p", "no:cacheprovider", "--llmperf", "--llmperf-report=r.json")
    measured.assert_outcomes(passed=1)
    (result,) = json.loads((pytester.path / "r.json").read_text())["results"]
    assert result["status"] == "oom"
