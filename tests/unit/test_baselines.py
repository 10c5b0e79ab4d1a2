"""baselines: the file's schema, merging, pooling and safe writes (pure, on tmp files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_llmperf import baselines
from pytest_llmperf.baselines import BaselineError, load, metric_samples, run_spread, write
from pytest_llmperf.results import Metric, Status, TestResult

DEVICE = {"key": "cpu-test-2c", "name": "Test CPU"}
FINGERPRINT = {"torch": "2.13.0"}
REPO = Path(__file__).resolve().parents[2]


def timed(nodeid: str, seconds: float, tier: str = "smoke", n: int = 5) -> TestResult:
    r = TestResult(nodeid, tier=tier, group="g", params={"size": 1})
    r.add(
        Metric(
            "time",
            seconds,
            "s",
            higher_is_better=False,
            kind="time",
            samples=[seconds] * n,
            tolerance=0.1,
        )
    )
    return r


def write_results(path: Path, *results: TestResult, pool: int = 1) -> dict:
    write(path, device=DEVICE, fingerprint=FINGERPRINT, results=list(results), pool=pool)
    return json.loads(path.read_text())


def test_round_trip_with_stable_formatting(tmp_path: Path):
    path = tmp_path / "b.json"
    data = write_results(path, timed("t.py::a", 0.01))
    assert path.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"
    loaded = load(path, DEVICE["key"])
    e = loaded.entry("t.py::a", "smoke")
    assert e["status"] == "ok" and e["metrics"]["time"]["value"] == 0.01
    assert loaded.entry("t.py::a", "standard") is None  # another tier's numbers don't count
    assert loaded.entry("t.py::b", "smoke") is None


def test_refreshing_a_subset_keeps_and_merges_the_other_entries(tmp_path: Path):
    path = tmp_path / "b.json"
    write_results(path, timed("t.py::a", 0.01), timed("t.py::b", 0.02))
    before = json.loads(path.read_text())["tests"]["t.py::b"]
    after = write_results(path, timed("t.py::a", 0.03))["tests"]
    assert set(after) == {"t.py::a", "t.py::b"}
    assert after["t.py::b"] == before
    assert after["t.py::a"]["metrics"]["time"]["value"] == 0.03


def test_pooling_keeps_the_last_n_runs_and_their_spread(tmp_path: Path):
    path = tmp_path / "b.json"
    for seconds in (0.010, 0.020, 0.030, 0.012):
        data = write_results(path, timed("t.py::a", seconds), pool=3)
    time = data["tests"]["t.py::a"]["metrics"]["time"]
    assert [run["samples"][0] for run in time["runs"]] == [0.02, 0.03, 0.012]
    assert time["value"] == 0.02  # the median of the pooled samples
    assert metric_samples(time) == [0.02] * 5 + [0.03] * 5 + [0.012] * 5
    assert run_spread(time) == pytest.approx(0.5)  # 0.03 is 50% above the middle run
    # without pooling a refresh replaces the run
    single = write_results(path, timed("t.py::a", 0.05))["tests"]["t.py::a"]["metrics"]["time"]
    assert len(single["runs"]) == 1 and run_spread(single) == 0.0


def test_pooling_never_mixes_tiers_or_statuses(tmp_path: Path):
    path = tmp_path / "b.json"
    write_results(path, timed("t.py::a", 0.01))
    data = write_results(path, timed("t.py::a", 0.5, tier="standard"), pool=3)
    assert len(data["tests"]["t.py::a"]["metrics"]["time"]["runs"]) == 1
    oom = timed("t.py::a", 0.5, tier="standard")
    oom.status = Status.OOM
    data = write_results(path, oom, pool=3)
    assert data["tests"]["t.py::a"]["status"] == "oom"
    assert len(data["tests"]["t.py::a"]["metrics"]["time"]["runs"]) == 1


def test_samples_are_sketched_and_rounded(tmp_path: Path):
    r = TestResult("t.py::a", tier="smoke")
    xs = [0.001 + i * 1.234567891e-7 for i in range(1000)]
    r.add(Metric("time", xs[500], "s", higher_is_better=False, kind="time", samples=xs))
    r.add(Metric("weights", 4 * 2**20, "B", higher_is_better=False, kind="memory"))
    data = write_results(tmp_path / "b.json", r)["tests"]["t.py::a"]["metrics"]
    samples = data["time"]["runs"][0]["samples"]
    assert len(samples) == baselines.SKETCH_SIZE and samples == sorted(samples)
    assert samples[0] == xs[0] and all(x == float(f"{x:.6g}") for x in samples)
    assert data["time"]["summary"]["n"] == 1000
    assert data["weights"]["value"] == 4 * 2**20  # whole numbers stay exact


@pytest.mark.parametrize(
    "content, words",
    [
        ("{", "is not valid JSON"),
        ('{"benchmarks": []}', "is not a pytest-llmperf baseline"),
        (
            '{"schema": "pytest-llmperf-baseline", "schema_version": 99, "device": {}, "tests": {}}',
            "has schema_version 99",
        ),
        (
            '{"schema": "pytest-llmperf-baseline", "schema_version": 1, "device": {}}',
            'lacks a "device" object or a "tests" object',
        ),
        (
            '{"schema": "pytest-llmperf-baseline", "schema_version": 1, '
            '"device": {"key": "nvidia-a100"}, "tests": {}}',
            "belongs to device 'nvidia-a100', not to this device 'cpu-test-2c'",
        ),
        (
            '{"schema": "pytest-llmperf-baseline", "schema_version": 1, '
            '"device": {"key": "cpu-test-2c"}, "tests": {"t.py::a": []}}',
            "has a malformed entry for 't.py::a'",
        ),
        (
            '{"schema": "pytest-llmperf-baseline", "schema_version": 1, "device": {"key": '
            '"cpu-test-2c"}, "tests": {"t.py::a": {"metrics": {"time": {"value": "fast"}}}}}',
            "has a malformed metric 'time' in 't.py::a'",
        ),
    ],
)
def test_an_unusable_file_is_an_error_naming_it_and_is_never_overwritten(
    tmp_path: Path, content: str, words: str
):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(BaselineError) as err:
        load(path, DEVICE["key"])
    assert str(path) in str(err.value) and words in str(err.value)
    assert "left untouched" in str(err.value)
    with pytest.raises(BaselineError):
        write_results(path, timed("t.py::a", 0.01))
    assert path.read_text() == content


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch):
    path = tmp_path / "b.json"
    write_results(path, timed("t.py::a", 0.01))
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_results(path, timed("t.py::a", 0.05))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]


def test_a_file_written_before_the_refactor_still_loads():
    """The committed CPU baseline was written by the first landing's code."""
    (path,) = (REPO / "baselines").glob("cpu-*.json")
    loaded = load(path)
    assert loaded is not None and loaded.tests
    entry = next(iter(loaded.tests.values()))
    name, metric = next(iter(entry["metrics"].items()))
    assert metric_samples(metric), name
