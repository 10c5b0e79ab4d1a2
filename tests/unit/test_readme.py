"""The README's worked example runs as written, and its set-up commands stay true."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    block = re.search(r"```python\n(# tests/perf/test_decode_step.py\n.*?)```", text, re.S)
    assert block, "the README lost its worked example"
    return block.group(1)


def test_readme_example_records_and_compares(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_decode_step=_example())
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").glob("*.json")
    metrics = json.loads(path.read_text())["tests"]["test_decode_step.py::test_decode_step"][
        "metrics"
    ]
    assert metrics["throughput"]["unit"] == "tokens/s"
    assert metrics["weights"]["value"] == 1024 * 4096 * 4
    assert "mfu" in metrics
    # The compare run: an A/A comparison of a real CPU workload at the example's 8%
    # tolerance is at the mercy of the machine here, so check what it was judged
    # with (the marker's tolerance, against the baseline), not how it came out.
    result = pytester.runpytest("--llmperf", "--llmperf-report=r.json")
    assert result.ret in (0, 1)
    (judged,) = json.loads((pytester.path / "r.json").read_text())["results"]
    assert judged["metrics"]["throughput"]["tolerance"] == pytest.approx(0.08)
    assert judged["verdict"] in ("pass", "improved", "inconclusive", "regression")
    assert judged["baseline_values"]["weights"] == 1024 * 4096 * 4


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    text = README.read_text()
    assert "pytest --llmperf tests/benchmarks" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "venv" in ci and 'pip install --quiet -e ".[dev]"' in ci
    assert "torch==2.13.0" in text and "torch==2.13.0" in ci
    # The test command, then the README's main job with the work gate deciding.
    assert "\npython -m pytest\n" in ci
    assert ci.rstrip().endswith("python -m pytest --llmperf tests/benchmarks --llmperf-gate=work")
