"""What the plugin writes, under faults and hostile input (issue 12):

- a report or export that cannot be written fails the run (exit 3) with an ERROR line
  naming it, and the others are still written; a missing directory is created;
- the profile-on-failure trace name is readable, unique per test id and short;
- test ids, params, group names, notes and metric names cannot inject markup into the
  Markdown or HTML report or the GitHub step summary, nor break a table's columns;
- every JSON file is strict JSON (no NaN/Infinity), whatever the metrics hold.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.measure.profile import trace_stem
from pytest_llmperf.output import exporters, write_report
from pytest_llmperf.output.html import render_html
from pytest_llmperf.output.markdown import render_markdown
from pytest_llmperf.results import Metric, Status, TestResult

ARGS = ("--llmperf", "-p", "no:cacheprovider")

# One cheap performance test; its id carries markup and a table's cell separator.
HOSTILE_MODULE = """
import pytest

@pytest.mark.llmperf(warmup=0, rounds=1, drift_correction=False, remeasure=0)
@pytest.mark.parametrize("p", ["<script>alert(1)</script>|x"])
def test_x(llmperf, p):
    llmperf.group = "<b>grp</b>|g"
    llmperf.params(**{"<i>k</i>": "<img src=x onerror=alert(2)>|v"})
    llmperf(lambda: None)
"""


# --------------------------------------------------------------------------- item 12


def test_unwritable_outputs_fail_the_run_and_the_others_are_written(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_w=HOSTILE_MODULE)
    (pytester.path / "isdir.md").mkdir()  # the report's path is a directory
    (pytester.path / "afile").write_text("")  # the export's parent is a file
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "missing" / "summary.md"))
    rec = pytester.runpytest(
        *ARGS,
        "--llmperf-update-baselines",
        "--llmperf-report=isdir.md",
        "--llmperf-benchmark-json=afile/bench.json",
        "--llmperf-bmf=new/deep/bmf.json",  # fine: its directories are created
    )
    rec.assert_outcomes(passed=1)
    assert rec.ret == pytest.ExitCode.INTERNAL_ERROR, rec.stdout.str()
    rec.stdout.fnmatch_lines(
        [
            "ERROR: could not write --llmperf-report isdir.md: *Is a directory*",
            "ERROR: could not write --llmperf-benchmark-json afile/bench.json: "
            "*a parent is a file, not a directory*afile*",
            "wrote new/deep/bmf.json",
            "ERROR: could not write $GITHUB_STEP_SUMMARY *summary.md: *No such file*",
        ],
        consecutive=True,
    )
    assert json.loads((pytester.path / "new" / "deep" / "bmf.json").read_text())


def test_a_report_hook_that_raises_fails_the_run_and_the_exports_are_written(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_w=HOSTILE_MODULE)
    pytester.makeconftest(
        """
        def pytest_llmperf_report_section(group, results):
            raise RuntimeError("boom in the section hook")
        """
    )
    rec = pytester.runpytest(
        *ARGS, "--llmperf-update-baselines", "--llmperf-report=r.md", "--llmperf-bmf=b.json"
    )
    rec.assert_outcomes(passed=1)
    assert rec.ret == pytest.ExitCode.INTERNAL_ERROR, rec.stdout.str()
    assert "INTERNALERROR" not in rec.stdout.str()
    rec.stdout.fnmatch_lines(
        [
            "ERROR: could not write --llmperf-report r.md: RuntimeError: boom in the section "
            "hook (raised at *conftest.py:2)",
            "wrote b.json",
        ]
    )
    assert not (pytester.path / "r.md").exists()


# --------------------------------------------------------------------------- item 15


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cells (rule lines left out), split on unescaped ``|``."""
    tables: list[list[list[str]]] = []
    in_table = False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table:
            tables.append([])
            in_table = True
        if not re.fullmatch(r"\|[-:|]+\|", line.replace(" ", "")):
            tables[-1].append(re.split(r"(?<!\\)\|", line)[1:-1])
    return tables


def _assert_no_markup_and_whole_tables(text: str, where: str) -> None:
    for tag in ("<script", "<img", "<b>", "<i>", "</script"):
        assert tag not in text, f"raw {tag} in the {where}:\n{text}"
    tables = _tables(text)
    assert tables, where
    for table in tables:
        widths = {len(row) for row in table}
        assert widths == {len(table[0])}, f"a row of the {where} has the wrong columns: {table}"


def test_markup_in_test_ids_and_params_is_escaped_in_every_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_w=HOSTILE_MODULE)
    summary = pytester.path / "summary.md"
    summary.write_text("")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    # The report's directory does not exist yet: it is created.
    rec = pytester.runpytest(*ARGS, "--llmperf-update-baselines", "--llmperf-report=out/r/run.md")
    rec.assert_outcomes(passed=1)
    assert rec.ret == 0, rec.stdout.str()
    markdown = (pytester.path / "out" / "r" / "run.md").read_text()
    _assert_no_markup_and_whole_tables(markdown, "Markdown report")
    assert "test_x\\[&lt;script&gt;alert(1)&lt;/script&gt;\\|x\\]" in markdown
    _assert_no_markup_and_whole_tables(summary.read_text(), "GitHub step summary")

    # Recording again, not judging: a timing verdict must not decide this test.
    rec = pytester.runpytest(*ARGS, "--llmperf-update-baselines", "--llmperf-report=run.html")
    assert rec.ret == 0, rec.stdout.str()
    page = (pytester.path / "run.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    for tag in ("<script", "<img", "<b>", "<i>"):
        assert tag not in page, tag
    for table in re.findall(r"<table>.*?</table>", page, re.S):  # every row whole
        head, body = table.split("</thead>")
        assert {row.count("<td") for row in body.split("</tr>")[:-1]} == {head.count("<th>")}


def _hostile_result() -> TestResult:
    """Markup and separators in every text a report shows: notes, verdict lines, metric
    names and units, group, params, fingerprint."""
    bad = "<script>x</script>|`y`\n| z & w"
    r = TestResult(
        nodeid=f"t.py::test_h[{bad}]",
        group=bad,
        params={bad: bad},
        verdict=Verdict.REGRESSION,
        verdict_lines=[f"REGRESSION {bad}"],
        notes=[bad],
        baseline_values={bad: 1.0},
        fingerprint_diff={bad: [bad, bad]},
        detectable={bad: [0.5, 0.05]},
    )
    r.add(Metric(bad, 2.0, bad, samples=[2.0, 2.0], kind="other", higher_is_better=False))
    return r


def test_every_text_of_a_result_is_escaped_in_markdown_html_and_step_summary() -> None:
    session = {"device": {"key": "<k>", "name": "<script>d</script>"}, "tier": "<t>"}
    results = [_hostile_result()]
    for where, text in (
        ("Markdown report", render_markdown(results, session)),
        ("GitHub step summary", exporters.github_step_summary(results, session)),
    ):
        _assert_no_markup_and_whole_tables(text, where)
        assert "<k>" not in text and "<t>" not in text, where
        # a line break in a cell or a list item never starts a line of its own
        assert not any(line.startswith("| z") for line in text.splitlines()), where
    page = render_html(results, session)
    assert "<script" not in page and "<k>" not in page and "<t>" not in page


# --------------------------------------------------------------------------- item N


def _strict(text: str) -> object:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def test_non_finite_values_are_written_as_strict_json(tmp_path: Path) -> None:
    inf, nan = math.inf, math.nan
    r = TestResult(
        nodeid="t.py::test_nf",
        status=Status.OK,
        verdict=Verdict.IMPROVED,
        params={"x": nan, "y": inf},
        baseline_values={"time": 0.0, "throughput": nan},
        detectable={"time": [inf, 0.05]},
        duration_s=nan,
    )
    # 1e300 s is finite, but not in Bencher's nanoseconds.
    r.add(
        Metric("time", 1e300, "s", samples=[1e300, nan, inf], kind="other", higher_is_better=False)
    )
    r.add(
        Metric("throughput", inf, "tok/s", higher_is_better=True, samples=[nan, -inf], kind="other")
    )
    r.add(Metric("peak_memory", nan, "B", kind="other", higher_is_better=False))
    session = {"device": {"key": "k", "name": "n"}, "fingerprint": {"f": nan}, "duration_s": inf}

    write_report(tmp_path / "r.json", [r], session)
    exporters.write_benchmark_json(tmp_path / "b.json", [r], session)
    exporters.write_bmf(tmp_path / "bmf.json", [r])
    report = _strict((tmp_path / "r.json").read_text())
    bench = _strict((tmp_path / "b.json").read_text())
    bmf = _strict((tmp_path / "bmf.json").read_text())

    metrics = report["results"][0]["metrics"]  # undefined values are null
    assert metrics["throughput"]["value"] is None and metrics["peak_memory"]["value"] is None
    assert report["results"][0]["params"] == {"x": None, "y": None}
    assert bench["benchmarks"][0]["extra_info"]["throughput"] is None
    assert bmf == {}  # Bencher needs a number: no measure without one
    # the human-readable reports render the same result
    for suffix in (".md", ".html"):
        write_report(tmp_path / f"r{suffix}", [r], session)


# --------------------------------------------------------------------------- item 13


def test_trace_names_are_unique_readable_and_short() -> None:
    tail = "::test_generate[" + "x" * 180 + "]"
    ids = [
        "tests/models/test_llama.py" + tail,
        "tests/models/test_opt.py" + tail,  # shares its last 196 characters
        "tests/a/b.py::test_x[a/b]",
        "tests/a/b.py::test_x[a_b]",  # differs only in what the sanitiser replaces
        "tests/a/b.py::test_x[a b]",
        "tests/t.py::test_x[" + "日本語" * 80 + "]",  # 240 characters, 720 bytes in UTF-8
        "../.hidden/test_x.py::test_x",
    ]
    stems = [trace_stem(i) for i in ids]
    assert len(set(stems)) == len(ids), stems
    for stem in stems:
        name = f"{stem}.memory.pickle"
        assert len(name.encode()) <= 200, name
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", name), name
        assert not name.startswith((".", "-")), name
    assert stems[0].startswith("tests_models_test_llama.py__test_generate_xxx")
    assert "..xxx" in stems[0] and re.search(r"xxx_-[0-9a-f]{12}$", stems[0])
    assert stems[2].startswith("tests_a_b.py__test_x_a_b_-")
    assert trace_stem(ids[0]) == stems[0]  # the same test keeps its name across runs
