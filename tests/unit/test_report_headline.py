"""What a report leads with: each test's headline change, baselines beside current values,
and the user's own tests titled by their file.

A real slowdown first (pytester, in-process: torch is already imported): a chain of
matmuls recorded as the baseline, then run with three times the matmuls (work.ops 3 -> 9)
and a 20 ms wait. The matmuls alone, about 3x the time, were not enough: a CI run's
baseline of the tiny chain took 5x its usual time in a slow spell of the shared machine
and the candidate came out faster. The wait puts the candidate 40x and more above the
baseline's 0.1-0.5 ms, past any spell seen on these machines. The report must
lead with the throughput drop, the user-facing number, and show the grown count beside it
as the cause. Then the rule itself (``tables.headline_metric``) on hand-built results.
"""

from __future__ import annotations

import html
import re

import pytest
import torch  # noqa: F401 - imported before pytester snapshots sys.modules

from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.output.tables import headline_metric, summary_table, work_change
from pytest_llmperf.results import Metric, TestResult

MODULE = """
import os
import time

import pytest
import torch


@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False, items=128)
def test_chain(llmperf):
    # LLMPERF_SLOW: three times the matmuls and a 20 ms wait, a regression of the user's.
    slow = bool(os.environ.get("LLMPERF_SLOW"))
    n = 9 if slow else 3
    a = torch.randn(128, 128)

    def chain():
        x = a
        for _ in range(n):
            x = x @ a
        if slow:
            time.sleep(0.02)
        return x

    llmperf(chain)
"""

ARGS = ("--llmperf", "-p", "no:cacheprovider")


def _html_table_after(text: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first HTML table after ``heading``, as text."""
    table = re.search(r"<table>(.*?)</table>", text[text.index(heading) :], re.S)
    assert table is not None, f"no table after {heading!r}"
    cells = lambda row, tag: [  # noqa: E731
        html.unescape(re.sub(r"<[^>]+>", "", c))
        for c in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", row)
    ]
    header = cells(table.group(1).split("</thead>")[0], "th")
    body = table.group(1).split("<tbody>")[1]
    return header, [cells(row, "td") for row in re.findall(r"<tr>(.*?)</tr>", body)]


def _md_table_after(text: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table after ``heading``, backslash escapes
    and entities undone."""
    rows = []
    for line in text[text.index(heading) :].splitlines()[1:]:
        if line.startswith("|"):
            if not re.fullmatch(r"\|[-:|]+\|", line.replace(" ", "")):
                cells = re.split(r"(?<!\\)\|", line)[1:-1]
                rows.append([html.unescape(re.sub(r"\\(.)", r"\1", c.strip())) for c in cells])
        elif rows:
            break
    return rows[0], rows[1:]


@pytest.fixture
def slowed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The project with its baseline recorded, then slowed down (LLMPERF_SLOW set)."""
    pytester.makepyfile(test_mine=MODULE)
    monkeypatch.delenv("LLMPERF_SLOW", raising=False)
    pytester.runpytest(*ARGS, "--llmperf-update-baselines").assert_outcomes(passed=1)
    monkeypatch.setenv("LLMPERF_SLOW", "1")
    return pytester


def _assert_leads_with_throughput(header: list[str], row: list[str]) -> None:
    cell = dict(zip(header, row, strict=True))
    assert cell["verdict"] == "regression"
    # The user-facing metric leads, not "work.ops 3 -> 9"; baseline and current beside it.
    assert cell["headline metric"] == "throughput ↑", cell
    assert header.index("baseline") + 1 == header.index("current")
    assert cell["baseline"].endswith("tokens/s") and cell["current"].endswith("tokens/s")
    change = re.fullmatch(r"-(\d+\.\d)%", cell["change"])
    assert change is not None and float(change.group(1)) > 10, cell  # past the tolerance
    # ... and the grown count as its cause (flops and bytes grew too).
    assert cell["work change"] == "work.ops 3 → 9 (+200.0%), +2 more", cell


@pytest.mark.parametrize("suffix", ["html", "md"])
def test_report_leads_a_slowdown_with_throughput_and_its_work_cause(slowed, suffix):
    rec = slowed.runpytest(*ARGS, f"--llmperf-report=out.{suffix}")
    rec.assert_outcomes(failed=1)
    text = (slowed.path / f"out.{suffix}").read_text()
    heading = "<h2>{}</h2>" if suffix == "html" else "## {}"
    table_after = _html_table_after if suffix == "html" else _md_table_after

    header, rows = table_after(text, heading.format("Verdicts"))
    assert len(rows) == 1
    _assert_leads_with_throughput(header, rows[0])

    # The user's own tests under their file's name, a baseline before each current value.
    assert heading.format("test_mine.py") in text and "Other performance tests" not in text
    header, rows = table_after(text, heading.format("test_mine.py"))
    for name in ("time", "throughput", "peak_memory"):
        assert header.index(f"{name} baseline") + 1 == header.index(name), header
    cell = dict(zip(header, rows[0], strict=True))
    assert cell["throughput baseline"].endswith("tokens/s")

    # The work table: the baseline beside each count that changed.
    header, rows = table_after(text, heading.format("Work signature"))
    cell = dict(zip(header, rows[0], strict=True))
    assert (cell["ops baseline"], cell["ops"]) == ("3", "9")
    assert "syncs baseline" not in header  # 0 then and now


# --------------------------------------------------------------------------- the rule


def _result(verdict: Verdict, **changes: tuple[float, float]) -> TestResult:
    """A result with ``name=(baseline, current)`` per metric: time (s), throughput,
    peak_memory (B), work.ops / work.flops (counts)."""
    kinds = {
        "time": ("s", False, "time"),
        "throughput": ("tokens/s", True, "throughput"),
        "peak_memory": ("B", False, "memory"),
        "work.ops": ("", False, "work"),
        "work.flops": ("FLOP", False, "work"),
        "work.syncs": ("", False, "work"),
    }
    r = TestResult("tests/test_mine.py::test_it", verdict=verdict)
    for name, (base, cur) in changes.items():
        unit, higher, kind = kinds[name]
        tol = 0.0 if kind == "work" else 0.1
        r.add(Metric(name, cur, unit, higher_is_better=higher, kind=kind, tolerance=tol))
        r.baseline_values[name] = base
    return r


def _headline(r: TestResult) -> str:
    m = headline_metric(r)
    assert m is not None
    return m.name


def test_a_user_facing_regression_leads_and_the_work_change_explains_it():
    r = _result(
        Verdict.REGRESSION,
        throughput=(1000.0, 430.0),  # -57%
        **{"work.ops": (3, 6), "work.flops": (1e6, 2e6)},  # +100%: larger, but a count
    )
    assert _headline(r) == "throughput"
    assert work_change(r) == "work.ops 3 → 6 (+100.0%), +1 more"
    table = summary_table([r])
    row = dict(zip(table.columns, table.rows[0], strict=True))
    assert (row["change"], row["work change"]) == ("-57.0%", "work.ops 3 → 6 (+100.0%), +1 more")


def test_a_work_only_regression_leads_with_the_count():
    # The time moved within its tolerance: the count decided the verdict.
    r = _result(Verdict.REGRESSION, time=(1e-3, 1.05e-3), **{"work.ops": (3, 4)})
    assert _headline(r) == "work.ops"
    table = summary_table([r])
    assert "work change" not in table.columns  # the headline is the cause itself


def test_a_count_off_zero_is_a_change():
    r = _result(Verdict.REGRESSION, time=(1e-3, 1.0e-3), **{"work.syncs": (0, 2)})
    assert _headline(r) == "work.syncs"
    assert summary_table([r]).rows[0][-1] == "from zero"


def test_the_largest_change_past_the_tolerance_in_the_verdicts_direction_leads():
    # Regression: the worst of the metrics past their tolerance, in its bad direction.
    r = _result(
        Verdict.REGRESSION,
        time=(1e-3, 1.3e-3),  # +30% worse
        throughput=(1000.0, 800.0),  # -20% worse
        peak_memory=(1e6, 0.5e6),  # -50%: better, not what a regression is about
    )
    assert _headline(r) == "time"
    # Improvement: the best change leads.
    r = _result(Verdict.IMPROVED, time=(1e-3, 0.6e-3), throughput=(1000.0, 1200.0))
    assert _headline(r) == "time"
    # Pass: the largest change either way, user-facing before counts.
    r = _result(
        Verdict.PASS,
        time=(1e-3, 1.02e-3),
        throughput=(1000.0, 1050.0),
        **{"work.ops": (4, 3)},
    )
    assert _headline(r) == "throughput"
