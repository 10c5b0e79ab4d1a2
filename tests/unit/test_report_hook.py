"""The report hooks (hookspec.py): a project's conftest.py lays out its own report groups.

``write_report(..., hook=...)`` is checked with small stand-in hook relays and
with pytest's own plugin manager; the last test runs a user's project end to
end (``--llmperf-report``), which needs the plugin to register the hookspecs.
"""

from __future__ import annotations

import re
from types import ModuleType, SimpleNamespace

import pytest

from pytest_llmperf import hookspec
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.output import write_report
from pytest_llmperf.output.markdown import render_markdown
from pytest_llmperf.output.plots import Plot, matplotlib_available
from pytest_llmperf.output.sections import group_sections
from pytest_llmperf.output.tables import GENERIC_RANK, Section, make_table
from pytest_llmperf.results import Metric, TestResult

PNG = b"\x89PNG\r\n\x1a\nnot really a picture"


def results() -> list[TestResult]:
    out = []
    for group, seq in (("attention", 64), ("attention", 128), ("zeta", 1), ("", 2)):
        r = TestResult(
            f"tests/test_{group or 'x'}.py::test_it[{seq}]",
            group=group,
            params={"seq": seq},
            verdict=Verdict.PASS,
        )
        r.add(
            Metric(
                "time",
                1e-5 * seq,
                "s",
                samples=[1e-5 * seq, 1.1e-5 * seq],
                kind="other",
                higher_is_better=False,
            )
        )
        out.append(r)
    return out


def attention_section(rank: int = GENERIC_RANK) -> Section:
    rows = [["64", "0.64"], ["128", "1.28"]]
    return Section("Attention kernels", [make_table("By length", ["seq", "ms"], rows)], rank=rank)


def relay(section=None, plots=None) -> SimpleNamespace:
    """A stand-in for ``config.hook``: answers for the "attention" group only."""

    def report_section(group: str, results: list[TestResult]) -> Section | None:
        return section if group == "attention" else None

    def report_plots(group: str, results: list[TestResult]) -> list[Plot] | None:
        return plots if group == "attention" else None

    return SimpleNamespace(
        pytest_llmperf_report_section=report_section, pytest_llmperf_report_plots=report_plots
    )


def headings(text: str) -> list[str]:
    return [line[3:] for line in text.splitlines() if line.startswith("## ")]


def test_a_hooks_section_replaces_the_generic_table(tmp_path):
    path = tmp_path / "r.md"
    write_report(path, results(), {}, hook=relay(attention_section()))
    text = path.read_text()
    assert headings(text) == [
        "Verdicts",
        "Attention kernels",
        "Group: zeta",
        "tests/test_x.py",
    ]
    assert "### By length" in text
    assert re.search(r"^\| seq \| +ms \|$", text, re.M)
    assert "Group: attention" not in text


@pytest.mark.parametrize(
    ("rank", "expected"),
    [
        (0, ["Attention kernels", "Group: zeta", "tests/test_x.py"]),
        (GENERIC_RANK + 1, ["Group: zeta", "tests/test_x.py", "Attention kernels"]),
    ],
)
def test_sections_sort_by_rank(rank, expected):
    zeta_first = results()[2:] + results()[:2]  # run order must not decide
    text = render_markdown(zeta_first, {}, relay(attention_section(rank)))
    assert headings(text)[1:] == expected


def test_the_report_fills_in_group_and_results_of_a_hooks_section():
    sections = group_sections(results(), relay(attention_section()))
    attention = next(s for s in sections if s.title == "Attention kernels")
    assert attention.group == "attention"
    assert [r.params["seq"] for r in attention.results] == [64, 128]


@pytest.mark.parametrize("hook", [None, SimpleNamespace(), relay(None, None)])
def test_without_an_answer_every_group_is_generic(hook):
    text = render_markdown(results(), {}, hook)
    assert headings(text)[1:] == ["Group: attention", "Group: zeta", "tests/test_x.py"]


needs_matplotlib = pytest.mark.skipif(not matplotlib_available(), reason="matplotlib not installed")


def _captions(text: str) -> list[str]:
    return re.findall(r"<figcaption>([^<]*)</figcaption>", text)


@needs_matplotlib
def test_a_hooks_plots_replace_the_generic_plot(tmp_path):
    path = tmp_path / "r.html"
    plots = [Plot("attention: my own plot", PNG)]
    write_report(path, results(), {}, hook=relay(attention_section(), plots))
    text = path.read_text()
    assert "<h2>Attention kernels</h2>" in text and "<h3>By length</h3>" in text
    assert _captions(text) == ["attention: my own plot"]  # zeta and "" have no sweep to plot
    assert "data:image/png;base64,iVBORw0KGgpub3QgcmVhbGx5IGEgcGljdHVyZQ==" in text


@needs_matplotlib
def test_no_plots_from_the_hook_means_none_and_none_means_generic(tmp_path):
    path = tmp_path / "r.html"
    write_report(path, results(), {}, hook=relay(attention_section(), []))
    assert _captions(path.read_text()) == []
    write_report(path, results(), {}, hook=relay(attention_section(), None))
    assert _captions(path.read_text()) == ["attention: time vs seq"]


def test_hookspecs_are_firstresult_and_documented():
    for name in ("pytest_llmperf_report_section", "pytest_llmperf_report_plots"):
        spec = getattr(hookspec, name)
        assert spec.pytest_spec["firstresult"] is True
        assert len(spec.__doc__.strip()) > 80


def test_the_first_answer_through_pytests_plugin_manager_wins(tmp_path):
    """Registered as the plugin does: ``pluginmanager.add_hookspecs(hookspec)``."""
    pm = pytest.PytestPluginManager()
    pm.add_hookspecs(hookspec)
    mine, other = ModuleType("mine"), ModuleType("other")
    mine.pytest_llmperf_report_section = lambda group, results: (
        attention_section() if group == "attention" else None
    )
    other.pytest_llmperf_report_section = lambda group: None  # a subset of the arguments
    pm.register(mine)
    pm.register(other)
    path = tmp_path / "r.md"
    write_report(path, results(), {}, hook=pm.hook)
    assert headings(path.read_text())[1] == "Attention kernels"


# --------------------------------------------------------------------------- end to end

USER_CONFTEST = """
from pytest_llmperf.output.plots import Plot
from pytest_llmperf.output.tables import Section, make_table


def pytest_llmperf_report_section(group, results):
    if group != "attention":
        return None
    rows = [[r.params["seq"], r.metrics["time"].value * 1e3] for r in results]
    table = make_table("Attention by length", ["seq", "time (ms)"], rows)
    return Section("My attention kernels", [table], rank=0)


def pytest_llmperf_report_plots(group, results):
    if group != "attention":
        return None
    return [Plot("attention: my own plot", b"\\x89PNG\\r\\n\\x1a\\n")]
"""

USER_TESTS = """
import pytest


@pytest.mark.llmperf(group="attention", warmup=1, rounds=3)
@pytest.mark.parametrize("seq", [64, 128])
def test_attention(llmperf, seq):
    llmperf.params(seq=seq)
    llmperf(lambda: sum(range(seq * 10)))
"""


@pytest.mark.parametrize("suffix", [".md", ".html"])
def test_a_users_conftest_adds_its_table_to_the_report(pytester: pytest.Pytester, suffix):
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(test_attention=USER_TESTS)
    result = pytester.runpytest(
        "--llmperf", f"--llmperf-report=r{suffix}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
    text = (pytester.path / f"r{suffix}").read_text()
    assert "My attention kernels" in text and "Attention by length" in text
    assert "Group: attention" not in text
    if suffix == ".md":
        assert re.search(r"^\| seq \| time \(ms\) \|$", text, re.M)
        # A few microseconds print as 0.01 or, below 0.01 ms, as 4.9e-03.
        assert re.search(r"^\| +64 \| +[\d.e+-]+ \|$", text, re.M)
    else:
        assert "<th>seq</th><th>time (ms)</th>" in text
        if matplotlib_available():
            assert _captions(text) == ["attention: my own plot"]
