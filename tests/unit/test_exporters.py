"""output/exporters.py: pytest-benchmark JSON (round trip through its CLI), Bencher BMF,
JUnit properties and the GitHub step summary, from hand-built TestResults."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from pytest_llmperf.judge.outcome import Verdict
from pytest_llmperf.output import exporters
from pytest_llmperf.results import Metric, Status, TestResult

SESSION = {
    "device": {"key": "nvidia-h100-80gb-hbm3", "name": "NVIDIA H100 80GB HBM3"},
    "fingerprint": {"torch": "2.13.0", "cuda": "12.8"},
    "tier": "standard",
    "baseline_file": "baselines/nvidia-h100-80gb-hbm3.json",
    "started": "2025-01-01T00:00:00+00:00",
    "duration_s": 3.0,
}

STATS_KEYS = {
    "min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers",
    "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "data", "iterations",
}  # fmt: skip


def results() -> list[TestResult]:
    decode = TestResult(
        nodeid="tests/benchmarks/test_llama_decode.py::test_decode[Llama-2-7b-bf16-compile]",
        group="llama_decode",
        tier="standard",
        params={"model": "Llama-2-7b", "mode": "bf16", "compile": True},
        verdict=Verdict.REGRESSION,
        verdict_lines=["throughput: 95.0 tok/s vs baseline 107.4 tok/s (-11.5%, tolerance 5%)"],
        baseline_values={"throughput": 107.38, "time": 1.86},
        fingerprint_diff={"torch": ["2.12.0", "2.13.0"]},
    )
    decode.add(
        Metric(
            "time",
            2.1,
            "s",
            higher_is_better=False,
            kind="time",
            samples=[2.08, 2.1, 2.12, 2.11, 2.3],
        )
    )
    decode.add(
        Metric(
            "throughput",
            95.0,
            "tok/s",
            higher_is_better=True,
            kind="throughput",
            samples=[96.0, 95.0, 94.3],
        )
    )
    decode.add(Metric("peak_memory_reserved", 13.88e9, "B", higher_is_better=False, kind="memory"))
    decode.add(Metric("mbu", 0.69, "", higher_is_better=True, kind="efficiency", gated=False))

    ab = TestResult(
        nodeid="tests/benchmarks/test_batched_generation.py::test_ab[N4-P512]",
        group="batched_generation",
        params={"num_batches": 4, "prompt_len": 512},
        verdict=Verdict.PASS,
        baseline_values={"ab.speedup": 1.27},
    )
    ab.add(
        Metric(
            "ab.reference.time",
            2.6,
            "s",
            samples=[2.6, 2.65, 2.62],
            gated=False,
            kind="other",
            higher_is_better=False,
        )
    )
    ab.add(
        Metric(
            "ab.candidate.time",
            2.0,
            "s",
            samples=[2.0, 2.05, 2.02],
            gated=False,
            kind="other",
            higher_is_better=False,
        )
    )
    ab.add(
        Metric(
            "ab.speedup", 1.3, "x", higher_is_better=True, kind="ratio", samples=[1.3, 1.29, 1.3]
        )
    )

    plain = TestResult(nodeid="tests/test_x.py::test_plain", verdict=Verdict.NO_BASELINE)
    plain.add(
        Metric(
            "time",
            1.5e-3,
            "s",
            higher_is_better=False,
            kind="time",
            samples=[1.4e-3, 1.5e-3, 1.6e-3, 1.5e-3],
        )
    )

    oom = TestResult(
        nodeid="tests/test_x.py::test_oom[big]",
        status=Status.OOM,
        verdict=Verdict.INCONCLUSIVE,
        verdict_lines=["status: baseline ok, current oom, once in three tries"],
    )
    recorded = TestResult(nodeid="tests/test_x.py::test_recorded_only", verdict=Verdict.RECORDED)
    recorded.add(Metric("accuracy", 0.91, "", higher_is_better=True, kind="other"))
    return [decode, ab, plain, oom, recorded]


# --------------------------------------------------------------------------- pytest-benchmark


def test_benchmark_json_schema(tmp_path):
    path = tmp_path / "out" / "bench.json"
    exporters.write_benchmark_json(path, results(), SESSION)
    data = json.loads(path.read_text())
    assert set(data) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    for key in ("node", "machine", "python_version", "system", "cpu"):
        assert key in data["machine_info"]
    assert data["machine_info"]["llmperf_device"] == SESSION["device"]
    assert {"id", "branch", "dirty"} <= set(data["commit_info"])
    # OOM (no samples) and the test without any time metric are left out
    names = [b["fullname"] for b in data["benchmarks"]]
    assert names == [r.nodeid for r in results()[:3]]
    decode = data["benchmarks"][0]
    assert decode["name"] == "test_decode[Llama-2-7b-bf16-compile]"
    assert decode["param"] == "Llama-2-7b-bf16-compile"
    assert decode["group"] == "llama_decode"
    assert decode["params"] == {"model": "Llama-2-7b", "mode": "bf16", "compile": True}
    stats = decode["stats"]
    assert set(stats) == STATS_KEYS
    xs = [2.08, 2.1, 2.12, 2.11, 2.3]
    assert stats["data"] == xs and stats["rounds"] == 5 and stats["iterations"] == 1
    assert stats["mean"] == pytest.approx(statistics.mean(xs))
    assert stats["stddev"] == pytest.approx(statistics.stdev(xs))
    assert stats["median"] == pytest.approx(2.11)
    assert stats["min"] == 2.08 and stats["max"] == 2.3
    assert stats["ops"] == pytest.approx(5 / sum(xs))
    # every llmperf metric in extra_info, with unit and baseline
    info = decode["extra_info"]
    assert info["llmperf.verdict"] == "regression" and info["llmperf.status"] == "ok"
    for name in ("time", "throughput", "peak_memory_reserved", "mbu"):
        assert name in info and f"{name}.unit" in info
    assert info["throughput"] == 95.0 and info["throughput.baseline"] == 107.38
    assert info["llmperf.fingerprint_diff"] == {"torch": ["2.12.0", "2.13.0"]}
    # an A/B test is timed by its candidate
    ab = data["benchmarks"][1]
    assert ab["extra_info"]["llmperf.time_metric"] == "ab.candidate.time"
    assert ab["stats"]["data"] == [2.0, 2.05, 2.02]


def test_benchmark_stats_match_pytest_benchmark_fields():
    from pytest_benchmark.stats import Stats

    stats = exporters.benchmark_stats([0.3, 0.1, 0.2, 0.9])
    assert set(stats) == set(Stats.fields) | {"data", "iterations"}
    assert stats["q1"] == pytest.approx(0.15) and stats["q3"] == pytest.approx(0.6)


def _compare(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pytest_benchmark_compare_loads_the_file(tmp_path):
    path = tmp_path / "0001_llmperf.json"
    exporters.write_benchmark_json(path, results(), SESSION)
    proc = _compare(tmp_path, str(path), "--columns=min,max,mean,stddev,rounds", "--group-by=group")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Failed to load" not in out
    for name in ("test_decode[Llama-2-7b-bf16-compile]", "test_ab[N4-P512]", "test_plain"):
        assert name in out, out
    assert "llama_decode" in out and "batched_generation" in out
    assert "test_oom" not in out


def test_pytest_benchmark_compare_histogram(tmp_path):
    if importlib.util.find_spec("pygal") is None:
        pytest.skip("pygal is not installed (pip install 'pytest-benchmark[histogram]')")
    path = tmp_path / "0001_llmperf.json"
    exporters.write_benchmark_json(path, results(), SESSION)
    proc = _compare(tmp_path, str(path), f"--histogram={tmp_path / 'hist'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(tmp_path.glob("hist*.svg"))


# --------------------------------------------------------------------------- Bencher


def test_bmf_shape(tmp_path):
    path = tmp_path / "bmf.json"
    exporters.write_bmf(path, results())
    data = json.loads(path.read_text())
    # OOM without metrics is left out; every other test is a benchmark
    assert set(data) == {r.nodeid for r in results()} - {"tests/test_x.py::test_oom[big]"}
    for measures in data.values():
        assert measures
        for slug, metric in measures.items():
            assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug) and len(slug) <= 64
            assert set(metric) <= {"value", "lower_value", "upper_value"} and "value" in metric
            assert all(isinstance(v, float) for v in metric.values())
            if "lower_value" in metric:
                assert metric["lower_value"] <= metric["upper_value"]
    decode = data["tests/benchmarks/test_llama_decode.py::test_decode[Llama-2-7b-bf16-compile]"]
    # time -> Bencher's built-in latency measure, in nanoseconds
    assert decode["latency"] == {
        "value": pytest.approx(2.1e9),
        "lower_value": pytest.approx(2.08e9),
        "upper_value": pytest.approx(2.3e9),
    }
    assert decode["throughput"] == {"value": 95.0, "lower_value": 94.3, "upper_value": 96.0}
    assert decode["peak-memory-reserved"] == {"value": 13.88e9}
    ab = data["tests/benchmarks/test_batched_generation.py::test_ab[N4-P512]"]
    assert set(ab) == {"ab-reference-time", "ab-candidate-time", "ab-speedup"}


def test_measure_slug_is_short_and_kebab():
    assert exporters.measure_slug("time") == "latency"
    assert exporters.measure_slug("origin.peak_memory") == "origin-peak-memory"
    assert len(exporters.measure_slug("x" * 100)) == 64


# --------------------------------------------------------------------------- JUnit


def test_junit_properties_pairs():
    props = exporters.junit_properties(results()[0])
    assert all(type(k) is str and type(v) is str for k, v in props)  # plain text, no enums
    d = dict(props)
    assert d["llmperf.verdict"] == "regression" and d["llmperf.status"] == "ok"
    # A plain number; the unit, as recorded, ends the name.
    assert d["llmperf.time_s"] == "2.1"
    assert d["llmperf.time_s.baseline"] == "1.86"
    assert d["llmperf.throughput_tok_per_s"] == "95"
    assert d["llmperf.throughput_tok_per_s.baseline"] == "107.38"
    assert d["llmperf.peak_memory_reserved_B"] == "13880000000"  # integral: exact
    assert d["llmperf.mbu"] == "0.69"  # dimensionless: no unit part
    assert d["llmperf.fingerprint.torch"] == "2.12.0 -> 2.13.0"
    assert dict(exporters.junit_properties(results()[1]))["llmperf.ab.speedup_x"] == "1.3"
    assert dict(exporters.junit_properties(results()[3])) == {
        "llmperf.verdict": "inconclusive",
        "llmperf.status": "oom",
    }


@pytest.mark.parametrize(
    ("unit", "suffix"),
    [
        ("s", "s"),
        ("B", "B"),
        ("tokens/s", "tokens_per_s"),
        ("FLOP/s", "FLOP_per_s"),
        ("GB/s", "GB_per_s"),
        ("%", "pct"),
        ("µs", "us"),
        ("tok / s", "tok_per_s"),
        ("", ""),
    ],
)
def test_junit_unit_suffix(unit, suffix):
    assert exporters.unit_suffix(unit) == suffix


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0021680412, "0.00216804"),
        (45056.0, "45056"),
        (3, "3"),
        (2264930.7, "2.26493e+06"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
    ],
)
def test_junit_number_is_parseable(value, text):
    assert exporters.junit_number(value) == text
    float(text)


def test_junit_properties_reach_junitxml(pytester):
    pytester.makepyfile(
        """
        from pytest_llmperf.judge.outcome import Verdict
        from pytest_llmperf.output.exporters import junit_properties
        from pytest_llmperf.results import Metric, TestResult

        def test_it(request):
            r = TestResult(nodeid=request.node.nodeid, verdict=Verdict.PASS)
            r.add(Metric("throughput", 123.5, "tok/s", kind="throughput"))
            request.node.user_properties.extend(junit_properties(r))
        """
    )
    xml = pytester.path / "junit.xml"
    pytester.runpytest_inprocess(f"--junitxml={xml}", "-p", "no:cacheprovider").assert_outcomes(
        passed=1
    )
    props = {p.get("name"): p.get("value") for p in ET.parse(xml).iter("property")}
    assert props == {
        "llmperf.verdict": "pass",
        "llmperf.status": "ok",
        "llmperf.throughput_tok_per_s": "123.5",
    }


# --------------------------------------------------------------------------- GitHub


def test_github_step_summary_table():
    text = exporters.github_step_summary(results(), SESSION)
    assert text.startswith("## pytest-llmperf")
    assert "NVIDIA H100 80GB HBM3" in text and "tier <code>standard</code>" in text
    assert "**1 regression, 1 inconclusive, 1 no-baseline, 1 pass, 1 recorded**" in text
    header = next(line for line in text.splitlines() if line.startswith("| test"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "test", "verdict", "fingerprint change", "headline metric", "baseline", "current", "change",
    ]  # fmt: skip
    rows = [line for line in text.splitlines() if line.startswith("| tests/")]
    assert len(rows) == len(results())
    assert "❌ regression" in rows[0]  # most alarming first
    assert "torch: 2.12.0 → 2.13.0" in rows[0]
    assert "time ↓" in rows[0] and "+12.9%" in rows[0]  # time got worse than throughput
    assert "⚠️ inconclusive" in rows[1] and "🆕 no-baseline" in rows[2] and "✅ pass" in rows[3]
    assert "| recorded" in rows[4]  # no icon
    # why: regressions and inconclusive tests only
    why = text[text.index("<summary>Why</summary>") :]
    assert "tolerance 5%" in why and "current oom" in why
    assert "test_plain" not in why and "test_recorded_only" not in why


def test_append_github_step_summary(tmp_path):
    assert exporters.append_github_step_summary(results(), SESSION, env={}) is False
    target = tmp_path / "summary.md"
    target.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(target)}
    assert exporters.append_github_step_summary(results(), SESSION, env=env) is True
    assert exporters.append_github_step_summary(results()[:1], SESSION, env=env) is True
    text = target.read_text()
    assert text.startswith("earlier step\n")
    assert text.count("## pytest-llmperf") == 2


def test_append_github_step_summary_unwritable(tmp_path):
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing-dir" / "summary.md")}
    with pytest.warns(UserWarning, match="GITHUB_STEP_SUMMARY"):
        assert exporters.append_github_step_summary(results(), SESSION, env=env) is False
