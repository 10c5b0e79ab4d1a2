"""Bad input is a clear error naming the test, option or value (issue 12, items 6, 7, 9,
10, 14): marker, call and option values out of range, devices this machine lacks, ini
booleans pytest cannot read, ``llmperf.record`` misuse, metric name clashes, and gate or
tolerance names that match none of a test's metrics. Never an INTERNALERROR."""

from __future__ import annotations

import pytest

from pytest_llmperf.config import (
    MAX_THREADS,
    Policy,
    RunOptions,
    parse_device,
    unknown_names,
)

NODE = "t.py::test_it"


def marks(*kwargs: dict) -> list:
    return [pytest.mark.llmperf(**kw).mark for kw in kwargs]


def policy_error(*kwargs: dict) -> str:
    with pytest.raises(ValueError) as err:
        Policy.from_markers(marks(*kwargs), defaults=Policy(), where=NODE)
    return str(err.value)


# --------------------------------------------------------------------------- item 6


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"rounds": float("inf")}, "rounds=...): expected an integer or 'auto', got inf"),
        ({"rounds": 10**30}, "rounds=...): must be <= 1000000"),
        ({"rounds": True}, "rounds=...): expected an integer or 'auto', got True"),
        ({"max_rounds": 10**30}, "max_rounds=...): must be <= 1000000"),
        ({"max_rounds": 0}, "max_rounds=...): must be >= 1, got 0"),
        ({"min_rounds": True}, "min_rounds=...): expected an integer, got True"),
        ({"warmup": 10**30}, "warmup=...): must be <= 100000"),
        ({"max_time": float("nan")}, "max_time=...): expected a finite number, got nan"),
        ({"max_time": float("inf")}, "max_time=...): expected a finite number, got inf"),
        ({"max_time": 10**6}, "max_time=...): must be <= 86400"),
        ({"items": float("nan")}, "items=...): expected a finite number, got nan"),
        ({"items": float("inf")}, "items=...): expected a finite number, got inf"),
        ({"items": -1}, "items=...): must be >= 0"),
        ({"flops": float("nan")}, "flops=...): expected a finite number"),
        ({"bytes": float("nan")}, "bytes=...): expected a finite number"),
        ({"remeasure": 10**9}, "remeasure=...): must be <= 100"),
        ({"tolerance": 1e9}, "tolerance 1000000000.0 must be >= 0 and <= 100 (10000%)"),
        ({"tolerance": "nan"}, "tolerance 'nan' must be >= 0 and <= 100 (10000%)"),
        ({"tolerance": True}, "tolerance True is not a number or a percentage"),
        ({"tolerance": {"time": float("inf")}}, "[time]: tolerance inf must be >= 0"),
        ({"rounds": 10**5000}, "rounds=...): must be <= 1000000, got an integer of"),
    ],
)
def test_marker_values_out_of_range_name_the_test_keyword_and_bound(kwargs: dict, words: str):
    message = policy_error(kwargs)
    assert NODE in message and words in message


def test_min_rounds_above_max_rounds_is_refused_once_all_markers_apply():
    assert "min_rounds (20) must be <= max_rounds (10)" in policy_error(
        {"max_rounds": 10}, {"min_rounds": 20}
    )
    # the default min_rounds (5) against a smaller max_rounds: said, with the default
    assert "min_rounds (5) must be <= max_rounds (3); the default" in policy_error(
        {"max_rounds": 3}
    )
    # a module's max_rounds=3 and the function's min_rounds=2 agree once both apply
    policy = Policy.from_markers(
        marks({"max_rounds": 3}, {"min_rounds": 2}), defaults=Policy(), where=NODE
    )
    assert (policy.min_rounds, policy.max_rounds) == (2, 3)
    with pytest.raises(ValueError, match="llmperf.pedantic: min_rounds"):
        Policy().with_keywords({"min_rounds": 2000}, "llmperf.pedantic")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--llmperf-threads=100000"], f"--llmperf-threads: must be <= {MAX_THREADS}"),
        (["--llmperf-pool=100000"], "--llmperf-pool: must be <= 1000"),
        (["--llmperf-rounds=inf"], "--llmperf-rounds: expected an integer or 'auto', got 'inf'"),
        (["--llmperf-rounds=1000000000000"], "--llmperf-rounds: must be <= 1000000"),
        (["--llmperf-warmup=1e30"], "--llmperf-warmup: expected an integer or 'auto'"),
        (["--llmperf-max-time=nan"], "--llmperf-max-time: expected a finite number, got 'nan'"),
        (["--llmperf-max-time=inf"], "--llmperf-max-time: expected a finite number, got 'inf'"),
        (["--llmperf-tolerance=1e9"], "--llmperf-tolerance: tolerance '1e9' must be >= 0 and <="),
    ],
)
def test_options_share_the_marker_bounds(pytester: pytest.Pytester, args: list[str], words: str):
    with pytest.raises(ValueError) as err:
        RunOptions.from_pytest_config(pytester.parseconfig(*args))
    assert words in str(err.value)


BAD_CALLS = """
import pytest

pytestmark = pytest.mark.llmperf(warmup=0, rounds=2, work=False)

def noop():
    pass

def test_rounds_inf(llmperf):
    llmperf.pedantic(noop, rounds=float("inf"))

def test_rounds_bool(llmperf):
    llmperf.pedantic(noop, rounds=True)

def test_items_nan(llmperf):
    llmperf.pedantic(noop, items=float("nan"))

def test_ab_items_inf(llmperf):
    llmperf.ab(noop, noop, items=float("inf"))

def test_record_int_name(llmperf):
    llmperf.record(123, 1.0)

def test_record_inf(llmperf):
    llmperf.record("quality", float("inf"))

def test_record_bool(llmperf):
    llmperf.record("quality", True)

def test_record_nan_sample(llmperf):
    llmperf.record("quality", 1.0, samples=[1.0, float("nan")])

def test_record_bad_kind(llmperf):
    llmperf.record("quality", 1.0, kind="qualty")
"""


def test_bad_call_arguments_and_records_fail_that_test_naming_it(pytester: pytest.Pytester):
    """pedantic/ab arguments take the marker's parsers; record takes a name and finite
    numbers. Each fails its own test with the user's line, never the session."""
    pytester.makepyfile(test_calls=BAD_CALLS)
    result = pytester.runpytest("--llmperf")
    result.assert_outcomes(failed=9)
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    for words in (
        "test_calls.py::test_rounds_inf: llmperf.pedantic(rounds=...): expected an integer",
        "test_calls.py::test_rounds_bool: llmperf.pedantic(rounds=...): expected an integer "
        "or 'auto', got True",
        "test_calls.py::test_items_nan: llmperf.pedantic(items=...): expected a finite number",
        "test_calls.py::test_ab_items_inf: llmperf.ab(items=...): expected a finite number",
        "test_calls.py::test_record_int_name: llmperf.record: the name must be a non-empty "
        "str, got 123",
        "test_calls.py::test_record_inf: llmperf.record('quality'): value must be a finite "
        "number, got inf",
        "test_calls.py::test_record_bool: llmperf.record('quality'): value must be a finite "
        "number, got True",
        "llmperf.record('quality'): samples[1] must be a finite number, got nan",
        "llmperf.record('quality'): unknown kind 'qualty'",
    ):
        assert words in out, words
    # the user's line is in each traceback
    assert ">       llmperf.record(123, 1.0)" in out


def test_a_marker_value_that_overflowed_is_that_tests_error(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_inf="""
        import pytest
        @pytest.mark.llmperf(rounds=float("inf"))
        def test_it(llmperf):
            llmperf(lambda: None)
        """
    )
    result = pytester.runpytest("--llmperf")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "test_inf.py::test_it: @pytest.mark.llmperf(rounds=...): expected an integer" in out
    assert "INTERNALERROR" not in out + result.stderr.str()


# --------------------------------------------------------------------------- item 7


def test_device_syntax_is_checked_without_torch():
    assert parse_device("cuda:0", "--llmperf-device") == "cuda:0"
    assert parse_device("cpu", "--llmperf-device") == "cpu"
    for bad in ("bogus", "cuda:x", "meta", "", "cuda:0:1"):
        with pytest.raises(ValueError, match="--llmperf-device: .* is not a device to measure on"):
            parse_device(bad, "--llmperf-device")


@pytest.mark.parametrize(
    "args, ini, env, words",
    [
        (["--llmperf-device=bogus"], "", "", "--llmperf-device: 'bogus' is not a device"),
        (["--llmperf-device=cuda:999"], "", "", "--llmperf-device: 'cuda:999': "),
        ([], "llmperf_device = xpu:999", "", "ini option llmperf_device: 'xpu:999': "),
        ([], "", "cuda:999", "environment variable LLMPERF_DEVICE: 'cuda:999': "),
    ],
)
def test_a_device_this_machine_lacks_is_a_usage_error(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    env: str,
    words: str,
):
    from pytest_llmperf.measure.device import current_device

    if env:
        monkeypatch.setenv("LLMPERF_DEVICE", env)
        current_device.cache_clear()  # an earlier run in this process found its device
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_dev="def test_it(llmperf):\n    llmperf(lambda: None)\n")
    result = pytester.runpytest("--llmperf", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert words in err and "INTERNALERROR" not in result.stdout.str() + err
    if "999" in words:
        assert "devices here: cpu" in err


# --------------------------------------------------------------------------- item 9

CLASHES = """
import pytest

pytestmark = pytest.mark.llmperf(warmup=0, rounds=2, work=False)

def noop():
    pass

def test_record_after_measure(llmperf):
    llmperf(noop)
    llmperf.record("time", 999.0)

def test_measure_after_record(llmperf):
    llmperf.record("peak_memory", 1.0)
    llmperf(noop)

def test_time_after_record(llmperf):
    llmperf.record("time", 1.0)
    llmperf(noop)

def test_record_twice(llmperf):
    llmperf.record("quality", 1.0)
    llmperf.record("quality", 2.0)

def test_ab_twice(llmperf):
    llmperf.ab(noop, noop)
    llmperf.ab(noop, noop)

def test_legitimate_names(llmperf):
    llmperf(noop)
    llmperf.pedantic(noop, name="prefill")
    llmperf.pedantic(noop, name="decode")
    llmperf.ab(noop, noop)
    llmperf.ab(noop, noop, name="schedule")
    llmperf.record("quality", 1.0)
    llmperf.record("decode.quality", 1.0)
    names = set(llmperf.result.metrics)
    assert {"time", "prefill.time", "decode.time", "ab.speedup", "schedule.speedup"} <= names
"""


def test_a_metric_name_clash_fails_the_test_naming_the_metric(pytester: pytest.Pytester):
    pytester.makepyfile(test_clash=CLASHES)
    result = pytester.runpytest("--llmperf")
    result.assert_outcomes(failed=5, passed=1)
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    for words in (
        "test_clash.py::test_record_after_measure: metric 'time' is already produced by an "
        "earlier measurement",
        "test_clash.py::test_measure_after_record: metric 'peak_memory' is already recorded "
        "by llmperf.record",
        "test_clash.py::test_time_after_record: llmperf.pedantic: metric time already "
        "recorded by llmperf.record",
        "test_clash.py::test_record_twice: metric 'quality' is already recorded by llmperf.record",
        "test_clash.py::test_ab_twice: llmperf.ab: metric ab.speedup already exists",
    ):
        assert words in out, words


# --------------------------------------------------------------------------- item 10

TYPOS = """
import pytest

pytestmark = pytest.mark.llmperf(warmup=0, rounds=2)

def noop():
    pass

@pytest.mark.llmperf(gate=["troughput"])
def test_gate_typo(llmperf):
    llmperf(noop)

@pytest.mark.llmperf(tolerance={"tiem": "5%"})
def test_tolerance_typo(llmperf):
    llmperf(noop)

@pytest.mark.llmperf(tolerance="decode.tme=5%")
def test_tolerance_string_typo(llmperf):
    llmperf.pedantic(noop, name="decode")

@pytest.mark.llmperf(gate=["time", "energy"], tolerance={"throughput": "5%", "memory": "1%"})
def test_kinds_are_always_known(llmperf):
    llmperf(noop)

@pytest.mark.llmperf(tolerance={
    "decode.time": "20%", "time": "30%", "work.ops": 0.1, "ops": 0.1,
    "peak_memory_reserved": "2%", "decode.peak_rss": 0.1, "decode.work.kernels": 0,
})
def test_full_names_tails_and_device_metrics(llmperf):
    llmperf.pedantic(noop, name="decode")

@pytest.mark.llmperf(gate=["quality"], tolerance=0.2)
def test_recorded_name(llmperf):
    llmperf.record("quality", 1.0)
"""


def test_a_gate_or_tolerance_name_matching_no_metric_fails_the_test(pytester: pytest.Pytester):
    """Judging and recording alike; names from the run options apply to every test and
    are not checked against a test's metrics (only against every metric's: test_run_options)."""
    pytester.makepyfile(test_typo=TYPOS)
    for args in (
        ["--llmperf", "--llmperf-tolerance=ttft=20%", "--llmperf-gate=time,ttft"],
        ["--llmperf-update-baselines"],
    ):
        result = pytester.runpytest(*args)
        result.assert_outcomes(failed=3, passed=3)
        out = result.stdout.str()
        assert "INTERNALERROR" not in out
        for words in (
            "llmperf: test_typo.py::test_gate_typo: @pytest.mark.llmperf names 'troughput' "
            "in gate= or tolerance=, which matches none of this test's metrics: peak_memory, "
            "peak_rss, time",
            "llmperf: test_typo.py::test_tolerance_typo: @pytest.mark.llmperf names 'tiem'",
            "test_typo.py::test_tolerance_string_typo: @pytest.mark.llmperf names 'decode.tme'",
        ):
            assert words in out, words
        # A run-level name no test measured fails nothing; the run says once that it
        # gated nothing (test_gate_names.py).
        if "--llmperf" in args:
            said = "--llmperf-gate names 'ttft', which this run measured no metric of on this"
            assert out.count("'ttft'") == 1 and said in out, out
        else:
            assert "'ttft'" not in out


def test_unknown_names_by_full_name_tail_kind_and_optional_metric():
    metrics = {"decode.time": "time", "decode.work.ops": "work", "quality": "other"}
    names = ["decode.time", "time", "work.ops", "ops", "quality", "memory", "work", "energy"]
    names += ["peak_rss", "decode.peak_memory_reserved", "work.kernels", "decode.work.kernels"]
    assert unknown_names(names, metrics) == []
    typos = ["tme", "decode.tme", "prefill.time", "prefill.energy", "decode.ops.work"]
    assert unknown_names(typos, metrics) == typos


# --------------------------------------------------------------------------- item 14


@pytest.mark.parametrize(
    "name", ["llmperf", "llmperf_update_baselines", "llmperf_strict", "llmperf_profile_on_failure"]
)
def test_a_junk_ini_boolean_names_the_option(pytester: pytest.Pytester, name: str):
    pytester.makeini(f"[pytest]\n{name} = banana\n")
    with pytest.raises(ValueError) as err:
        RunOptions.from_pytest_config(pytester.parseconfig())
    message = str(err.value)
    assert f"ini option {name}: " in message and "'banana'" in message
    assert "expected true/false, yes/no, on/off, 1/0" in message


def test_a_junk_ini_boolean_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nllmperf_strict = banana\n")
    pytester.makepyfile(test_ok="def test_ok(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini option llmperf_strict: invalid truth value 'banana'" in result.stderr.str()
    pytester.makeini("[pytest]\nllmperf_strict = Yes\n")
    assert RunOptions.from_pytest_config(pytester.parseconfig()).strict
