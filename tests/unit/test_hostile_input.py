"""Hostile input to the outputs and the command line:

1. test ids, metric names, notes and verdict lines cannot make a link, an image or other
   markup in the Markdown report or the GitHub step summary (nor in the HTML report);
2. every number ``python -m pytest_llmperf estimate`` takes is finite and in range, else
   a usage error (exit 2) naming the option and the value: no OverflowError traceback,
   no negative or NaN energy;
3. ``python -m pytest_llmperf doctor --threads 100000`` is a usage error, bounded as
   ``--llmperf-threads`` is, not a segfault.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re

import pytest

from pytest_llmperf import doctor
from pytest_llmperf.__main__ import main
from pytest_llmperf.config import MAX_THREADS
from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.output import exporters
from pytest_llmperf.output.html import render_html
from pytest_llmperf.output.markdown import escape, render_markdown
from pytest_llmperf.results import Metric, TestResult
from pytest_llmperf.roofline import cli

# --------------------------------------------------------------------------- Markdown

LINK = "[x](https://evil.example/)"
IMAGE = "![i](https://evil.example/p.png)"
#: Emphasis, strikethrough, a code span, a heading, a cell's end and a line break too.
METRIC = "**m**_[l](https://evil.example/)_~~s~~`c`#|\nx"

# Recorded, not timed: the second run regresses by a fixed factor, so the step summary's
# "Why" spells out verdict lines naming the hostile metric, and no timing noise decides.
MODULE = f"""
import os
import pytest

@pytest.mark.parametrize("p", [{LINK!r}, {IMAGE!r}], ids=str)
def test_x(llmperf, p):
    llmperf.record({METRIC!r}, float(os.environ.get("LLMPERF_T", "1")), "s")
"""


def _unescaped(text: str, chars: str) -> list[str]:
    """The characters of ``chars`` in Markdown ``text`` that no backslash escapes."""
    return [t for t in re.findall(r"\\.|[" + re.escape(chars) + "]", text) if len(t) == 1]


def _shown(text: str) -> str:
    """Markdown text as GitHub shows it: backslash escapes and entities undone."""
    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text))


def _assert_inert(text: str, where: str) -> None:
    """No link, image, emphasis or strikethrough can open: ``[``, ``]``, ``!``, ``~``,
    ``*`` and a ``_`` that is not inside a word are all escaped, but for the ``**bold**``
    and ``_note_`` the plugin writes around escaped text itself."""
    assert _unescaped(text, "[]!~") == [], f"unescaped markup in the {where}:\n{text}"
    assert not re.search(r"(?<!\\)(?:\]\(|!\[)", text), where
    assert "<a " not in text and "<img" not in text, where
    own = re.sub(r"\*\*[^*\\\n]+\*\*|^_.*_$", "", text, flags=re.M)
    assert _unescaped(own, "*") == [], f"unescaped * in the {where}:\n{text}"
    assert not re.search(r"(?<![\\\w])_|(?<!\\)_(?!\w)", own), where


def test_escape_leaves_no_markup_and_the_text_readable() -> None:
    for text in (f"test_x[{LINK}]", f"test_x[{IMAGE}]", METRIC, "a\\", "\\[", "<b>&amp;"):
        out = escape(text)
        assert "\n" not in out
        _assert_inert(out, repr(text))
        assert _shown(out) == text.replace("\n", " ")
    # readable as text: a word's underscores, parentheses and a device's (R) stay as they are
    assert escape("test_matmul_fp16") == "test_matmul_fp16"
    assert escape("time (ms)") == "time (ms)"
    assert escape(f"test_x[{LINK}]") == r"test_x\[\[x\]\(https://evil.example/)\]"


def test_hostile_ids_and_metric_names_stay_text_in_the_report_and_step_summary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_h=MODULE)
    args = ("--llmperf", "-p", "no:cacheprovider")
    rec = pytester.runpytest(*args, "--llmperf-update-baselines")
    rec.assert_outcomes(passed=2)
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("LLMPERF_T", "2")  # twice the baseline: a regression
    rec = pytester.runpytest(*args, "--llmperf-report=r.md")
    rec.assert_outcomes(failed=2)
    report = (pytester.path / "r.md").read_text()
    step = summary.read_text()
    for where, text in (("Markdown report", report), ("GitHub step summary", step)):
        _assert_inert(text, where)
        shown = _shown(text)
        for id_ in (f"test_x[{LINK}]", f"test_x[{IMAGE}]"):  # still readable, in the table
            assert f"test_h.py::{id_}" in shown, where
        assert f"REGRESSION {METRIC}".replace("\n", " ") in shown, where  # a verdict line
    assert "<details><summary>Why</summary>" in step


def test_html_escapes_every_hostile_text() -> None:
    """The HTML report, rendered here: a pytester run writing it would import matplotlib
    inside the inner run, which pytester then unloads under the other tests' feet."""
    bad = f"{LINK}{IMAGE}<img src=https://evil.example/q.png>\"'&"
    r = TestResult(
        nodeid=f"t.py::test_h[{bad}]",
        group=bad,
        params={bad: bad},
        verdict=Verdict.REGRESSION,
        verdict_lines=[f"REGRESSION {bad}"],
        notes=[bad],
    )
    r.add(Metric(bad, 2.0, bad, kind="other", higher_is_better=False))
    session = {"device": {"key": bad, "name": bad}, "tier": bad, "baseline_file": bad}
    page = render_html([r], session)
    assert "<a " not in page and "<img src=https" not in page and "\"'" not in page
    assert not re.search(r"<img(?![^>]*src=\"data:image/png)", page)  # only inline plots
    assert html.escape(r.nodeid) in page
    for text in (render_markdown([r], session), exporters.github_step_summary([r], session)):
        _assert_inert(text, "Markdown")
        assert "<img" not in text and f"REGRESSION {bad}" in _shown(text)


# --------------------------------------------------------------------------- estimate

EST = ["estimate", "--model", "opt-1.3b", "--device", "RTX A5000"]
TOO_BIG = "1" + "0" * 300  # past a float


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--seq-len", TOO_BIG, "must be <= 1048576"),
        ("--batch", TOO_BIG, "must be <= 65536"),
        ("--gen-len", TOO_BIG, "must be <= 131072"),
        ("--kv-len", "-5", "must be >= 0"),
        ("--batch", "0", "must be >= 1"),
        ("--batch", "1.5", "expected an integer"),
        ("--devices", "0", "must be >= 1"),
        ("--micro-batches", "0", "must be >= 1"),
        ("--power", "nan", "expected a finite number"),
        ("--power", "inf", "expected a finite number"),
        ("--power", "-5", "must be > 0"),
        ("--power", "0", "must be > 0"),
        ("--power", "1e400", "expected a finite number"),
        ("--link-bandwidth", "nan", "expected a finite number"),
        ("--link-bandwidth", "5e-324", "must be >= 0.001"),  # a divisor: inf runtime
        ("--link-latency", "-1", "must be >= 0"),
        ("--link-latency", "inf", "expected a finite number"),
    ],
)
def test_estimate_numbers_out_of_range_are_usage_errors(
    option: str,
    value: str,
    why: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A value let through must fail here, not estimate: --gen-len 10**300 priced step by
    # step filled 24 GB before the OOM killer ended it.
    monkeypatch.setattr(cli.estimator, "estimate", lambda *a, **k: pytest.fail(f"estimated {k}"))
    line = _usage_error([*EST, option, value], capsys)
    assert line.startswith(f"python -m pytest_llmperf estimate: error: argument {option}: ")
    assert why in line and value[:20] in line, line


def test_estimate_at_the_bounds_is_finite(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*EST, "--seq-len", str(cli.MAX_TOKENS), "--batch", "64", "--power", "700", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert math.isfinite(data["runtime_s"]) and data["energy_j"] > 0


@pytest.mark.parametrize("bad", [{"power_w": -5.0}, {"power_w": math.nan}, {"kv_len": -5}])
def test_the_estimator_api_refuses_negative_power_and_cache(bad: dict[str, float]) -> None:
    from pytest_llmperf.roofline.estimator import estimate

    with pytest.raises(ValueError, match=next(iter(bad))):
        estimate("opt-1.3b", mode="decode", device="RTX A5000", **bad)


def _numeric_options(parser: argparse.ArgumentParser) -> dict[str, object]:
    """Each option that takes a value, with its ``type`` (None: a string)."""
    return {
        a.option_strings[0]: a.type for a in parser._actions if a.option_strings and a.nargs != 0
    }


def test_every_number_of_every_subcommand_has_a_validating_type() -> None:
    strings = {"--model", "--device", "--mode", "--dtype", "--parallel", "--gate"}
    kinds = {"positive integer", "integer", "positive number", "number"}
    for parser in (cli._parser().estimate_parser, doctor._parser()):
        for option, kind in _numeric_options(parser).items():
            if option in strings:
                continue
            assert kind not in (int, float, None), f"{option}: argparse's own {kind}"
            assert kind.__name__ in kinds | {"thread count", "tolerance"}, option


# --------------------------------------------------------------------------- doctor


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("100000", f"must be <= {MAX_THREADS}, got 100000"),
        ("0", "must be >= 1, got 0"),
        ("1.5", "expected an integer or 'auto', got '1.5'"),
    ],
)
def test_doctor_threads_are_bounded_as_llmperf_threads(
    value: str, why: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were the value let through, the doctor would run: fail here, not in torch.
    monkeypatch.setattr(doctor, "run", lambda args: pytest.fail(f"ran with {args.threads}"))
    line = _usage_error(["doctor", "--threads", value], capsys)
    assert line == f"python -m pytest_llmperf doctor: error: argument --threads: {why}"


def test_doctor_threads_take_what_llmperf_threads_takes() -> None:
    parse = doctor._parser().parse_args
    assert parse(["--threads", str(MAX_THREADS)]).threads == MAX_THREADS
    assert parse(["--threads", "auto"]).threads is None  # torch's own choice
    assert parse([]).tolerance == pytest.approx(0.1)
