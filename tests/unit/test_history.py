"""``--llmperf-history``: real pytest runs appending to a history in a real git repository,
the history gate failing a test whose work stepped and passing it once acknowledged, the
``history`` command's text, JSON and page, and a history that cannot be read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitproject import git

from pytest_llmperf.history import cli, store
from pytest_llmperf.history.page import render

TEST_FILE = """
import json
from pathlib import Path

import pytest
import torch

ROWS = json.loads((Path(__file__).parent / "knobs.json").read_text())["rows"]


@pytest.mark.llmperf(rounds=3, warmup=1)
def test_mm(llmperf):
    a, b = torch.ones(ROWS, 32), torch.ones(32, 32)
    llmperf(torch.mm, a, b)


@pytest.mark.llmperf(rounds=3, warmup=1)
def test_flat(llmperf):
    a = torch.ones(16, 32)
    llmperf(torch.mm, a, a.T)
"""


def commit_rows(root: Path, rows: int) -> str:
    """A commit whose test multiplies ``rows`` rows; its hash."""
    (root / "knobs.json").write_text(json.dumps({"rows": rows}))
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", f"rows {rows}")
    return git(root, "rev-parse", "HEAD").strip()


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    root = pytester.path
    (root / "test_hist.py").write_text(TEST_FILE)
    git(root, "init", "-q")
    return root


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A measured run appending to ``hist``; the work gate deciding, as on a shared runner
    (microsecond timings of three rounds would make the history of time noise)."""
    opts = ("--llmperf", "--llmperf-history=hist", "--llmperf-gate=work", "-p", "no:cacheprovider")
    return pytester.runpytest(*opts, *args)


def runs(root: Path) -> list[dict]:
    return store.read(root / "hist").runs


def test_each_run_appends_one_record_with_its_commit_and_machine(
    pytester: pytest.Pytester, project: Path
) -> None:
    sha = commit_rows(project, 64)
    run(pytester).assert_outcomes(passed=2)
    (project / "knobs.json").write_text(json.dumps({"rows": 64, "edited": True}))
    run(pytester).assert_outcomes(passed=2)
    git(project, "checkout", "--", "knobs.json")
    run(pytester).assert_outcomes(passed=2)
    first, second, third = runs(project)
    assert first["run"]["commit"] == sha and first["run"]["dirty"] is False
    assert second["run"]["dirty"] is True  # a tracked file differed from the commit
    assert third["run"]["dirty"] is False  # the history directory itself is untracked
    assert first["run"]["machine"] and first["run"]["context"].startswith("cpu")
    assert first["run"]["versions"]["torch"]
    mm = first["tests"]["test_hist.py::test_mm"]["metrics"]
    assert mm["work.flops"]["value"] == 2 * 64 * 32 * 32
    assert mm["time"]["n"] == 3 and mm["time"]["kind"] == "time"


def test_the_history_gate_fails_a_step_in_work_names_its_commit_and_stops_once_acknowledged(
    pytester: pytest.Pytester, project: Path
) -> None:
    for _ in range(4):
        commit_rows(project, 64)
        run(pytester).assert_outcomes(passed=2)
    stepped = commit_rows(project, 96)
    result = run(pytester, "--llmperf-history-gate")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "REGRESSION history: work.flops" in out and "(+50.0%, tolerance 0%)" in out
    assert f"a step at commit {stepped[:8]}" in out
    assert "test_flat" not in out.split("short test summary")[-1]
    hint = f"history ack {project / 'hist'} --test 'test_hist.py::test_mm'"
    assert hint in out
    assert cli.main(["ack", str(project / "hist"), "--test", "test_hist.py::test_mm",
                     "--commit", stepped[:12], "--reason", "bigger batch"]) == 0  # fmt: skip
    run(pytester, "--llmperf-history-gate").assert_outcomes(passed=2)
    # once accepted, the next step fails again
    commit_rows(project, 128)
    run(pytester, "--llmperf-history-gate").assert_outcomes(passed=1, failed=1)


def test_the_gate_looks_at_its_window_and_a_regression_undone_fails_nothing(
    pytester: pytest.Pytester, project: Path
) -> None:
    commit_rows(project, 64)
    run(pytester).assert_outcomes(passed=2)
    commit_rows(project, 96)
    for _ in range(3):
        run(pytester).assert_outcomes(passed=2)
    run(pytester, "--llmperf-history-gate").assert_outcomes(passed=1, failed=1)
    # the step is 4 runs back: a window of the last 3 (and this run) no longer has it
    run(pytester, "--llmperf-history-gate", "--llmperf-history-window=3").assert_outcomes(passed=2)
    commit_rows(project, 64)  # reverted: this run is back where it was
    run(pytester, "--llmperf-history-gate").assert_outcomes(passed=2)


def test_work_series_are_kept_per_dispatch_context_and_time_per_machine() -> None:
    """Two runs of one machine under two torch versions: one time series, two work series
    (another context's counts may differ with no change of code)."""
    from pytest_llmperf.history.series import collect, run_record
    from pytest_llmperf.metrics import Kind, Metric
    from pytest_llmperf.results import TestResult

    records = []
    for torch_version in ("2.12.0", "2.13.0"):
        result = TestResult("t.py::test", tier="smoke")
        result.add(Metric("time", 0.01, "s", kind=Kind.TIME, samples=[0.01, 0.011]))
        result.add(Metric("work.ops", 10.0, "", kind=Kind.WORK))
        dispatch = {"device_type": "cpu", "cpu_capability": "AVX2", "torch": torch_version}
        records.append(run_record([result], git={"commit": None, "dirty": None, "branch": None}, machine="cpu-x",
                                  device="x", dispatch=dispatch, fingerprint={},
                                  tier="smoke"))  # fmt: skip
    series = collect(records)
    by_metric: dict[str, list] = {}
    for s in series.values():
        by_metric.setdefault(s.metric, []).append(len(s.points))
    assert by_metric == {"time": [2], "work.ops": [1, 1]}
    assert records[0]["tests"]["t.py::test"]["metrics"]["time"]["std"] > 0


def test_an_improvement_in_history_does_not_fail(pytester: pytest.Pytester, project: Path) -> None:
    for _ in range(3):
        commit_rows(project, 96)
        run(pytester).assert_outcomes(passed=2)
    commit_rows(project, 64)
    run(pytester, "--llmperf-history-gate").assert_outcomes(passed=2)


def test_the_history_command_shows_steps_as_text_json_and_plots(
    pytester: pytest.Pytester, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shas = []
    for rows in (64, 64, 64, 96, 96, 96):
        shas.append(commit_rows(project, rows))
        run(pytester).assert_outcomes(passed=2)
    capsys.readouterr()
    out_json, out_html = project / "h.json", project / "h.html"
    args = [str(project / "hist"), "--json", str(out_json), "--html", str(out_html)]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert f"step  at {shas[3][:8]} (run 4)" in text and "regression" in text
    data = json.loads(out_json.read_text())
    flops = next(
        s for s in data["series"] if s["metric"] == "work.flops" and s["test"].endswith("mm")
    )
    assert flops["exact"] and [(c["kind"], c["commit"]) for c in flops["changes"]] == [
        ("step", shas[3])
    ]
    flat = [s for s in data["series"] if s["test"].endswith("flat") and s["metric"] == "work.flops"]
    assert flat and flat[0]["changes"] == []
    page = out_html.read_text()
    assert page.count("<svg") == len(data["series"]) and 'class="step"' in page
    assert cli.main([str(project / "hist"), "--metric", "work.ops"]) == 0
    assert "work.flops" not in capsys.readouterr().out


def test_a_corrupt_history_file_is_said_by_name_and_never_overwritten(
    pytester: pytest.Pytester, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = commit_rows(project, 64)
    run(pytester).assert_outcomes(passed=2)
    bad = project / "hist" / "runs" / "20260101T000000.000000Z-deadbeef-0000.json"
    bad.write_text('{"schema": "pytest-llmperf-history", "schema_versi')
    before = bad.read_bytes()
    assert cli.main([str(project / "hist")]) == 2
    assert f"{bad} is not valid JSON" in capsys.readouterr().err
    gated = run(pytester, "--llmperf-history-gate")
    assert gated.ret == pytest.ExitCode.USAGE_ERROR
    assert str(bad) in gated.stderr.str()
    ack = ["ack", str(project / "hist"), "--test", "test_hist.py::test_mm", "--commit", sha]
    assert cli.main(ack) == 2
    run(pytester).assert_outcomes(passed=2)  # appending reads nothing: a new file
    assert bad.read_bytes() == before
    assert len(list((project / "hist" / "runs").glob("*.json"))) == 3
    assert not list((project / "hist" / "acks").glob("*"))


def test_an_acknowledgement_names_a_commit_of_that_test(
    pytester: pytest.Pytester, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = commit_rows(project, 64)
    run(pytester).assert_outcomes(passed=2)
    hist = str(project / "hist")
    assert cli.main(["ack", hist, "--test", "test_hist.py::test_mm", "--commit", "abc"]) == 2
    assert "7 hex digits" in capsys.readouterr().err
    assert cli.main(["ack", hist, "--test", "test_hist.py::nope", "--commit", sha]) == 2
    assert "no run of 'test_hist.py::nope'" in capsys.readouterr().err
    assert cli.main(["ack", hist, "--test", "test_hist.py::test_mm", "--commit", sha]) == 0


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--llmperf-history-gate"], "--llmperf-history=DIR"),
        (["--llmperf-history=h", "--llmperf-history-window=2"], "--llmperf-history-window"),
    ],
)
def test_history_options_are_checked(pytester: pytest.Pytester, args: list[str], said: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--llmperf", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert said in result.stderr.str()


APPENDER = """
import sys, time
from pytest_llmperf.history import store
directory, who, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
for i in range(25):
    store.append_run(directory, {
        "schema": store.SCHEMA, "schema_version": store.SCHEMA_VERSION,
        "run": {"epoch": start, "commit": "c" * 40},
        "tests": {f"t{who}-{i}": {"metrics": {}}},
    })
"""


def test_runners_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    """Four processes (no torch in them) append 25 runs each from the same instant, every
    record with the same time and commit, so only the random part tells their files apart:
    all 100 are read back, and no temporary file is left."""
    start = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), str(w), str(start)])
        for w in range(4)
    ]
    assert [p.wait(120) for p in procs] == [0] * 4
    got = store.read(tmp_path).runs
    assert len(got) == 100 and len({next(iter(r["tests"])) for r in got}) == 100
    assert sorted(os.listdir(tmp_path / "runs")) == sorted(r["file"] for r in got)


@pytest.mark.multiprocess
def test_two_pytest_runs_appending_to_one_history_at_once_both_land(
    pytester: pytest.Pytester, project: Path
) -> None:
    commit_rows(project, 64)
    cmd = [sys.executable, "-m", "pytest", "--llmperf", "--llmperf-history=hist", "-q"]
    procs = [subprocess.Popen(cmd, cwd=project) for _ in range(2)]
    assert [p.wait(300) for p in procs] == [0, 0]
    assert len(runs(project)) == 2


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    return found


def test_the_history_page_shows_its_plots_in_a_real_browser(tmp_path: Path) -> None:
    """The page in headless Chromium (playwright, Debian's browser): one drawn plot per
    series, with its points and its step marked, on screen."""
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "no Chromium or no playwright here (apt install chromium; pip install playwright)"
        )
    from playwright.sync_api import sync_playwright

    def series(name: str, values: list[float], changes: list[dict]) -> dict:
        pts = [{"commit": f"{i:040x}", "dirty": False, "epoch": i, "value": v, "std": 0.0}
               for i, v in enumerate(values)]  # fmt: skip
        return {"test": f"t.py::{name}", "metric": "time", "where": "cpu", "tier": "smoke",
                "unit": "s", "kind": "time", "higher_is_better": False, "tolerance": 0.1,
                "gated": True, "noise": 0.02, "exact": False, "why_not": "", "points": pts,
                "changes": changes}  # fmt: skip

    step = {"kind": "step", "index": 5, "end_index": 5, "commit": f"{5:040x}", "end_commit":
            f"{5:040x}", "epoch": 5, "before": 1.0, "after": 1.2, "change": 0.2,
            "regression": True, "acknowledged": False}  # fmt: skip
    data = {"directory": "hist", "series": [series("a", [1.0] * 5 + [1.2] * 5, [step]),
                                            series("b", [1.0] * 10, [])]}  # fmt: skip
    page = tmp_path / "history.html"
    page.write_text(render(data))
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=flags)
        tab = browser.new_page()
        tab.goto(page.as_uri())
        plots = tab.locator("section.series svg")
        assert plots.count() == 2
        box = plots.first.bounding_box()
        assert box is not None and box["width"] > 500 and box["height"] > 150
        assert tab.locator("section.series").first.locator("circle.run").count() == 10
        assert tab.locator("line.step").count() == 1
        shot = tmp_path / "history.png"
        tab.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000


def test_the_history_gate_and_command_name_the_extra_they_need(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ruptures", None)  # as if not installed
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--llmperf", "--llmperf-history=h", "--llmperf-history-gate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pip install 'pytest-llmperf[history]'" in result.stderr.str()
    assert cli.main([str(pytester.path)]) == 2
    assert "pip install 'pytest-llmperf[history]'" in capsys.readouterr().err
    pytester.runpytest("--llmperf", "--llmperf-history=h").assert_outcomes(passed=1)


def test_a_change_most_tests_share_at_the_same_runs_is_said_to_be_the_machines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four tests of one machine: three slow down together at run 6 (a spell of load), one
    alone at run 3 (its code). Asked for one test only, the shared change still counts the
    others; the lone one is shared by none."""
    for i in range(12):
        slow = 1.7 if i >= 6 else 1.0
        levels = {"a": slow, "b": slow, "c": slow, "d": 1.3 if i >= 3 else 1.0}
        tests = {}
        for k, (name, level) in enumerate(levels.items()):
            v = level * (1 + 0.01 * ((i * 7 + k) % 5 - 2))  # noise: not exact
            metric = {"value": v, "min": v, "unit": "s", "kind": "time",
                      "higher_is_better": False, "tolerance": 0.1, "gated": True}  # fmt: skip
            tests[f"t.py::{name}"] = {"tier": "smoke", "metrics": {"time": metric}}
        run = {"epoch": float(i), "commit": f"{i:040x}", "machine": "m", "tier": "smoke"}
        record = {"schema": store.SCHEMA, "schema_version": store.SCHEMA_VERSION}
        store.append_run(tmp_path, {**record, "run": run, "tests": tests})
    out = tmp_path / "h.json"
    assert cli.main([str(tmp_path), "--test", "::a", "--test", "::d", "--json", str(out)]) == 0
    said = capsys.readouterr().out
    by_test = {s["test"][-1]: s["changes"] for s in json.loads(out.read_text())["series"]}
    assert [(c["index"], c["shared_with"], c["shared_of"]) for c in by_test["a"]] == [(6, 2, 3)]
    assert [(c["index"], c["shared_with"]) for c in by_test["d"]] == [(3, 0)]
    assert "2 of 3 other tests moved the same way at these runs: the machine?" in said


def test_a_timed_regression_fails_while_each_of_its_last_three_runs_is_past_it() -> None:
    """A spell of load over the last two runs is not yet a regression to fail on; three runs
    past the tolerance are. Counted work fails on its first run, and an undone one on none."""
    from pytest_llmperf.history.changes import Change
    from pytest_llmperf.history.recorder import _still

    step = Change("step", 10, 10, 1.0, 1.2, True)
    assert not _still(step, [1.0] * 10 + [1.2, 1.2], 0.1, exact=False)
    assert _still(step, [1.0] * 10 + [1.2, 1.2, 1.2], 0.1, exact=False)
    assert not _still(step, [1.0] * 10 + [1.2, 1.2, 1.2, 1.0], 0.1, exact=False)
    assert _still(step, [1.0] * 10 + [1.2], 0.0, exact=True)
    assert not _still(step, [1.0] * 10 + [1.2, 1.0], 0.0, exact=True)


def test_a_record_json_cannot_hold_is_an_error_that_writes_nothing(tmp_path: Path) -> None:
    record = {"run": {"epoch": 1.0, "commit": None, "odd": object()}, "tests": {}}
    with pytest.raises(store.HistoryError, match="cannot be written as JSON"):
        store.append_run(tmp_path, record)
    assert not list((tmp_path / "runs").iterdir())
