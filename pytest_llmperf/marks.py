"""Which tests are performance tests, and what is wrong with one that cannot be measured.

Their own module because the plugin (collection, the call report), the session
(a test that measured nothing) and both sides of ``--llmperf-compare`` (the
controller that takes a test's run over, the worker that says which tests it
has) ask the same questions: none of them should import another for the answer.
"""

from __future__ import annotations

import pytest

#: Why a test's ``llmperf`` marker cannot be used: that test's error in setup.
MARKER_ERROR = pytest.StashKey[str]()


def is_perf_test(item: pytest.Item) -> bool:
    """Whether ``item`` is measured: it uses the fixture or carries the marker, and its
    marker can be read (a test with a bad marker only errors, in every mode, so the
    ``--llmperf-compare`` controller leaves it to pytest's own run)."""
    return MARKER_ERROR not in item.stash and (
        "llmperf" in getattr(item, "fixturenames", ())
        or item.get_closest_marker("llmperf") is not None
    )


def unmeasured_why(item: pytest.Item) -> str:
    """Why a performance test that passed measured nothing."""
    if "llmperf" in getattr(item, "fixturenames", ()):
        return "no llmperf(...), llmperf.pedantic(...) or llmperf.record(...) call"
    return "marked @pytest.mark.llmperf but does not use the llmperf fixture"


def marker_error(item: pytest.Item, exc: Exception) -> str:
    """The setup error of a test whose marker cannot be used: names the test, the keyword
    and the value (``config`` puts them in the ValueError)."""
    if isinstance(exc, ValueError):
        return f"llmperf: {exc}"
    return (  # anything else a value could raise: still this test's error, not the run's
        f"llmperf: {item.nodeid}: @pytest.mark.llmperf could not be read: "
        f"{type(exc).__name__}: {exc}"
    )
