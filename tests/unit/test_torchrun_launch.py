"""``llmperf.torchrun(n)``: an ordinary session launches a test's ranks under torchrun
(real processes, gloo over loopback) and takes rank 0's result as the test's own.

Three tests launch 2 ranks each: one that works (rank 1 is 3x slower: the adopted
time is the slowest rank's, and the session, not a rank, writes the baseline), one
where rank 1 hangs in its third call (the test fails within the timeout naming rank
1 and where it hung, while rank 0 waited in a collective), and one where rank 1 dies
(named from torchrun's summary). The failed tests leave no entry in the baseline.
The hang runs in a session of its own, beside the other two once its ranks are idle
in the hang: the 18 s it waits is no longer added to theirs. A fourth launch has a
rank exit 0 before reporting (named within seconds, not at the timeout). Each launch
leaves the temp dir as it found it (torchrun's ``torchelastic_*`` log directory was
left behind per launch). The bound on n and a second call in one test are checked
without launching anything (the launch is replaced by one that records it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_llmperf import torchrun

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
                open("hanging", "w").close()  # the ranks are idle from now on
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


def _processes_running(*texts: str) -> list[str]:
    """Command lines of this machine's processes that contain every one of ``texts``
    (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if entry.name.isdigit() and all(text in cmdline for text in texts):
            found.append(cmdline)
    return found


def _private_temp_dir(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp dir for this test's launches alone (torchrun and the ranks take ``TMPDIR``,
    this process ``tempfile.tempdir``), so that other sessions on the machine cannot add
    to its listing; empty."""
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    assert tempfile.gettempdir() == str(path)
    return path


@pytest.mark.multiprocess
def test_ranks_launched_from_an_ordinary_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_ranked=MODULE)
    temp = _private_temp_dir(pytester.path / "temp", monkeypatch)
    monkeypatch.setenv("HANG_TIMEOUT", "18")
    # The hang in a session of its own (its own baselines, so the two sessions never write
    # one file); the others run once its ranks are idle in the hang, not slowing its start.
    with open(pytester.path / "hang.out", "wb") as hang_out:
        hang_session = pytester.popen(
            [sys.executable, "-m", "pytest", "test_ranked.py::test_hang",
             "-p", "no:cacheprovider", "--llmperf", "--llmperf-update-baselines",
             "--llmperf-baselines=hang-baselines", "--llmperf-threads=1"],
            stdout=hang_out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            waited = time.monotonic()
            while not (pytester.path / "hanging").exists() and time.monotonic() - waited < 60:
                if hang_session.poll() is not None:
                    break
                time.sleep(0.1)
            result = pytester.runpytest(
                "-p", "no:cacheprovider", "--llmperf", "--llmperf-update-baselines",
                "--llmperf-report=report.json", "--llmperf-threads=1", "-k", "not test_hang",
            )  # fmt: skip
            hang_session.wait(timeout=120)
        finally:
            if hang_session.poll() is None:
                hang_session.kill()
                hang_session.wait()
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=1, deselected=1)

    # The hang: named rank, where it hung, the rank that waited for it, within the timeout.
    hang = (pytester.path / "hang.out").read_text()
    assert "test_hang ___" in hang, hang
    hang = hang.split("test_hang ___", 1)[1]
    assert "did not finish within 18 s" in hang, hang
    assert "hung: rank 1 (measuring" in hang and 'test_ranked.py", line ' in hang, hang
    assert "in step" in hang.split("rank 1 stack", 1)[1], hang
    assert "waiting for it in a collective: rank 0" in hang, hang
    # No rank outlives its test (torchrun starts each in a session of its own).
    # This run's ranks only: the same test run elsewhere on the machine is not ours.
    assert not _processes_running("test_ranked.py::test_hang", str(pytester.path)), (
        "a hung rank was left running"
    )
    assert not list((pytester.path / "hang-baselines").glob("*.json")), "the hang wrote"
    # The death: rank 1 named (torchrun's root cause).
    die = out.split("test_die ___", 1)[1].split("short test summary", 1)[0]
    assert "rank 1 died" in die, die
    # Nothing of the three launches is left in the temp dir (torchelastic_* included).
    assert sorted(p.name for p in temp.iterdir()) == [], list(temp.iterdir())

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


EXITS_MODULE = """
import os

import pytest
import torch.distributed as dist


@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False, work=False)
def test_exits(llmperf, capfd):
    if llmperf.torchrun(2, timeout=90):
        return
    if os.environ["RANK"] == "1":
        with capfd.disabled():
            print("rank 1: leaving without a word", flush=True)
        os._exit(0)  # status 0: no failure to torchrun, and no result
    dist.init_process_group("gloo")  # rank 0 waits here for rank 1, which never comes
"""


@pytest.mark.multiprocess
def test_rank_exiting_0_before_reporting_is_named_within_seconds(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 1 calls ``os._exit(0)``: torchrun takes that for success and waits on, rank 0
    waits for it in the rendezvous, and the launcher used to wait out the whole timeout
    (then called rank 1 hung). Now it names rank 1 a few seconds after it left, with the
    end of its log, stops rank 0, and leaves the temp dir as it found it."""
    pytester.makepyfile(test_exits=EXITS_MODULE)
    temp = _private_temp_dir(pytester.path / "temp", monkeypatch)
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider", "--llmperf", "--llmperf-threads=1")
    took = time.monotonic() - started
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "test_exits.py::test_exits: rank 1 exited before reporting (started)" in out, out
    assert "--- rank 1 stdout (end) ---\nrank 1: leaving without a word" in out, out
    assert "did not finish within" not in out, out
    assert took < 60, f"{took:.0f} s: the exit was noticed only at the timeout (90 s)"
    assert not _processes_running("test_exits.py::test_exits", str(pytester.path)), (
        "rank 0 was left running"
    )
    assert sorted(p.name for p in temp.iterdir()) == [], list(temp.iterdir())


#: Stands in for torchrun (argv: the launch's directory, the test): writes what two ranks
#: would have when rank 1 left with ``os._exit(0)`` after the last collective (rank 0
#: finished and wrote its result, rank 1 never said "finished"), then exits 0 as torchrun
#: does when every rank exited 0.
FAKE_TORCHRUN = """
import json, subprocess, sys
from pathlib import Path

work, nodeid = Path(sys.argv[1]), sys.argv[2]
rank1 = subprocess.Popen([sys.executable, "-c", "pass"])
rank1.wait()  # its pid: a process that no longer exists
states = {0: {"pid": 1, "state": "finished"}, 1: {"pid": rank1.pid, "state": "tested"}}
for r, state in states.items():
    (work / "state" / f"rank{r}.json").write_text(json.dumps({"rank": r, **state}))
(work / "rank0.json").write_text(json.dumps({"results": [{"nodeid": nodeid, "metrics": {}}]}))
log = work / "logs" / "run_0" / "attempt_0" / "1" / "stdout.log"
log.parent.mkdir(parents=True)
log.write_text("rank 1: leaving without a word\\n")
"""


def test_rank_exiting_0_after_the_others_is_no_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every rank exits 0, torchrun does too, one rank may still have left without
    reporting (``os._exit(0)`` at the end of the test: its outcome unknown); rank 0's
    result used to be taken then. A stand-in for torchrun (no ranks, no torch) writes
    what the ranks would have."""
    monkeypatch.setattr(
        torchrun,
        "_command",
        lambda config, nodeid, nproc, tier, work: [
            sys.executable, "-c", FAKE_TORCHRUN, str(work), nodeid
        ],
    )  # fmt: skip
    config = SimpleNamespace(rootpath=tmp_path)
    with pytest.raises(torchrun.RankFailure) as failed:
        torchrun.launch(config, "test_x.py::test_x", 2, "smoke", 60.0)  # type: ignore[arg-type]
    text = str(failed.value)
    assert text.startswith(
        "llmperf.torchrun: test_x.py::test_x: rank 1 exited before reporting (tested): "
        "no result, and no failure to torchrun (exit status 0)"
    ), text
    assert text.endswith("--- rank 1 stdout (end) ---\nrank 1: leaving without a word"), text


class _LaunchRecorder:
    """Stands in for the launch (``torchrun._launch``): records how many ranks each call
    asked for and returns an empty rank-0 result, or fails, as ``fail`` says."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.nprocs: list[int] = []

    def __call__(
        self, config: pytest.Config, nodeid: str, nproc: int, *args: object
    ) -> dict[str, object]:
        self.nprocs.append(nproc)
        if self.fail:
            raise torchrun.RankFailure(f"launched {nproc} ranks")
        return {"nodeid": nodeid, "metrics": {}}


def _call_reports(pytester: pytest.Pytester, module: str) -> dict[str, pytest.TestReport]:
    """Run ``module`` in an inner session; the report of each test's call (or of its setup,
    when that did not pass), by test name."""
    pytester.makepyfile(test_calls=module)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "--llmperf")
    reports = {}
    for r in reprec.getreports("pytest_runtest_logreport"):
        if r.when == "call" or (r.when == "setup" and not r.passed):
            reports[r.nodeid.split("::", 1)[1]] = r
    return reports


BOUNDS_MODULE = f"""
import pytest

CASES = {{"huge": 10**20, "over_cap": {torchrun.MAX_CPU_RANKS + 1}, "zero": 0, "negative": -2,
         "bool": True, "float": 2.0, "str": "2"}}


@pytest.mark.llmperf(rounds=1)
@pytest.mark.parametrize("case", list(CASES))
def test_refused(llmperf, case):
    llmperf.torchrun(CASES[case])


@pytest.mark.llmperf(rounds=1)
def test_at_cap(llmperf):
    llmperf.torchrun({torchrun.MAX_CPU_RANKS})
"""


def test_nproc_out_of_bounds_is_refused_before_anything_launches(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``llmperf.torchrun(10**20)`` once ran the launcher to 22 GB and the OOM killer: on
    the CPU n is capped (``MAX_CPU_RANKS``), and n < 1 or not an int is an error, each
    naming the test and the value, before a launch. The cap itself is launched."""
    launches = _LaunchRecorder(fail=True)
    monkeypatch.setattr(torchrun, "_launch", launches)
    reports = _call_reports(pytester, BOUNDS_MODULE)
    cap = torchrun.MAX_CPU_RANKS
    expected = {
        "huge": f"nproc=100000000000000000000 is more ranks than the {cap} launched on the CPU",
        "over_cap": f"nproc={cap + 1} is more ranks than the {cap} launched on the CPU",
        "zero": "nproc must be an int >= 1, got 0",
        "negative": "nproc must be an int >= 1, got -2",
        "bool": "nproc must be an int >= 1, got True",
        "float": "nproc must be an int >= 1, got 2.0",
        "str": "nproc must be an int >= 1, got '2'",
    }
    for case, message in expected.items():
        report = reports[f"test_refused[{case}]"]
        text = report.longreprtext
        assert report.failed and f"test_refused[{case}]: llmperf.torchrun: {message}" in text, (
            case,
            text[-600:],
        )
    assert f"launched {cap} ranks" in reports["test_at_cap"].longreprtext
    assert launches.nprocs == [cap], launches.nprocs


def test_more_ranks_than_accelerators_is_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an accelerator n is bounded by the devices there are: more is a skip naming the
    test and both counts (the test needs hardware this machine lacks); the CPU's cap does
    not apply there."""
    import torch

    monkeypatch.setattr(torch.accelerator, "device_count", lambda: 40)
    where = "test_tp.py::test_tp[41]: llmperf.torchrun"
    with pytest.raises(pytest.skip.Exception) as skipped:
        torchrun.check_nproc(10**20, torch.device("cuda", 0), where)
    assert str(skipped.value) == (
        "test_tp.py::test_tp[41]: llmperf.torchrun: needs 100000000000000000000 cuda devices;"
        " this machine has 40"
    )
    torchrun.check_nproc(40, torch.device("cuda", 0), where)  # all of them: launched


TWICE_MODULE = """
import pytest


@pytest.mark.llmperf(rounds=1)
def test_in_session(llmperf):
    if llmperf.torchrun(2):  # rank 0's result taken: the test should return here
        llmperf.torchrun(4)


@pytest.mark.llmperf(rounds=1)
def test_in_rank(llmperf, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run")  # as in a rank torchrun started
    assert llmperf.torchrun(2) is False
    llmperf.torchrun(2)
"""


def test_torchrun_called_twice_in_a_test_is_an_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second ``llmperf.torchrun`` in one test is an error naming the test and both calls,
    in the session (before a second launch) and in a rank (where it used to return False
    again, silently)."""
    launches = _LaunchRecorder(fail=False)
    monkeypatch.setattr(torchrun, "_launch", launches)
    reports = _call_reports(pytester, TWICE_MODULE)
    for name, call, first in (("test_in_session", 4, 2), ("test_in_rank", 2, 2)):
        text = reports[name].longreprtext
        assert reports[name].failed, (name, text)
        assert (
            f"RuntimeError: test_calls.py::{name}: llmperf.torchrun({call}): called twice in "
            f"this test (first as llmperf.torchrun({first}))"
        ) in text, (name, text[-600:])
    assert launches.nprocs == [2], launches.nprocs
