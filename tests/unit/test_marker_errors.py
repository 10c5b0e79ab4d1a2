"""A bad ``@pytest.mark.llmperf`` is that test's error, never the session's.

Before, an unknown keyword or a value out of range raised a usage error while
collecting, so one typo stopped every test of the run (exit 4), with or without
``--llmperf``. Now the test errors in setup with a message naming it, the keyword and
the value, and every other test runs as usual (exit 1).
"""

from __future__ import annotations

import pytest

from pytest_llmperf.config import Policy

#: One bad-marker test beside a plain test and a performance test that measure as usual.
MIXED = """
import pytest

{marker}
def test_bad(llmperf):
    llmperf(lambda: None)

def test_plain():
    assert 1 + 1 == 2

@pytest.mark.llmperf(warmup=0, rounds=5, work=False)
def test_perf(llmperf):
    llmperf(lambda: None)
"""


@pytest.mark.parametrize(
    "marker, words",
    [
        (
            "@pytest.mark.llmperf(min_time=1)",
            "@pytest.mark.llmperf: unknown keyword 'min_time' (given 1); known: bytes,",
        ),
        (
            "@pytest.mark.llmperf(rounds=-1)",
            "@pytest.mark.llmperf(rounds=...): must be >= 1, got -1",
        ),
        (
            "@pytest.mark.llmperf(tolerance={'time': 'abc'})",
            "@pytest.mark.llmperf(tolerance=...)[time]: tolerance 'abc' is not a number",
        ),
        (
            "@pytest.mark.llmperf(batch=10**400)",
            "@pytest.mark.llmperf: unknown keyword 'batch' "
            "(given 10000000000000000000... (an integer of 401 digits))",
        ),
        (
            "@pytest.mark.llmperf(items=10**400)",
            "@pytest.mark.llmperf(items=...): 10000000000000000000... (an integer of 401 digits) "
            "is too large for a float",
        ),
    ],
)
@pytest.mark.parametrize("measuring", [True, False], ids=["llmperf", "plain"])
def test_a_bad_marker_errors_its_test_and_the_others_run(
    pytester: pytest.Pytester, marker: str, words: str, measuring: bool
) -> None:
    pytester.makepyfile(test_mixed=MIXED.format(marker=marker))
    result = pytester.runpytest(*(["--llmperf"] if measuring else []))
    # Without --llmperf the performance test runs once, unmeasured; the bad one still errors.
    result.assert_outcomes(errors=1, passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # not 3 (internal) or 4 (usage)
    out = result.stdout.str()
    assert "ERROR at setup of test_bad" in out
    assert f"llmperf: test_mixed.py::test_bad: {words}" in out
    assert "Traceback" not in out and "INTERNALERROR" not in out + result.stderr.str()


def test_a_bad_module_marker_errors_each_test_of_that_module_only(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_badmod="""
        import pytest
        pytestmark = pytest.mark.llmperf(max_rounds=0)
        def test_a(llmperf):
            llmperf(lambda: None)
        def test_b():
            pass
        """,
        test_good="def test_ok():\n    pass\n",
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=2, passed=1)
    out = result.stdout.str()
    for name in ("test_a", "test_b"):
        assert f"test_badmod.py::{name}: @pytest.mark.llmperf(max_rounds=...): must be >= 1" in out


@pytest.mark.parametrize(
    "kwargs, words",
    [
        # ints beyond a float are range-checked as ints, before float() could overflow
        ({"max_time": 10**400}, "max_time=...): must be <= 86400, got 10000000000000000000..."),
        ({"items": -(10**400)}, "items=...): must be >= 0.0, got -1000000000000000000..."),
        ({"flops": 10**400}, "flops=...): 10000000000000000000... (an integer of 401 digits) is"),
        ({"tolerance": {"time": 10**400}}, "[time]: tolerance 10000000000000000000... (an"),
        ({"tolerance": 10**400}, "must be >= 0 and <= 100 (10000%)"),
        ({"gate": 10**5000}, "gate=...): expected True, False or metric names, got an integer"),
        ({"group": 10**5000}, "group=...): expected a name, got an integer of 16610 bits"),
        ({"min_time": 1, "batch": 2}, "unknown keywords 'batch' (given 2), 'min_time' (given 1)"),
    ],
)
def test_huge_and_unknown_marker_values_are_value_errors(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError) as err:
        Policy.from_markers([pytest.mark.llmperf(**kwargs).mark], defaults=Policy(), where="t")
    assert words in str(err.value)


def test_a_huge_generation_batch_fails_the_test_with_its_name(pytester: pytest.Pytester) -> None:
    """A call argument is the test's own failure; ``batch=10**400`` overflowed in the rates."""
    pytester.makepyfile(
        test_gen="""
        def test_it(llmperf):
            def gen():
                yield 1
            llmperf.generation(gen, batch=10**400, warmup=0, rounds=1)
        """
    )
    result = pytester.runpytest("--llmperf")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "llmperf.generation(batch=...): must be <= 2**53, got 10000000000000000000..." in out
    assert "OverflowError" not in out
