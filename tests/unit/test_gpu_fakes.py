"""The CUDA paths, driven here on the CPU through fakes that behave as CUDA does.

Each test is a mistake the first GPU run would have found (issue 29): timing on cuda:1
while cuda:0 is current, every torchrun rank on one GPU, a cache emptied between
warm-up and the rounds, a device lock that let another worker build a model during a
timed section or named the GPU by a logical index, the runtime's memcpy counted as a
kernel, a token mark on a stream its decode did not run on. The fakes
(``gpu_fakes.py``) simulate device time per stream, so a timing read on the wrong
stream reads what CUDA would: zero. The real-GPU checks stay in ``test_gpu.py``.
"""

from __future__ import annotations

import fcntl
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from gpu_fakes import BUS_IDS, FakeGPU, installed

from pytest_llmperf.measure import device as devices
from pytest_llmperf.measure.generation import TokenClock
from pytest_llmperf.measure.timing import BlockTimer, RoundTimer

MiB = 2**20


def _run(pytester: pytest.Pytester, source: str, *args: str) -> tuple[Any, dict]:
    """``source``'s tests measured in-process (the fake installed by the caller); the
    outcome and each test's result from the JSON report, by test name."""
    pytester.makepyfile(test_inner=source)
    result = pytester.runpytest_inprocess(
        "--llmperf", f"--llmperf-report={pytester.path}/r.json", "-p", "no:randomly", *args
    )
    path = pytester.path / "r.json"
    report = json.loads(path.read_text()) if path.exists() else {"results": []}
    return result, {t["nodeid"].split("::")[-1]: t for t in report["results"]}


def _held(path: Path) -> bool:
    """Whether some open file holds ``path``'s lock (a new open file cannot take it)."""
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


# --------------------------------------------------------------------------- 1. cuda:1


def test_rounds_block_timer_and_token_marks_time_the_device_measured(fake_gpu) -> None:
    """cuda:0 current, the work on cuda:1: events recorded on cuda:0's stream would wait
    for nothing and read 0 (the fake, like CUDA, records ``record()`` on the current
    device's stream); recorded on cuda:1's, they read the work."""
    dev = torch.device("cuda", 1)
    assert fake_gpu.current == 0
    times, _ = RoundTimer(dev).run(lambda: fake_gpu.kernel(0.004, device=1), 3)
    assert times == pytest.approx([0.004] * 3)
    with BlockTimer(dev) as block:
        fake_gpu.kernel(0.002, device=1)
    assert block.elapsed == pytest.approx(0.002)
    clock = TokenClock(dev, "test")

    def generate() -> None:
        for _ in range(3):
            fake_gpu.kernel(0.001, device=1)
            clock.tick()

    _, marks = clock.run(generate)
    fake_gpu.synchronize(1)
    assert clock.seconds(marks) == pytest.approx([0.0, 0.001, 0.002, 0.003])


INNER_CURRENT = """
import pytest
import torch
from gpu_fakes import active

@pytest.mark.llmperf(rounds=5, warmup=1)
def test_current(llmperf):
    assert torch.accelerator.current_device_index() == llmperf.device.index
    gpu = active()
    llmperf(lambda: gpu.kernel(0.004, device=llmperf.device))
"""


def test_the_device_asked_for_is_made_current(pytester, fake_gpu) -> None:
    """--llmperf-device=cuda:1: the user's code that names no device (``.cuda()``, a new
    stream, a collective's buffer) runs where the plugin measures."""
    result, tests = _run(pytester, INNER_CURRENT, "--llmperf-device=cuda:1")
    result.assert_outcomes(passed=1)
    assert fake_gpu.current == 1
    assert tests["test_current"]["metrics"]["time"]["samples"] == pytest.approx([0.004] * 5)


# --------------------------------------------------------------------------- 2. torchrun


def test_each_torchrun_rank_takes_its_local_rank_device(pytester, fake_gpu, monkeypatch) -> None:
    """The launching session's ``--llmperf-device=cuda:0`` reaches the ranks as
    LLMPERF_DEVICE; rank 1 still measures on cuda:1, and makes it current."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "fake")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LLMPERF_DEVICE", "cuda:0")
    assert devices.current_device() == torch.device("cuda", 1)
    devices.current_device.cache_clear()
    result, tests = _run(pytester, INNER_CURRENT)
    result.assert_outcomes(passed=1)
    assert fake_gpu.current == 1
    assert tests["test_current"]["metrics"]["time"]["samples"] == pytest.approx([0.004] * 5)
    monkeypatch.setenv("LLMPERF_DEVICE", "cpu")  # a forced CPU stays the CPU in a rank
    devices.current_device.cache_clear()
    assert devices.current_device() == torch.device("cpu")


# --------------------------------------------------------------------------- 4. the cache

INNER_CACHE = """
import pytest
from gpu_fakes import active

MiB = 2**20

@pytest.mark.llmperf(rounds=3, warmup=1)
def test_big(llmperf):
    gpu = active()
    llmperf(lambda: gpu.kernel(0.001, alloc=512 * MiB))

@pytest.mark.llmperf(rounds=5, warmup=2)
def test_small(llmperf):
    gpu = active()
    llmperf(lambda: gpu.kernel(0.002, alloc=64 * MiB))
"""


def test_warm_up_fills_the_cache_the_rounds_use(pytester, fake_gpu) -> None:
    """No ``empty_cache`` between warm-up and the rounds: the first timed round does not
    pay ``cudaMalloc`` again. The cache is emptied before the warm-up instead, so an
    earlier test's 512 MiB of cached blocks is not this test's reserved peak."""
    result, tests = _run(pytester, INNER_CACHE)
    result.assert_outcomes(passed=2)
    small = tests["test_small"]
    assert small["metrics"]["time"]["samples"] == pytest.approx([0.002] * 5)
    assert small["metrics"]["peak_memory"]["value"] == 64 * MiB
    assert small["metrics"]["peak_memory_reserved"]["value"] == 64 * MiB
    assert not [n for n in small["notes"] if "first round" in n]


# --------------------------------------------------------------------------- 6. xdist


def test_the_device_lock_is_named_by_the_pci_bus_id() -> None:
    """Worker A sees both GPUs in bus order; worker B runs with CUDA_VISIBLE_DEVICES=1,0.
    A's cuda:1 is B's cuda:0: one lock; A's cuda:0 is another GPU: another lock."""
    with installed(FakeGPU(bus_ids=BUS_IDS[:2])):
        a0, a1 = (devices.lock_name(torch.device("cuda", i)) for i in (0, 1))
    with installed(FakeGPU(bus_ids=BUS_IDS[1::-1])):
        b0 = devices.lock_name(torch.device("cuda", 0))
    assert a1 == b0 != a0
    assert "pci-00000000-42-00.0" in b0


INNER_LOCK = """
import tempfile
from pathlib import Path

import pytest

from pytest_llmperf import torchrun
from pytest_llmperf.measure.device import lock_name
from test_gpu_fakes import _held

LOCK = Path(tempfile.gettempdir())

@pytest.fixture
def model(llmperf_device):
    # a model build: another worker's timed rounds must not run beside it
    return _held(LOCK / lock_name(llmperf_device))

@pytest.mark.llmperf(rounds=3, warmup=0)
def test_build(llmperf, model):
    assert model, "the model was built while the device lock was free"
    llmperf(lambda: None)
"""


def test_a_performance_test_holds_the_device_lock_from_set_up_on(pytester, monkeypatch) -> None:
    """Under pytest-xdist the lock covers the test's fixtures too, and is let go after."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    result, _ = _run(pytester, INNER_LOCK)
    result.assert_outcomes(passed=1)
    cpu = torch.device("cpu")
    assert not _held(Path(tempfile.gettempdir()) / devices.lock_name(cpu))


def test_the_device_lock_is_reentrant_and_lets_go_of_what_it_took(fake_gpu, monkeypatch) -> None:
    """A test holds cuda:0; its launch takes cuda:0 and cuda:1 as well, then lets go of
    cuda:1 only; the test's end lets go of cuda:0."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    tmp = Path(tempfile.gettempdir())
    cuda0, cuda1 = (tmp / devices.lock_name(torch.device("cuda", i)) for i in (0, 1))
    with devices.exclusive_device(torch.device("cuda", 0)):
        assert (_held(cuda0), _held(cuda1)) == (True, False)
        with devices.exclusive_device(torch.device("cuda", 0), torch.device("cuda", 1)):
            assert (_held(cuda0), _held(cuda1)) == (True, True)
        assert (_held(cuda0), _held(cuda1)) == (True, False)
    assert (_held(cuda0), _held(cuda1)) == (False, False)


INNER_TORCHRUN = """
import tempfile
from pathlib import Path

import torch

from pytest_llmperf import torchrun
from pytest_llmperf.measure.device import lock_name
from pytest_llmperf.results import TestResult
from test_gpu_fakes import _held

def test_ranks(llmperf, monkeypatch):
    held = []

    def launch(config, nodeid, nproc, tier, timeout):
        for i in range(nproc):
            held.append(_held(Path(tempfile.gettempdir()) / lock_name(torch.device("cuda", i))))
        return TestResult(nodeid).to_dict()

    monkeypatch.setattr(torchrun, "launch", launch)
    if llmperf.torchrun(2):
        assert held == [True, True], held
        return
"""


def test_a_torchrun_launch_holds_every_rank_devices_lock(pytester, fake_gpu, monkeypatch) -> None:
    """The ranks run on cuda:0 and cuda:1: while they run, no other worker measures on
    either (the launching worker holds cuda:0 for its test, and takes cuda:1 too)."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    result, _ = _run(pytester, INNER_TORCHRUN)
    result.assert_outcomes(passed=1)


# --------------------------------------------------------------------------- 7. kernels


def test_work_kernels_leave_out_the_runtimes_memcpy_and_memset(fake_gpu, monkeypatch) -> None:
    """The profiler lists every device-side event; a memcpy or memset is the runtime's."""
    from torch.autograd import DeviceType

    from pytest_llmperf.measure import work

    names = ["ampere_bf16_s16816gemm", "Memcpy HtoD (Pageable -> Device)",
             "Memset (Device)", "ampere_bf16_s16816gemm", "Memcpy DtoD (Device -> Device)"]  # fmt: skip

    class Profile:  # torch.profiler.profile's shape: a context, then its events
        def __init__(self, activities: Any) -> None:
            pass

        def __enter__(self) -> Profile:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def events(self) -> list[Any]:
            cpu = [SimpleNamespace(name="aten::mm", device_type=DeviceType.CPU)]
            return cpu + [SimpleNamespace(name=n, device_type=DeviceType.CUDA) for n in names]

    monkeypatch.setattr(torch.profiler, "profile", Profile)
    counts = work._kernels(lambda: None, torch.device("cuda", 0))
    assert dict(counts) == {"ampere_bf16_s16816gemm": 2}


# --------------------------------------------------------------------------- 8. streams

INNER_STREAMS = """
import pytest
import torch
from gpu_fakes import active

def _generation(llmperf, inside):
    gpu = active()
    side = torch.cuda.Stream()

    def generate():
        for _ in range(4):
            with torch.cuda.stream(side):
                torch.ones(8).add_(1)  # the decode step's operators, on the side stream
                gpu.kernel(0.001, stream=side)
                if inside:
                    llmperf.tick()
            if not inside:
                llmperf.tick()

    llmperf.generation(generate)

@pytest.mark.llmperf(rounds=3, warmup=1)
def test_outside(llmperf):
    _generation(llmperf, inside=False)

@pytest.mark.llmperf(rounds=3, warmup=1)
def test_inside(llmperf):
    _generation(llmperf, inside=True)
"""


def test_a_token_mark_on_another_stream_than_its_decode_is_said(pytester, fake_gpu) -> None:
    """Decode on a side stream, ``tick`` on the default one: each mark waits for nothing
    and reads early (here TPOT 0). The work pass sees the operators' stream and the
    mark's, and says so; marked inside the stream's context, nothing is said."""
    result, tests = _run(pytester, INNER_STREAMS)
    result.assert_outcomes(passed=2)
    said = [n for n in tests["test_outside"]["notes"] if "recorded on stream" in n]
    assert said and "4 of 4 token marks" in said[0], tests["test_outside"]["notes"]
    assert tests["test_outside"]["metrics"]["tpot"]["value"] == 0
    assert not [n for n in tests["test_inside"]["notes"] if "recorded on stream" in n]
    assert tests["test_inside"]["metrics"]["tpot"]["value"] == pytest.approx(0.001)


# --------------------------------------------------------------------------- flush_l2

INNER_FLUSH = """
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_llmperf.measure.timing import L2_FLUSH_BYTES


class Flushes(TorchDispatchMode):
    def __init__(self, log):
        super().__init__()
        self.log = log

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.zero_.default and args[0].nbytes == L2_FLUSH_BYTES:
            self.log.append("flush")
        return out


@pytest.mark.llmperf(rounds=5, warmup=2, flush_l2=True, work=False, drift_correction=False)
def test_flushed(llmperf):
    log = []
    with Flushes(log):
        llmperf(lambda: log.append("call"))
    timed = log[: 2 * 7]
    assert timed == ["flush", "call"] * 7, log
    assert "flush" not in log[2 * 7 :], log
"""


def test_flush_l2_zeroes_the_cache_before_each_round_untimed(pytester) -> None:
    """``flush_l2=True`` (triton's ``do_bench``): 256 MB zeroed before each warm-up call and
    round, outside its timing: a call that does nothing still times in microseconds,
    where the zeroing takes tens of milliseconds on this CPU."""
    result, tests = _run(pytester, INNER_FLUSH)
    result.assert_outcomes(passed=1)
    assert max(tests["test_flushed"]["metrics"]["time"]["samples"]) < 0.002
