"""The README's quick start runs as written, and its set-up commands stay true."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
QUICK_START = "tests/perf/test_tiny_lm.py"


def quick_start_test() -> str:
    """The quick start's test file, as the README shows it."""
    text = README.read_text()
    block = re.search(rf"```python\n(# {re.escape(QUICK_START)}\n.*?)```", text, re.S)
    assert block, "the README lost its quick start test file"
    return block.group(1)


def quick_start_commands() -> list[str]:
    """The quick start's shell commands, comments dropped."""
    text = README.read_text()
    start = text.index(QUICK_START)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block
    return [line.split("#")[0].strip() for line in block.group(1).splitlines()]


def test_quick_start_runs_green_and_records_what_it_says(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("tests/perf").mkdir(parents=True)
    pytester.path.joinpath(QUICK_START).write_text(quick_start_test())
    commands = quick_start_commands()
    assert commands[0] == "pytest tests/perf"
    assert commands[1] == "pytest --llmperf tests/perf --llmperf-update-baselines"
    plain = pytester.runpytest("tests/perf", "-p", "no:cacheprovider")
    plain.assert_outcomes(passed=3)
    plain.stdout.fnmatch_lines(["llmperf: 3 performance tests ran once*"])
    assert not (pytester.path / "baselines").exists()
    first = pytester.runpytest("--llmperf", "tests/perf", "-p", "no:cacheprovider")
    first.assert_outcomes(passed=3)
    update = pytester.runpytest(*commands[1].split()[1:], "-p", "no:cacheprovider")
    update.assert_outcomes(passed=3)
    (machine,) = (pytester.path / "baselines").glob("*.json")
    tests = json.loads(machine.read_text())["tests"]
    forward = tests["tests/perf/test_tiny_lm.py::test_forward"]["metrics"]
    assert forward["throughput"]["unit"] == "tokens/s"
    # MFU against this machine's calibrated peak; a peak calibrated on a busy machine can
    # put it past 100%, and then the note says why it is left out (never a wrong number).
    assert "mfu" in forward or "mfu not reported" in update.stdout.str()
    assert "ttft" in tests["tests/perf/test_tiny_lm.py::test_generate"]["metrics"]
    weights = tests["tests/perf/test_tiny_lm.py::test_weights"]["metrics"]["weights"]
    assert weights["value"] == 4 * (512 * 256 + 256 * 256 + 256 + 256 * 512 + 512)
    work = json.loads((pytester.path / "baselines/work/cpu.json").read_text())["tests"]
    assert "tests/perf/test_tiny_lm.py::test_forward" in work
    # The compare run with the gate a shared CPU runner uses: exact, so it must pass.
    again = pytester.runpytest("--llmperf", "tests/perf", "--llmperf-gate=work")
    again.assert_outcomes(passed=3)


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    text = README.read_text()
    assert "pytest --llmperf tests/benchmarks" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "venv" in ci and 'pip install --quiet -e ".[dev]"' in ci
    assert "torch==2.13.0" in text and "torch==2.13.0" in ci
    # The test command, then the README's main job with the work gate deciding.
    assert "\npython -m pytest\n" in ci
    assert "python -m pytest --llmperf tests/benchmarks --llmperf-gate=work" in ci


def test_readme_links_resolve() -> None:
    """Every relative link and every `docs/...` path the README names exists."""
    text = README.read_text()
    paths = set(re.findall(r"\]\(((?:docs|scripts|tests)/[^)#]+)\)", text))
    paths |= set(re.findall(r"`((?:docs|scripts)/[\w/.-]+\.(?:md|py))`", text))
    assert paths
    missing = [p for p in sorted(paths) if not (README.parent / p).exists()]
    assert not missing, missing
    anchors = re.findall(r"\]\(#([\w-]+)\)", text)
    headings = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^##+ (.*)$", text, re.M)
    }
    assert not [a for a in anchors if a not in headings], anchors
