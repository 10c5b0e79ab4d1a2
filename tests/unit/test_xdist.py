"""pytest-xdist: ``-n 2`` loses no baseline entry, never overlaps perf tests on one
device, and the controller's report and exports hold every test.

Real pytest runs of the plugin in subprocesses (xdist starts its own workers).
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

pytest.importorskip("xdist")

N_TESTS = 6
TIMEOUT = 240

CONFTEST = """
import os
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_finish(session):
    # Make the workers start measuring together, so that without the per-device lock
    # their measured intervals would surely intersect (bounded: never hangs). A hook,
    # not a fixture: a performance test holds the lock from its set-up on, so a fixture
    # that waited here for the other worker would wait for a lock this one holds.
    ready = HERE / "ready"
    ready.mkdir(exist_ok=True)
    (ready / os.environ.get("PYTEST_XDIST_WORKER", "main")).touch()
    deadline = time.monotonic() + 60
    while len(list(ready.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the other xdist worker never started")
        time.sleep(0.01)
"""

MODULE = f"""
import json
import os
import time
from pathlib import Path

import pytest

DELAY = float(os.environ.get("LLMPERF_TEST_DELAY", "0.02"))
STAMPS = Path(__file__).parent / "stamps"


# 300%: a 20 ms sleep overran by up to 12 ms (+60%) at load 6 on 2 cores, never by 60 ms.
@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False, tolerance="300%")
@pytest.mark.parametrize("i", range({N_TESTS}))
def test_perf(llmperf, i):
    calls = []

    def work():
        start = time.monotonic()
        time.sleep(DELAY)
        calls.append([start, time.monotonic()])

    llmperf(work)
    STAMPS.mkdir(exist_ok=True)
    (STAMPS / f"{{i}}.json").write_text(
        json.dumps({{"worker": os.environ.get("PYTEST_XDIST_WORKER"), "calls": calls}})
    )


def test_not_a_perf_test():
    assert True
"""

NODEIDS = [f"test_xd.py::test_perf[{i}]" for i in range(N_TESTS)]

# Scenario params such as a torch.dtype reach the controller's baseline file (every
# worker sends its reports through execnet).
PARAMS_MODULE = """
import time
import pytest
import torch

@pytest.mark.llmperf(warmup=1, rounds=3, drift_correction=False, tolerance="300%")
def test_params(llmperf):
    llmperf.params(dtype=torch.bfloat16, device=torch.device("cpu"), shape=(2, 3))
    llmperf(time.sleep, 0.005)
"""
PARAMS_ID = "test_params_mod.py::test_params"
EVERY = sorted([*NODEIDS, PARAMS_ID])


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_xd=MODULE, test_params_mod=PARAMS_MODULE)
    # The per-device lock lives in the temp dir: keep it private to this project.
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("LLMPERF_DEVICE", raising=False)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    for d in ("ready", "stamps"):
        for f in (pytester.path / d).glob("*"):
            f.unlink()
    return pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--llmperf", *args, timeout=TIMEOUT
    )


def _baseline(pytester: pytest.Pytester) -> tuple[Path, dict]:
    files = list((pytester.path / "baselines").glob("*.json"))
    assert len(files) == 1, files
    return files[0], json.loads(files[0].read_text())


def _assert_no_overlap(pytester: pytest.Pytester) -> None:
    """The measured interval of each test (first call start .. last call end):
    intervals of tests that ran on different workers never intersect."""
    stamps = [json.loads(p.read_text()) for p in (pytester.path / "stamps").glob("*.json")]
    assert len(stamps) == N_TESTS
    workers = {s["worker"] for s in stamps}
    assert len(workers) == 2, f"both workers should have run perf tests, got {workers}"
    spans = [(s["worker"], s["calls"][0][0], s["calls"][-1][1]) for s in stamps]
    for (w1, s1, e1), (w2, s2, e2) in combinations(spans, 2):
        if w1 != w2:
            assert e1 <= s2 or e2 <= s1, (
                f"perf tests overlapped on one device: {w1} [{s1:.3f}, {e1:.3f}] "
                f"and {w2} [{s2:.3f}, {e2:.3f}]"
            )


@pytest.mark.multiprocess
def test_xdist_baselines_verdicts_and_exports(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester = project
    # 1. Record under -n 2: every entry lands in the one baseline file.
    rec = _run(pytester, "--llmperf-update-baselines")
    assert "INTERNALERROR" not in rec.stdout.str() + rec.stderr.str()
    rec.assert_outcomes(passed=N_TESTS + 2)
    path, data = _baseline(pytester)
    assert sorted(data["tests"]) == EVERY
    for nodeid in NODEIDS:
        assert data["tests"][nodeid]["status"] == "ok"
        assert 0.015 < data["tests"][nodeid]["metrics"]["time"]["value"] < 0.5
    params = data["tests"][PARAMS_ID]["params"]
    assert params == {"dtype": "torch.bfloat16", "device": "cpu", "shape": [2, 3]}
    rec.stdout.fnmatch_lines([f"wrote {N_TESTS + 1} entries into *{path.name}"])
    _assert_no_overlap(pytester)

    # 2. Compare under -n 2: all pass; the controller's exports hold every test.
    rec = _run(
        pytester,
        "--llmperf-report=report.json",
        "--llmperf-benchmark-json=bench.json",
        "--llmperf-bmf=bmf.json",
    )
    rec.assert_outcomes(passed=N_TESTS + 2)
    rec.stdout.fnmatch_lines([f"{N_TESTS + 1} pass"])
    _assert_no_overlap(pytester)
    report = json.loads((pytester.path / "report.json").read_text())
    assert sorted(r["nodeid"] for r in report["results"]) == EVERY
    assert {r["verdict"] for r in report["results"]} == {"pass"}
    bench = json.loads((pytester.path / "bench.json").read_text())
    assert sorted(b["fullname"] for b in bench["benchmarks"]) == EVERY
    bmf = json.loads((pytester.path / "bmf.json").read_text())
    assert len(bmf) == N_TESTS + 1
    assert path.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"  # untouched

    # 3. A -k subset refresh (5x slower now) rewrites its entries and keeps the others:
    # at least 100 ms against 32 ms at most (a 20 ms sleep overran by up to 12 ms).
    monkeypatch.setenv("LLMPERF_TEST_DELAY", "0.1")
    rec = _run(pytester, "--llmperf-update-baselines", "-k", "test_perf[0] or test_perf[1]")
    rec.assert_outcomes(passed=2)  # (the xdist controller does not count deselections)
    _, refreshed = _baseline(pytester)
    assert sorted(refreshed["tests"]) == EVERY
    for nodeid in NODEIDS[:2]:
        old = data["tests"][nodeid]["metrics"]["time"]["value"]
        new = refreshed["tests"][nodeid]["metrics"]["time"]["value"]
        assert new > 2 * old, (nodeid, old, new)
    for nodeid in [*NODEIDS[2:], PARAMS_ID]:
        assert refreshed["tests"][nodeid] == data["tests"][nodeid]
