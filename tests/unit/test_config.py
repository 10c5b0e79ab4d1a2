"""config: run options from a real pytest config, per-test policies from real markers."""

from __future__ import annotations

from dataclasses import fields

import pytest

from pytest_llmperf.config import (
    DEFAULT_TOLERANCES,
    MARKER_KEYWORDS,
    Policy,
    RunOptions,
    marker_help,
    parse_tolerance,
    parse_tolerances,
)

#: A valid value for every marker keyword.
VALID = {
    "warmup": "auto",
    "rounds": 7,
    "min_rounds": 3,
    "max_rounds": 50,
    "max_time": 0.5,
    "tolerance": "20%",
    "tolerances": {"time": 0.3},
    "gate": ["throughput"],
    "items": 128,
    "flops": 1e9,
    "bytes": 2e6,
    "group": "decode",
    "strict": True,
    "drift_correction": False,
    "remeasure": 0,
    "work": False,
    "flush_l2": True,
}


def marks(*kwargs: dict) -> list:
    return [pytest.mark.llmperf(**kw).mark for kw in kwargs]


def test_the_marker_keywords_are_the_policy_fields():
    run_only = {"run_gate"}  # set by --llmperf-gate; a test cannot widen what CI gates
    assert set(MARKER_KEYWORDS) == {f.name for f in fields(Policy)} - run_only | {"tolerance"}
    assert set(VALID) == set(MARKER_KEYWORDS)
    policy = Policy().with_keywords(VALID, "t")
    assert (policy.rounds, policy.gate, policy.items, policy.drift_correction) == (
        7,
        ("throughput",),
        128.0,
        False,
    )
    help_text = marker_help()
    for keyword in MARKER_KEYWORDS:
        if keyword != "tolerances":
            assert keyword in help_text


def test_closer_markers_and_call_arguments_win():
    defaults = Policy().with_keywords({"rounds": 3, "tolerance": "7%"}, "--llmperf-*")
    policy = Policy.from_markers(
        marks({"rounds": 10, "warmup": 2}, {"rounds": 20, "tolerance": {"time": "30%"}}),
        defaults=defaults,
        where="t.py::test_it",
    )
    assert policy.rounds == 20 and policy.warmup == 2
    # tolerances merge: the marker's per-metric one over the run's blanket 7%
    assert policy.tolerance_for("time", "time") == pytest.approx(0.3)
    assert policy.tolerance_for("peak_memory", "memory") == pytest.approx(0.07)
    assert policy.with_keywords({"rounds": 4}, "llmperf.pedantic").rounds == 4


def test_tolerance_lookup_order_and_gating():
    policy = Policy(tolerances={"decode.time": 0.5, "time": 0.2, "memory": 0.01})
    assert policy.tolerance_for("decode.time", "time") == 0.5  # the metric's full name
    assert policy.tolerance_for("prefill.time", "time") == 0.2  # its base name
    assert policy.tolerance_for("peak_rss", "memory") == 0.01  # its kind
    assert policy.tolerance_for("speedup", "ratio") == DEFAULT_TOLERANCES["ratio"]
    assert Policy(gate=False).gates("time") is False
    named = Policy(gate=("throughput",))
    assert named.gates("decode.throughput") and not named.gates("time")


def test_tolerance_spellings():
    assert parse_tolerance("10%", "x") == pytest.approx(0.1)
    assert parse_tolerance("0.1", "x") == parse_tolerance(0.1, "x") == 0.1
    assert parse_tolerances("time=20%, memory=2%", "x") == pytest.approx(
        {"time": 0.2, "memory": 0.02}
    )
    # A bare tolerance loosens what is measured; the exact work gate only by name.
    assert set(parse_tolerances("5%", "x")) == set(DEFAULT_TOLERANCES) - {"work"}
    assert parse_tolerances("work=5%", "x") == {"work": 0.05}


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"warmpu": 1}, "t.py::test_it: @pytest.mark.llmperf: unknown keyword 'warmpu' (given 1)"),
        ({"rounds": "many"}, "rounds=...): expected an integer or 'auto', got 'many'"),
        ({"rounds": 0}, "rounds=...): must be >= 1, got 0"),
        ({"rounds": 2.5}, "rounds=...): expected an integer or 'auto'"),
        ({"min_rounds": "auto"}, "min_rounds=...): expected an integer, got 'auto'"),
        ({"max_time": "long"}, "max_time=...): expected a number"),
        ({"tolerance": "lots"}, "tolerance 'lots' is not a number or a percentage"),
        ({"tolerance": "time=lots"}, "[time]: tolerance 'lots' is not a number"),
        ({"tolerance": "-5%"}, "tolerance '-5%' must be >= 0"),
        ({"gate": 3}, "gate=...): expected True, False or metric names, got 3"),
        ({"strict": "yes"}, "strict=...): expected True or False, got 'yes'"),
    ],
)
def test_a_bad_marker_names_the_test_and_the_keyword(kwargs: dict, words: str):
    with pytest.raises(ValueError) as err:
        Policy.from_markers(marks(kwargs), defaults=Policy(), where="t.py::test_it")
    assert words in str(err.value) and "t.py::test_it" in str(err.value)


def test_positional_marker_arguments_are_refused():
    with pytest.raises(ValueError, match="takes keywords only"):
        Policy.from_markers([pytest.mark.llmperf(5).mark], defaults=Policy(), where="t")


def test_run_options_from_the_command_line_and_the_ini(pytester: pytest.Pytester):
    options = RunOptions.from_pytest_config(pytester.parseconfig())
    assert options == RunOptions()  # off by default, nothing written
    options = RunOptions.from_pytest_config(
        pytester.parseconfig(
            "--llmperf-update-baselines",
            "--llmperf-tier=full",
            "--llmperf-pool=3",
            "--llmperf-rounds=9",
            "--llmperf-tolerance=time=25%",
            "--llmperf-report=r.html",
        )
    )
    assert options.enabled and options.update  # updating implies running
    assert (options.tier, options.pool, options.report) == ("full", 3, "r.html")
    assert options.policy.rounds == 9
    assert options.policy.tolerance_for("time", "time") == pytest.approx(0.25)
    pytester.makeini("[pytest]\nllmperf_baselines = perf/base\nllmperf_threads = 1\n")
    options = RunOptions.from_pytest_config(pytester.parseconfig("--llmperf"))
    assert (options.baselines_dir, options.threads) == ("perf/base", 1)


@pytest.mark.parametrize(
    "args, ini, words",
    [
        (["--llmperf-tier=huge"], "", "--llmperf-tier: unknown tier 'huge'"),
        (["--llmperf-warmup=abc"], "", "--llmperf-warmup: expected an integer or 'auto'"),
        (["--llmperf-tolerance=x%"], "", "--llmperf-tolerance: tolerance 'x%'"),
        (["--llmperf-pool=0"], "", "--llmperf-pool: must be >= 1, got 0"),
        (["--llmperf-threads=two"], "", "--llmperf-threads: expected an integer"),
        (["--llmperf-report=out.txt"], "", "--llmperf-report: 'out.txt' must end in"),
        ([], "llmperf_rounds = lots", "ini option llmperf_rounds: expected an integer"),
    ],
)
def test_a_bad_option_names_the_option(
    pytester: pytest.Pytester, args: list[str], ini: str, words: str
):
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    with pytest.raises(ValueError) as err:
        RunOptions.from_pytest_config(pytester.parseconfig(*args))
    assert words in str(err.value)
