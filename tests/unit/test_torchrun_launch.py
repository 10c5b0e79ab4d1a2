"""``llmperf.torchrun(n)``: an ordinary session launches a test's ranks under torchrun
(real processes, gloo over loopback) and takes rank 0's result as the test's own.

One pytester session holds three tests, each launching 2 ranks: one that works
(rank 1 is 3x slower: the adopted time is the slowest rank's, and the session,
not a rank, writes the baseline), one where rank 1 hangs in its third call (the
test fails within the timeout naming rank 1 and where it hung, while rank 0
waited in a collective), and one where rank 1 dies (named from torchrun's
summary). The failed tests leave no entry in the baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

#: Seconds per call on each rank: rank 1 is 3x slower.
DELAY = {0: 0.01, 1: 0.03}

MODULE = f"""
import datetime
import os
import time

import pytest
import torch
import torch.distributed as dist

from pytest_llmperf.measure import distributed

DELAY = {DELAY!r}


def ranks(llmperf, fault):
    # The short timeout for the hang only: two ranks took 8 s to start at load 6 on 2 cores.
    timeout = float(os.environ.get("HANG_TIMEOUT", "60")) if fault == "hang" else 120.0
    if llmperf.torchrun(2, timeout=timeout):
        return
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank, calls = dist.get_rank(), [0]
    # How many calls run is rank 0's decision on every rank (adaptive rounds, warm-up).
    assert distributed.same_on_all(rank + 5) == 5

    def step():
        calls[0] += 1
        if rank == 1 and calls[0] == 3:
            if fault == "hang":
                time.sleep(1000)
            if fault == "die":
                os._exit(9)
        time.sleep(DELAY[rank])
        y = torch.ones(4)
        dist.all_reduce(y)
        return y

    llmperf(step)
    dist.destroy_process_group()


@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False, work=False)
def test_ok(llmperf):
    ranks(llmperf, None)


@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False, work=False)
def test_hang(llmperf):
    ranks(llmperf, "hang")


@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False, work=False)
def test_die(llmperf):
    ranks(llmperf, "die")
"""


def _processes_running(text: str) -> list[str]:
    """Command lines of this machine's processes that contain ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if entry.name.isdigit() and text in cmdline:
            found.append(cmdline)
    return found


def test_ranks_launched_from_an_ordinary_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_ranked=MODULE)
    monkeypatch.setenv("HANG_TIMEOUT", "18")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--llmperf", "--llmperf-update-baselines",
        "--llmperf-report=report.json", "--llmperf-threads=1",
    )  # fmt: skip
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=2)

    # The hang: named rank, where it hung, the rank that waited for it, within the timeout.
    hang = out.split("test_hang ___", 1)[1].split("test_die ___", 1)[0]
    assert "did not finish within 18 s" in hang, hang
    assert "hung: rank 1 (measuring" in hang and 'test_ranked.py", line ' in hang, hang
    assert "in step" in hang.split("rank 1 stack", 1)[1], hang
    assert "waiting for it in a collective: rank 0" in hang, hang
    # No rank outlives its test (torchrun starts each in a session of its own).
    assert not _processes_running("test_ranked.py::test_hang"), "a hung rank was left running"
    # The death: rank 1 named (torchrun's root cause).
    die = out.split("test_die ___", 1)[1].split("short test summary", 1)[0]
    assert "rank 1 died" in die, die

    # The working test: rank 0's result, with the slowest rank's time, written by the
    # session; the failed tests wrote nothing.
    (path,) = (pytester.path / "baselines").glob("*.json")
    tests = json.loads(path.read_text())["tests"]
    assert list(tests) == ["test_ranked.py::test_ok"], list(tests)
    time_metric = tests["test_ranked.py::test_ok"]["metrics"]["time"]
    samples = [x for run in time_metric["runs"] for x in run["samples"]]
    assert len(samples) == 5 and min(samples) >= DELAY[1] * 0.9, samples
    report = json.loads((pytester.path / "report.json").read_text())
    (ok,) = [r for r in report["results"] if r["nodeid"].endswith("test_ok")]
    assert ok["params"]["ranks"] == 2
