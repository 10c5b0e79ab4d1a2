"""Reports of generations (``llmperf.generation``): the HTML's inter-token latency
histograms, the token table, the JSON report's ``tokens`` and the exporters.

Results are built by hand through ``measure.generation`` (the same log, metrics and
token record the fixture makes), so every number is known; the last test runs a tiny
generation end to end.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.measure.generation import (
    GenerationLog,
    generation_metrics,
    token_record,
)
from pytest_llmperf.output import exporters, plots, write_report
from pytest_llmperf.output.html import render_html
from pytest_llmperf.output.markdown import render_markdown
from pytest_llmperf.results import Metric, TestResult

CAPTION = re.compile(r"<figcaption>([^<]*)</figcaption>")
MS = 1e-3


def add_generation(
    result: TestResult, name: str, itl_s: list[float], gens: int = 3, ttft: float = 5 * MS
) -> None:
    """``gens`` generations of a first token after ``ttft`` and then these intervals,
    recorded as ``llmperf.generation`` records them."""
    marks = [0.0, ttft]
    for gap in itl_s:
        marks.append(marks[-1] + gap)
    log = GenerationLog(marks=[list(marks) for _ in range(gens)])
    prefix = f"{name}." if name else ""
    metrics, _ = generation_metrics(log, [marks[-1]] * gens, [], prefix, "")
    for m in metrics:
        result.add(m)
    result.tokens[name] = token_record(log)


def gen_result(
    nodeid: str,
    itl_s: list[float] | None = None,
    group: str = "",
    verdict: Verdict = Verdict.NO_BASELINE,
    **params,
) -> TestResult:
    r = TestResult(nodeid, group=group, params=params, verdict=verdict)
    add_generation(r, "", itl_s if itl_s is not None else [1 * MS, 2 * MS, 1.5 * MS])
    return r


def ab_result(nodeid: str, group: str = "") -> TestResult:
    r = TestResult(nodeid, group=group, verdict=Verdict.PASS)
    add_generation(r, "s.reference", [1 * MS] * 15)
    add_generation(r, "s.candidate", [1 * MS] * 14 + [4 * MS])  # one stall
    r.add(
        Metric(
            "s.speedup", 0.9, "x", higher_is_better=True, kind="ratio", samples=[0.9, 0.91, 0.89]
        )
    )
    return r


def plain_result(nodeid: str, group: str = "") -> TestResult:
    r = TestResult(nodeid, group=group, verdict=Verdict.PASS, params={"n": 3})
    r.add(Metric("time", 1e-3, "s", higher_is_better=False, kind="time", samples=[1e-3, 1.1e-3]))
    return r


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def section_of(text: str, heading: str) -> str:
    """The HTML from ``<h2>heading</h2>`` to the next ``<h2>``."""
    start = text.index(f"<h2>{heading}</h2>")
    end = text.find("<h2>", start + 4)
    return text[start : end if end >= 0 else len(text)]


# --------------------------------------------------------------------------- markers and units


def test_markers_are_the_pooled_percentiles_of_the_data():
    itl = [k * MS for k in range(1, 101)]  # 1..100 ms
    assert plots.itl_markers(itl) == [
        ("p50", pytest.approx(50.5 * MS)),
        ("p99", pytest.approx(99.01 * MS)),
    ]
    assert plots.itl_markers(list(reversed(itl))) == plots.itl_markers(itl)
    assert plots.itl_markers([]) == [] and plots.itl_markers([None, float("nan")]) == []
    # the same numbers as the gated metrics (which pool every interval the same way)
    r = gen_result("t.py::test_gen", itl)
    marks = dict(plots.itl_markers(r.tokens[""]["itl_s"]))
    assert marks["p50"] == pytest.approx(r.metrics["itl_p50"].value)
    assert marks["p99"] == pytest.approx(r.metrics["itl_p99"].value)


def test_axis_unit_is_us_only_when_every_itl_is_under_a_millisecond():
    assert plots.itl_unit([20e-6, 900e-6]) == "us"
    assert plots.itl_unit([20e-6, 1.2e-3]) == "ms"
    assert plots.itl_unit([]) == "ms"


def test_the_figure_marks_p50_and_p99_with_labels_from_the_data():
    pytest.importorskip("matplotlib")
    fig = plots.itl_figure(gen_result("t.py::test_gen[a]", [k * MS for k in range(1, 101)]))
    (ax,) = fig.axes
    assert legend_texts(ax) == ["300 intervals", "p50 50.5 ms", "p99 99.01 ms"]
    assert ax.get_xlabel() == "inter-token latency (ms)"
    assert [line.get_xdata()[0] for line in ax.lines] == [
        pytest.approx(50.5),
        pytest.approx(99.01),
    ]
    assert ax.get_yscale() == "log"
    assert "test_gen[a]" in fig._suptitle.get_text()

    fast = plots.itl_figure(gen_result("t.py::test_fast", [k * 1e-6 for k in range(10, 110)]))
    (ax,) = fast.axes
    assert ax.get_xlabel() == "inter-token latency (us)"
    assert legend_texts(ax)[1:] == ["p50 59.5 us", "p99 108 us"]
    assert ax.lines[0].get_xdata()[0] == pytest.approx(59.5)


def test_an_ab_overlays_its_two_sides_in_one_axes_reference_first():
    pytest.importorskip("matplotlib")
    r = ab_result("t.py::test_ab")
    add_generation(r, "solo", [2 * MS] * 5)
    # a JSON report sorts keys: candidate before reference; the plot keeps the A/B order
    r.tokens = dict(sorted(r.tokens.items()))
    fig = plots.itl_figure(r)
    ab_ax, solo_ax = fig.axes
    assert ab_ax.get_title() == "s" and solo_ax.get_title() == "solo"
    texts = legend_texts(ab_ax)
    assert texts[0] == "reference: 45 intervals" and texts[3] == "candidate: 45 intervals"
    assert texts[1].startswith("reference: p50 ") and texts[5] == "candidate: p99 4 ms"
    assert len(ab_ax.patches) == 2  # two step histograms
    assert legend_texts(solo_ax)[0] == "15 intervals"


# --------------------------------------------------------------------------- HTML


def test_html_histogram_for_results_with_tokens_in_their_section_and_none_without():
    pytest.importorskip("matplotlib")
    results = [
        gen_result("t.py::test_gen[1]", group="decode", n=1),
        gen_result("t.py::test_gen[2]", group="decode", n=2),
        plain_result("t.py::test_plain", group="decode"),
        gen_result("t.py::test_loose"),
        plain_result("t.py::test_other"),
        gen_result("t.py::test_one_token", itl_s=[]),  # no interval: no histogram
    ]
    text = render_html(results, {})
    decode = section_of(text, "Group: decode")
    captions = CAPTION.findall(decode)
    # the group's own sweep plot first, then one histogram per test with tokens
    assert captions == [
        "decode: throughput vs n",
        "Inter-token latency: test_gen[1] (n=1)",
        "Inter-token latency: test_gen[2] (n=2)",
    ]
    assert decode.index("<table>") < decode.index("<figure>")
    assert CAPTION.findall(section_of(text, "Token latency")) == ["Inter-token latency: test_loose"]
    assert "test_plain" not in " ".join(CAPTION.findall(text))
    assert "test_other" not in " ".join(CAPTION.findall(text))
    assert "test_one_token" not in " ".join(CAPTION.findall(text))
    assert text.count('src="data:image/png;base64,') == len(CAPTION.findall(text))


def test_no_token_latency_section_without_generations():
    pytest.importorskip("matplotlib")
    text = render_html([plain_result("t.py::test_plain")], {})
    assert "Token latency" not in text


def test_histograms_are_capped_per_group_alarming_verdicts_first(monkeypatch):
    pytest.importorskip("matplotlib")
    assert plots.MAX_HISTOGRAMS == 24
    monkeypatch.setattr(plots, "MAX_HISTOGRAMS", 3)
    results = [gen_result(f"t.py::test_g[{i}]", group="g") for i in range(5)]
    results[4].verdict = Verdict.REGRESSION
    results.append(gen_result("t.py::test_loose"))  # another section: its own cap
    text = render_html(results, {})
    group = section_of(text, "Group: g")
    assert CAPTION.findall(group) == [
        "Inter-token latency: test_g[0]",
        "Inter-token latency: test_g[1]",
        "Inter-token latency: test_g[4]",
    ]
    assert "2 more inter-token latency histogram(s) not drawn: at most 3 per group" in group
    assert "more inter-token" not in section_of(text, "Token latency")


def test_run_text_with_dollars_is_drawn_as_text(tmp_path):
    """A ``$`` in a test id would make matplotlib parse mathtext and fail the report."""
    pytest.importorskip("matplotlib")
    r = gen_result("t.py::test_x[$x^{$]", group="g", p="$x^{$", n=1)
    r.baseline_values["throughput"] = r.metrics["throughput"].value * 1.1
    other = gen_result("t.py::test_x[b]", group="g", p="b", n=2)
    path = tmp_path / "r.html"
    write_report(path, [r, other], {})
    captions = CAPTION.findall(path.read_text())
    assert "Inter-token latency: test_x[$x^{$] (p=$x^{$, n=1)" in captions
    assert captions[0].startswith("Current vs baseline")


def test_run_text_is_escaped_for_mathtext_and_a_hooks_bad_mathtext_still_draws():
    pytest.importorskip("matplotlib")
    assert plots.plain("test_x[$a$]") == r"test_x[\$a\$]"
    fig = plots.itl_figure(gen_result("t.py::test_x[$a$]", p="$a$"))
    assert fig._suptitle.get_text() == r"Inter-token latency: test_x[\$a\$] (p=\$a\$)"
    # a hook's own plot with text that is not valid mathtext: drawn as plain text
    fig = plots.new_figure(3, 2)
    fig.add_subplot(1, 1, 1).set_title("test_x[$x^{$]")
    assert plots.to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_nothing_is_drawn_and_the_token_table_stays(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    text = render_html([gen_result("t.py::test_gen"), ab_result("t.py::test_ab", "g")], {})
    assert "data:image/png" not in text and "matplotlib is not installed" in text
    assert "<h2>Token latency</h2>" not in text
    assert "<h3>Token latency</h3>" in text
    assert plots.itl_histogram(gen_result("t.py::test_gen")) is None


# --------------------------------------------------------------------------- tables


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table under ``heading``."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return [rows[0]] + rows[2:]


def test_token_metrics_get_a_row_per_measurement_not_columns_per_name():
    results = [
        gen_result("t.py::test_gen"),
        ab_result("t.py::test_ab"),
        gen_result("t.py::test_one_token", itl_s=[]),
        plain_result("t.py::test_plain"),
    ]
    text = render_markdown(results, {})
    main = table_rows(text, "### Results")
    assert not any("ttft" in c or "itl" in c or "tpot" in c for c in main[0])
    assert "s.speedup" in main[0] and "time" in main[0]
    tokens = table_rows(text, "### Token latency")
    assert tokens[0] == [
        "test", "measurement", "generations", "TTFT", "TPOT", "ITL p50", "ITL p90",
        "ITL p99", "p99/p50", "ITL max", "decode", "throughput", "end to end", "tokens",
    ]  # fmt: skip
    by_row = {(row[0], row[1]): dict(zip(tokens[0], row, strict=True)) for row in tokens[1:]}
    assert list(by_row) == [
        ("test_gen", "-"),
        ("test_ab", "s.reference"),
        ("test_ab", "s.candidate"),
        ("test_one_token", "-"),
    ]
    assert by_row[("test_gen", "-")]["generations"] == "3"
    assert by_row[("test_gen", "-")]["TTFT"] == "5 ms"
    assert by_row[("test_gen", "-")]["ITL p50"] == "1.5 ms"
    assert by_row[("test_ab", "s.candidate")]["ITL max"] == "4 ms"
    assert by_row[("test_ab", "s.reference")]["tokens"] == "16 tokens"
    assert by_row[("test_one_token", "-")]["ITL p99"] == "-"


def test_token_table_shows_prefill_when_a_prompt_was_given():
    r = TestResult("t.py::test_prompt", verdict=Verdict.PASS)
    marks = [0.0, 0.004, 0.005, 0.006]
    log = GenerationLog(prompt_tokens=400, marks=[marks, marks])
    metrics, _ = generation_metrics(log, [0.006, 0.006], [], "", "")
    for m in metrics:
        r.add(m)
    r.tokens[""] = token_record(log)
    tokens = table_rows(render_markdown([r], {}), "### Token latency")
    assert "prefill" in tokens[0]
    assert dict(zip(tokens[0], tokens[1], strict=True))["prefill"] == "1e+05 tokens/s"


# --------------------------------------------------------------------------- JSON and exporters


def test_json_report_carries_tokens_and_they_round_trip(tmp_path):
    results = [gen_result("t.py::test_gen"), ab_result("t.py::test_ab", "g")]
    path = tmp_path / "r.json"
    write_report(path, results, {})
    data = json.loads(path.read_text())
    assert data["results"][0]["tokens"] == {
        "": {
            "generations": 3,
            "batch": 1,
            "prompt_tokens": None,
            "tokens": [4, 4, 4],
            "ttft_s": [5 * MS] * 3,
            "itl_s": results[0].tokens[""]["itl_s"],
        }
    }
    back = [TestResult.from_dict(d) for d in data["results"]]
    assert [b.tokens for b in back] == [r.tokens for r in results]
    if plots.matplotlib_available():
        captions = CAPTION.findall(render_html(back, {}))
        assert "Inter-token latency: test_gen" in captions
        assert "Inter-token latency: test_ab" in captions


def test_exporters_take_generation_metrics_and_leave_the_itl_list_out():
    r = ab_result("t.py::test_ab")
    g = gen_result("t.py::test_gen", itl_s=[1.25 * MS] * 40)
    itl_text = {repr(x) for x in g.tokens[""]["itl_s"]} | {"itl_s", "ttft_s"}

    # pytest-benchmark: a generation's round is its end-to-end latency
    doc = exporters.benchmark_json([g, r], {})
    benches = {b["fullname"]: b for b in doc["benchmarks"]}
    assert benches["t.py::test_gen"]["stats"]["rounds"] == 3
    assert benches["t.py::test_gen"]["extra_info"]["llmperf.time_metric"] == "e2e_latency"
    assert benches["t.py::test_ab"]["extra_info"]["llmperf.time_metric"] == (
        "s.candidate.e2e_latency"
    )
    assert not {"itl_s", "tokens"} & set(benches["t.py::test_gen"]["extra_info"])

    bmf = exporters.bmf([g, r])
    assert bmf["t.py::test_gen"]["itl-p99"]["value"] == pytest.approx(1.25 * MS)
    assert all(isinstance(v, float) for m in bmf.values() for e in m.values() for v in e.values())

    props = exporters.junit_properties(g)
    assert ("llmperf.itl_p99_s", "0.00125") in props
    assert all(len(value) < 40 for _, value in props)
    assert not any(word in name for name, _ in props for word in ("itl_s", "tokens."))

    summary = exporters.github_step_summary([g, r], {})
    assert not any(t in summary for t in itl_text)
    assert len(summary.splitlines()) < 15


# --------------------------------------------------------------------------- end to end

PROJECT = """
import pytest


def decode(n=16):
    for i in range(n):
        yield i


@pytest.mark.llmperf(rounds=3, warmup=0)
def test_gen(llmperf):
    assert llmperf.generation(decode) == list(range(16))


@pytest.mark.llmperf(rounds=3, warmup=0, group="decode")
def test_ab(llmperf):
    llmperf.ab(decode, decode, generation=True, name="s")
"""


def test_a_generation_run_writes_its_histogram_into_the_html(pytester: pytest.Pytester):
    pytest.importorskip("matplotlib")
    pytester.makepyfile(test_tokens=PROJECT)
    result = pytester.runpytest("--llmperf", "--llmperf-report=r.html", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    text = (pytester.path / "r.html").read_text()
    assert CAPTION.findall(section_of(text, "Group: decode")) == ["Inter-token latency: test_ab"]
    assert CAPTION.findall(section_of(text, "Token latency")) == ["Inter-token latency: test_gen"]
    assert "<h3>Token latency</h3>" in text
