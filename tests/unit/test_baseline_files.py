"""Hostile and damaged baseline files (issue 12): every one a clear error naming the file,
the test and the field; writes that never emit NaN, follow a symlink, respect a read-only
file and clean up after a killed writer; entries no larger than the verdicts need."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf import baselines
from pytest_llmperf.baselines import BaselineError, dumps, load, metric_samples, run_spread, write
from pytest_llmperf.judge.verdict import decide_metric
from pytest_llmperf.results import Metric, TestResult

KEY = "cpu-test-2c"
DEVICE = {"key": KEY, "name": "Test CPU"}
NODE = "t.py::test_a[x-1]"

#: A valid file with every field the plugin reads, to be damaged one field at a time.
GOOD: dict[str, Any] = {
    "schema": "pytest-llmperf-baseline",
    "schema_version": 1,
    "device": dict(DEVICE),
    "fingerprint": {"torch": "2.13.0", "memory": 8.0},
    "tests": {
        NODE: {
            "status": "ok",
            "tier": "smoke",
            "group": "g",
            "params": {"x": 1.5},
            "metrics": {
                "time": {
                    "value": 0.01,
                    "unit": "s",
                    "higher_is_better": False,
                    "kind": "time",
                    "tolerance": 0.1,
                    "gated": True,
                    "summary": {"n": 3, "mean": 0.01},
                    "runs": [{"samples": [0.01, 0.011, 0.012], "normalized_samples": [1.0, 1.1]}],
                }
            },
            "work": {"decode": {"ops": {"aten.mm": 24}}},
            "stack": {"torch": "2.13.0"},
        }
    },
}


def _file(tmp_path: Path, mutate: Callable[[dict[str, Any]], Any]) -> Path:
    data = copy.deepcopy(GOOD)
    mutate(data)
    path = tmp_path / f"{KEY}.json"
    path.write_text(json.dumps(data))  # Python's json writes NaN and Infinity as such
    return path


def _entry(d: dict[str, Any]) -> dict[str, Any]:
    return d["tests"][NODE]


def _time(d: dict[str, Any]) -> dict[str, Any]:
    return _entry(d)["metrics"]["time"]


def _refused(path: Path, *words: str) -> str:
    with pytest.raises(BaselineError) as err:
        load(path, KEY)
    message = str(err.value)
    assert str(path) in message and "left untouched" in message, message
    for w in words:
        assert w in message, message
    return message


def test_the_good_file_loads(tmp_path: Path) -> None:
    loaded = load(_file(tmp_path, lambda d: None), KEY)
    assert loaded is not None and loaded.entry(NODE, "smoke") == GOOD["tests"][NODE]


# --------------------------------------------------------------------------- item 1: NaN


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: _time(d).update(value=float("nan")), ["metric 'time'", "value is nan"]),
        (lambda d: _time(d).update(tolerance=float("inf")), ["metric 'time'", "tolerance is inf"]),
        (
            lambda d: _time(d)["runs"][0]["samples"].append(float("nan")),
            ["metric 'time'", "runs[0].samples[3] is nan"],
        ),
        (
            lambda d: _time(d)["runs"][0].update(normalized_samples=[float("-inf")]),
            ["metric 'time'", "runs[0].normalized_samples[0] is -inf"],
        ),
        (
            lambda d: _time(d)["summary"].update(mean=float("nan")),
            ["metric 'time'", "summary.mean is nan"],
        ),
        (
            lambda d: _entry(d)["work"]["decode"]["ops"].update({"aten.mm": float("inf")}),
            ["work signature", "work.decode.ops['aten.mm'] is inf"],
        ),
        (lambda d: _entry(d)["params"].update(x=float("nan")), ["params.x is nan"]),
        (lambda d: _entry(d).update(extra=[float("inf")]), ["extra[0] is inf"]),
    ],
)
def test_non_finite_numbers_in_a_baseline_are_refused_naming_test_and_field(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], Any], words: list[str]
) -> None:
    message = _refused(_file(tmp_path, mutate), repr(NODE), *words)
    assert "not a finite number" in message or "whole count" in message


def test_1e999_and_non_finite_facts_are_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, lambda d: None)
    text = path.read_text()
    path.write_text(text.replace('"value": 0.01', '"value": 1e999'))  # json reads it as inf
    _refused(path, repr(NODE), "metric 'time'", "value is inf", "not a finite number")
    path.write_text(text.replace('"value": 0.01', '"value": 1' + "0" * 400))  # beyond a float
    _refused(path, repr(NODE), "metric 'time'", "value is 1000")
    _refused(
        _file(tmp_path, lambda d: d["fingerprint"].update(memory=float("nan"))),
        "fingerprint.memory is nan",
    )


def _timed(nodeid: str, value: float, samples: list[float], **kw: Any) -> TestResult:
    r = TestResult(nodeid, tier="smoke", params=kw.pop("params", {}))
    kw.setdefault("tolerance", 0.1)
    r.add(Metric("time", value, "s", higher_is_better=False, kind="time", samples=samples, **kw))
    return r


@pytest.mark.parametrize(
    "result, words",
    [
        (_timed("t.py::b", float("inf"), [0.01] * 3), "metric 'time': value is inf"),
        (_timed("t.py::b", 0.01, [0.01, float("nan")]), "metric 'time': samples[1] is nan"),
        (
            _timed("t.py::b", 0.01, [0.01], normalized_samples=[float("inf")]),
            "metric 'time': normalized_samples[0] is inf",
        ),
        (_timed("t.py::b", 0.01, [0.01], tolerance=float("nan")), "tolerance is nan"),
        (_timed("t.py::b", 0.01, [0.01], params={"items": float("nan")}), "params.items is nan"),
    ],
)
def test_writing_refuses_non_finite_numbers_and_keeps_the_old_file(
    tmp_path: Path, result: TestResult, words: str
) -> None:
    path = tmp_path / "b.json"
    write(path, device=DEVICE, fingerprint={}, results=[_timed("t.py::a", 0.01, [0.01] * 3)])
    before = path.read_bytes()
    with pytest.raises(BaselineError) as err:
        write(path, device=DEVICE, fingerprint={}, results=[result])
    assert str(path) in str(err.value) and "'t.py::b'" in str(err.value)
    assert words in str(err.value) and "left untouched" in str(err.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]


def test_dumps_never_emits_nan_or_infinity() -> None:
    with pytest.raises(BaselineError, match="not written as JSON"):
        dumps({"x": [float("nan")]})
    assert dumps({"x": [1.5]}) == '{\n  "x": [\n    1.5\n  ]\n}\n'


# --------------------------------------------------------------------------- item 3: binary


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", '{"schéma": 1}'.encode("latin-1")]
)
def test_a_binary_or_non_utf8_file_is_an_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "b.json"
    path.write_bytes(content)
    _refused(path, "is not UTF-8 text")
    with pytest.raises(BaselineError):
        write(path, device=DEVICE, fingerprint={}, results=[_timed("t.py::a", 0.01, [0.01])])
    assert path.read_bytes() == content


# --------------------------------------------------------------------------- item 4: types


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d.update(schema_version=True), ["schema_version True"]),
        (lambda d: d["device"].update(key=5), ["device key 5"]),
        (lambda d: d.update(fingerprint=["torch"]), ["fingerprint that is a list"]),
        (lambda d: _entry(d).update(status=5), [repr(NODE), "status is 5", "'ok' or 'oom'"]),
        (lambda d: _entry(d).update(status="fine"), [repr(NODE), "status is 'fine'"]),
        (lambda d: _entry(d).update(tier=7), [repr(NODE), "tier is 7, expected a string"]),
        (lambda d: _entry(d).update(group=1), [repr(NODE), "group is 1"]),
        (lambda d: _entry(d).update(params=[1]), [repr(NODE), "params is a list"]),
        (lambda d: _entry(d).update(metrics=[]), [repr(NODE), "metrics is a list"]),
        (lambda d: _entry(d).update(stack="2.13"), [repr(NODE), "stack is '2.13'"]),
        (lambda d: _time(d).update(value=True), ["metric 'time'", "value is True"]),
        (lambda d: _time(d).update(value="fast"), ["metric 'time'", "value is 'fast'"]),
        (lambda d: _time(d).update(unit=3), ["metric 'time'", "unit is 3"]),
        (lambda d: _time(d).update(kind=None), ["metric 'time'", "kind is None"]),
        (
            lambda d: _time(d).update(higher_is_better="yes"),
            ["metric 'time'", "higher_is_better is 'yes', expected true or false"],
        ),
        (lambda d: _time(d).update(gated=1), ["metric 'time'", "gated is 1"]),
        (lambda d: _time(d).update(tolerance=-0.1), ["metric 'time'", "tolerance is -0.1"]),
        (lambda d: _time(d).update(tolerance="5%"), ["metric 'time'", "tolerance is '5%'"]),
        (lambda d: _time(d).update(summary=[1]), ["metric 'time'", "summary is a list"]),
        (lambda d: _time(d).update(runs="abc"), ["metric 'time'", "runs is 'abc'"]),
        (lambda d: _time(d).update(runs=[1]), ["metric 'time'", "runs[0] is 1"]),
        (lambda d: _time(d).update(runs=[{}]), ["metric 'time'", "runs[0].samples is None"]),
        (
            lambda d: _time(d).update(runs=[{"samples": []}]),
            ["metric 'time'", "runs[0].samples is a list, expected a non-empty list"],
        ),
        (
            lambda d: _time(d).update(runs=[{"samples": ["0.01"]}]),
            ["metric 'time'", "runs[0].samples[0] is '0.01'"],
        ),
        (
            lambda d: _time(d)["runs"][0].update(normalized_samples="x"),
            ["metric 'time'", "runs[0].normalized_samples is 'x'"],
        ),
        (
            lambda d: _entry(d).update(work={"decode": {"ops": {"aten.mm": 1.5}}}),
            [repr(NODE), "work.decode.ops['aten.mm'] is 1.5, expected a whole count"],
        ),
        (
            lambda d: _entry(d).update(work={"decode": {"ops": {"aten.mm": True}}}),
            [repr(NODE), "work.decode.ops['aten.mm'] is True"],
        ),
        (lambda d: _entry(d).update(work={"decode": []}), [repr(NODE), "work.decode is a list"]),
        (lambda d: _entry(d).update(work=[]), [repr(NODE), "work is a list"]),
    ],
)
def test_wrong_types_inside_a_file_are_refused_naming_test_and_field(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], Any], words: list[str]
) -> None:
    path = _file(tmp_path, mutate)
    _refused(path, *words)
    content = path.read_bytes()
    with pytest.raises(BaselineError):
        write(path, device=DEVICE, fingerprint={}, results=[_timed("t.py::a", 0.01, [0.01])])
    assert path.read_bytes() == content


def test_unknown_keys_are_tolerated(tmp_path: Path) -> None:
    def extra(d: dict[str, Any]) -> None:
        d["comment"] = "hand-edited"
        _entry(d)["owner"] = {"team": "perf"}
        _time(d)["note"] = "noisy runner"
        _time(d)["runs"][0]["when"] = "2026-01-01"

    assert load(_file(tmp_path, extra), KEY) is not None


def test_a_deeply_nested_file_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(path, "nested too deeply")
    # deep enough to parse, too deep to be a baseline (or for the next write's encoder)
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    _refused(
        _file(tmp_path, lambda d: _entry(d).update(params={"x": deep})), repr(NODE), "params.x"
    )
    _refused(_file(tmp_path, lambda d: d.update(fingerprint={"x": deep})), "nests deeper than")


# --------------------------------------------------------------------------- item 5: links


def test_a_symlinked_file_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    shared, here = tmp_path / "shared", tmp_path / "baselines"
    shared.mkdir()
    here.mkdir()
    target = shared / "b.json"
    write(target, device=DEVICE, fingerprint={}, results=[_timed("t.py::a", 0.01, [0.01])])
    link = here / "b.json"
    link.symlink_to(target)
    write(link, device=DEVICE, fingerprint={}, results=[_timed("t.py::b", 0.02, [0.02])])
    assert link.is_symlink() and link.resolve() == target
    assert set(json.loads(target.read_text())["tests"]) == {"t.py::a", "t.py::b"}
    assert sorted(p.name for p in here.iterdir()) == ["b.json"]
    assert sorted(p.name for p in shared.iterdir()) == ["b.json"]


@pytest.mark.parametrize("through_link", [False, True])
def test_a_read_only_file_is_left_untouched_with_a_clear_error(
    tmp_path: Path, through_link: bool
) -> None:
    target = tmp_path / "b.json"
    write(target, device=DEVICE, fingerprint={}, results=[_timed("t.py::a", 0.01, [0.01])])
    target.chmod(0o444)
    before = target.read_bytes()
    path = target
    if through_link:
        path = tmp_path / "link.json"
        path.symlink_to(target)
    with pytest.raises(BaselineError) as err:
        write(path, device=DEVICE, fingerprint={}, results=[_timed("t.py::a", 0.5, [0.5])])
    message = str(err.value)
    assert str(path) in message and "is read-only (mode 0444)" in message
    assert "left untouched" in message
    assert target.read_bytes() == before and target.stat().st_mode & 0o777 == 0o444
    assert not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------- item 11: temps


def test_a_write_removes_stale_temporaries_of_its_own_file_only(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write(path, device=DEVICE, fingerprint={}, results=[_timed("t.py::a", 0.01, [0.01])])
    # what a writer killed between mkstemp and rename leaves: the very name it makes
    fd, stale = tempfile.mkstemp(prefix=".b.json.", suffix=".tmp", dir=tmp_path)
    os.write(fd, b'{"half": ')
    os.close(fd)
    others = [".c.json.abcd1234.tmp", ".b.json.notes.tmp", ".b.json.abcd1234.tmp.keep", "b.tmp"]
    for name in others:
        (tmp_path / name).write_text("not ours")
    write(path, device=DEVICE, fingerprint={}, results=[_timed("t.py::b", 0.02, [0.02])])
    assert not Path(stale).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "b.json"])
    assert set(load(path, KEY).tests) == {"t.py::a", "t.py::b"}


# --------------------------------------------------------------------------- size


def _two_metrics(n: int) -> TestResult:
    ts = [0.0123456 + i * 1e-5 for i in range(n)]
    r = TestResult("t.py::a", tier="smoke", group="g", params={"batch": 1})
    r.add(
        Metric(
            "time",
            ts[n // 2],
            "s",
            higher_is_better=False,
            kind="time",
            samples=ts,
            tolerance=0.1,
            gated=False,
        )
    )
    r.add(
        Metric(
            "throughput",
            128 / ts[n // 2],
            "tokens/s",
            higher_is_better=True,
            kind="throughput",
            samples=[128 / t for t in ts],
        )
    )
    return r


def test_a_summary_is_stored_only_where_it_says_more_than_the_samples(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    write(path, device=DEVICE, fingerprint={}, results=[_two_metrics(3)])
    small = json.loads(path.read_text())["tests"]["t.py::a"]["metrics"]
    assert "summary" not in small["time"] and "summary" not in small["throughput"]
    assert len(small["time"]["runs"][0]["samples"]) == 3  # what the verdict reads is all there
    write(path, device=DEVICE, fingerprint={}, results=[_two_metrics(baselines.SUMMARY_ABOVE + 1)])
    large = json.loads(path.read_text())["tests"]["t.py::a"]["metrics"]
    assert large["time"]["summary"]["n"] == baselines.SUMMARY_ABOVE + 1


def test_an_entry_with_an_old_summary_judges_the_same(tmp_path: Path) -> None:
    """Files written before keep their summaries; no verdict reads them."""
    path = tmp_path / "b.json"
    write(path, device=DEVICE, fingerprint={}, results=[_two_metrics(5)])
    new = load(path, KEY).tests["t.py::a"]["metrics"]["time"]
    old = dict(new, summary={k: float(v) for k, v in baselines.summarize([0.01] * 5).items()})
    current = Metric(
        "time", 0.05, "s", higher_is_better=False, kind="time", samples=[0.05] * 5, tolerance=0.1
    )
    assert metric_samples(old) == metric_samples(new) and run_spread(old) == run_spread(new)
    assert decide_metric(current, old) == decide_metric(current, new)
    path.write_text(path.read_text().replace('"runs"', '"summary": {"n": 5.0}, "runs"', 1))
    assert load(path, KEY) is not None


# --------------------------------------------------------------------------- as users meet it

PROJECT = """
import os, time
import pytest

@pytest.mark.llmperf(warmup=0, rounds=5, drift_correction=False)
def test_time(llmperf):
    llmperf(time.sleep, 0.002 * float(os.environ.get("SLOW", "1")))
"""


def _machine_file(pytester: pytest.Pytester) -> Path:
    (path,) = (pytester.path / "baselines").glob("*.json")
    return path


def test_a_hostile_baseline_is_a_usage_error_naming_the_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN samples used to let a 5x slowdown pass; a binary file was an INTERNALERROR."""
    pytester.makepyfile(test_perf=PROJECT)
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
    path = _machine_file(pytester)
    good = json.loads(path.read_text())
    monkeypatch.setenv("SLOW", "5")
    nan = copy.deepcopy(good)
    time = nan["tests"]["test_perf.py::test_time"]["metrics"]["time"]
    time["runs"][0]["samples"] = [float("nan")] * 5
    wrong = copy.deepcopy(good)
    wrong["tests"]["test_perf.py::test_time"]["metrics"]["time"]["runs"] = "abc"
    cases = [
        (json.dumps(nan).encode(), "runs[0].samples[0] is nan"),
        (json.dumps(wrong).encode(), "runs is 'abc'"),
        (b"\x00\xff\xfe binary", "is not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ]
    for content, words in cases:
        path.write_bytes(content)
        result = pytester.runpytest("--llmperf")
        out = result.stdout.str() + result.stderr.str()
        assert result.ret == pytest.ExitCode.USAGE_ERROR, out
        assert str(path) in out and words in out, out
        assert "INTERNALERROR" not in out and "Traceback" not in out
        assert path.read_bytes() == content


def test_a_refresh_writes_through_a_link_and_respects_a_read_only_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_perf=PROJECT)
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
    path = _machine_file(pytester)
    shared = pytester.path / "shared" / path.name
    shared.parent.mkdir()
    path.rename(shared)
    path.symlink_to(shared)
    json_before = json.loads(shared.read_text())
    json_before["tests"]["test_perf.py::test_gone"] = json_before["tests"][
        "test_perf.py::test_time"
    ]
    shared.write_text(json.dumps(json_before))
    pytester.runpytest("--llmperf", "--llmperf-update-baselines").assert_outcomes(passed=1)
    assert path.is_symlink()  # the link stays, the shared file took the refresh
    assert "test_perf.py::test_gone" in json.loads(shared.read_text())["tests"]
    assert shared.read_text() == dumps(json.loads(shared.read_text()))  # the plugin wrote it
    shared.chmod(0o444)
    before = shared.read_bytes()
    result = pytester.runpytest("--llmperf", "--llmperf-update-baselines")
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*ERROR: *baseline file {path}*is read-only (mode 0444)*"])
    assert shared.read_bytes() == before and path.is_symlink()
