"""drift.py: the reference kernel and the per-batch normalization."""

from __future__ import annotations

import math
import time

import pytest

from pytest_llmperf.measure import drift


def test_normalize_divides_each_batch_by_its_reference():
    times = [1.0, 2.0, 3.0, 4.0, 5.0]
    out = drift.normalize(times, [2, 3], [0.5, 2.0])
    assert out == pytest.approx([2.0, 4.0, 1.5, 2.0, 2.5])


def test_normalize_cancels_a_uniform_slowdown():
    """A machine twice as slow doubles both rounds and reference: same normalized samples."""
    times = [0.004, 0.0041, 0.0039, 0.004]
    fast = drift.normalize(times, [2, 2], [0.001, 0.001])
    slow = drift.normalize([2 * t for t in times], [2, 2], [0.002, 0.002])
    assert slow == pytest.approx(fast)


def test_normalize_empty_and_mismatch():
    assert drift.normalize([], [], []) == []
    with pytest.raises(ValueError):
        drift.normalize([1.0, 2.0], [2], [1.0, 2.0])


def test_share_factor_arithmetic_and_bounds():
    ms = 1_000_000
    # run-queue wait known: wall / (wall - wait)
    assert drift.share_factor(30 * ms, 5 * ms, 20 * ms) == pytest.approx(3.0)
    assert drift.share_factor(30 * ms, 5 * ms, 0) == pytest.approx(1.0)
    assert drift.share_factor(30 * ms, 5 * ms, 30 * ms) is None
    # unknown wait: wall / process CPU time
    assert drift.share_factor(30 * ms, 10 * ms) == pytest.approx(3.0)
    assert drift.share_factor(10 * ms, 20 * ms) == pytest.approx(0.5)  # 2 busy threads
    assert drift.share_factor(10 * ms, 0) is None
    assert drift.share_factor(int(drift.MIN_WINDOW_S * 1e9) - 1, ms) is None
    assert drift.share_factor(int(drift.MAX_WINDOW_S * 1e9) + 1, 10**9, 0) is None


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_reference_time_is_wait_factor_times_kernel(monkeypatch):
    monkeypatch.setattr(drift, "kernel_time", lambda: 0.001)
    drift.mark()
    _busy(0.02)
    ref = drift.reference_time()
    assert 0.001 <= ref < 0.1  # factor about 1; more on a loaded machine


def test_kernel_time_is_small_and_positive():
    k = drift.kernel_time()
    assert 0 < k < 0.05


@pytest.mark.skipif(drift.run_queue_wait_ns() < 0, reason="needs Linux schedstat")
def test_sleeping_is_not_waiting():
    """A workload that sleeps is left as it is: only run-queue wait is taken out."""
    drift.mark()
    time.sleep(0.03)
    wall, cpu, wait = drift.clocks()
    start = drift._mark
    assert drift.share_factor(wall - start[0], cpu - start[1], wait - start[2]) < 1.5


@pytest.mark.skipif(drift.run_queue_wait_ns() < 0, reason="needs Linux schedstat")
def test_contention_raises_the_factor():
    """Two busy processes per core: about half of the wall time is waiting."""
    import multiprocessing as mp
    import os

    procs = [
        mp.get_context("fork").Process(target=_busy, args=(0.6,))
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    for p in procs:
        p.start()
    try:
        time.sleep(0.05)
        start = drift.clocks()
        _busy(0.3)
        end = drift.clocks()
        contended = drift.share_factor(*(e - s for e, s in zip(end, start, strict=True)))
    finally:
        for p in procs:
            p.join()
    assert contended > 1.3


def test_no_usable_window_falls_back_to_the_kernel(monkeypatch):
    monkeypatch.setattr(drift, "kernel_time", lambda: 0.002)
    monkeypatch.setattr(drift, "_mark", None)
    assert drift.reference_time() == 0.002  # no mark yet: wait factor 1
    drift.mark()
    assert drift.reference_time() == 0.002  # window too short to be a batch


def test_batches_without_a_reference_are_left_out():
    out = drift.normalize([1.0, 2.0, 3.0], [1, 2], [math.nan, 2.0])
    assert out == pytest.approx([1.0, 1.5])
    assert drift.normalize([1.0], [1], [0.0]) == []
