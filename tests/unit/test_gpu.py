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
