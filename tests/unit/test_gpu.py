"""Measurement checks that need an NVIDIA GPU; skipped with a reason elsewhere.

Run on a GPU runner with `pytest tests/unit/test_gpu.py`.
"""

from __future__ import annotations

import time

import pytest
import torch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")


def _nvml_available() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return True
    except Exception:
        return False


@cuda
def test_event_timing_matches_a_calibrated_sleep_kernel() -> None:
    """torch.cuda._sleep spins for N cycles; calibrate cycles/s with a long run, then
    check the plugin's event timer against shorter runs within 2%."""
    from pytest_llmperf.measure.timing import RoundTimer

    dev = torch.device("cuda", torch.cuda.current_device())
    torch.cuda._sleep(1_000_000)  # wake the clocks
    torch.cuda.synchronize()
    cycles = 200_000_000
    t0 = time.perf_counter()
    torch.cuda._sleep(cycles)
    torch.cuda.synchronize()
    rate = cycles / (time.perf_counter() - t0)
    timer = RoundTimer(dev)
    for n in (20_000_000, 50_000_000):
        times, _ = timer.run(lambda n=n: torch.cuda._sleep(n), 5)
        expected = n / rate
        got = sorted(times)[2]
        assert abs(got - expected) / expected < 0.02, (n, got, expected)


@cuda
def test_peak_memory_equals_a_known_allocation() -> None:
    from pytest_llmperf.measure.memory import BlockPeak

    dev = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(dev)
    with BlockPeak(dev) as pm:
        x = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev)
        del x
    assert pm.exact
    assert pm.peak - before == 256 * 2**20


@cuda
@pytest.mark.skipif(
    not _nvml_available(), reason="needs a CUDA GPU with NVML (nvidia-ml-py); none here"
)
def test_nvml_energy_over_a_busy_loop_matches_power_times_time() -> None:
    import pynvml

    from pytest_llmperf.measure.energy import EnergyMeter

    dev = torch.device("cuda", torch.cuda.current_device())
    meter = EnergyMeter(dev)
    assert meter.available
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    powers = []
    meter.start()
    t_end = time.perf_counter() + 2.0
    while time.perf_counter() < t_end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
        powers.append(pynvml.nvmlDeviceGetPowerUsage(meter.handle) / 1000.0)
    joules, window = meter.stop()
    assert joules > 0
    avg_power = sum(powers) / len(powers)
    assert abs(joules - avg_power * window) / (avg_power * window) < 0.25


@cuda
def test_tensor_parallel_over_nccl_on_every_gpu_here(pytester: pytest.Pytester) -> None:
    """The tensor-parallel OPT under ``llmperf.torchrun`` with NCCL, one rank per GPU
    (world size 1 on a one-GPU runner: the NCCL all-reduce path still runs): each rank
    measures on its own device, and the session adopts rank 0's result; a cell asking
    for one GPU more than the runner has is skipped naming the count."""
    import json

    n = torch.cuda.device_count()
    pytester.makepyfile(
        test_tp_nccl=f"""
        import datetime
        import pytest
        import torch
        import torch.distributed as dist
        from pytest_llmperf.models import opt, tensor_parallel

        @pytest.mark.llmperf(warmup=2, rounds=5)
        @pytest.mark.parametrize("ranks", [{n}, {n + 1}])
        def test_tp(llmperf, ranks):
            if llmperf.torchrun(ranks, timeout=300):
                return
            torch.cuda.set_device(llmperf.device)
            dist.init_process_group("nccl", timeout=datetime.timedelta(seconds=120))
            net = tensor_parallel.build(opt.OPTConfig.from_name("opt-smoke"), llmperf.device)
            tokens = torch.randint(0, 2048, (1, 128), device=llmperf.device)
            llmperf.params(device_index=llmperf.device.index)
            llmperf(net, tokens)
            dist.destroy_process_group()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--llmperf", "--llmperf-report=r.json", "-rs", timeout=600
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([f"*needs {n + 1} cuda devices; this machine has {n}*"])
    (r,) = json.loads((pytester.path / "r.json").read_text())["results"]
    assert r["params"]["ranks"] == n and r["params"]["device_index"] == 0
    assert r["metrics"]["time"]["value"] > 0


@cuda
def test_flush_l2_times_as_triton_do_bench_does() -> None:
    """A memory-bound kernel on a working set that fits the L2 (8 MiB): with ``flush_l2``
    the plugin's median within 10% of ``do_bench``'s (which flushes 256 MB before each
    rep), and without it clearly faster (cache-hot)."""
    triton_testing = pytest.importorskip("triton.testing")
    from pytest_llmperf.measure.timing import RoundTimer, l2_flushing

    dev = torch.device("cuda", torch.cuda.current_device())
    x = torch.randn(2 * 2**20, device=dev)  # 8 MiB
    fn = lambda: x.mul_(1.0)  # noqa: E731 - reads and writes the working set
    flushed, _ = RoundTimer(dev).run(fn, 200, l2_flushing(None, dev))
    hot, _ = RoundTimer(dev).run(fn, 200)
    theirs = triton_testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3
    ours = sorted(flushed)[100]
    assert abs(ours / theirs - 1) < 0.10, (ours, theirs)
    assert sorted(hot)[100] < ours
