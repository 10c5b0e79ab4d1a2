"""drift.py: the reference kernel and the per-batch normalization."""

from __future__ import annotations

import math
import time

import pytest

from pytest_llmperf.measure import drift


@pytest.fixture(autouse=True)
def _fresh_readings(monkeypatch):
    """Every kernel_time() call is a reading of its own here, unless a test says otherwise."""
    monkeypatch.setattr(drift, "REUSE_S", 0.0)
    monkeypatch.setattr(drift, "_last_reading", None)


def test_a_recent_reading_stands_for_now(monkeypatch):
    """A pass of a few microseconds gets no fresh kernel readings (about 1 ms each) when
    one was taken within REUSE_S: at 2,000 tiny tests they were most of the plugin's cost."""
    readings = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(drift, "kernel_time", lambda: next(readings))
    monkeypatch.setattr(drift, "REUSE_S", 60.0)
    drift.mark()
    ref = drift.batch_reference()
    assert (ref.kernel_before, ref.kernel) == (1.0, 1.0)
    monkeypatch.setattr(drift, "REUSE_S", 0.0)
    assert drift.batch_reference().kernel == 2.0


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
    """A workload that sleeps is left as it is: only run-queue wait is taken out.

    200 ms: waking up from a sleep waits in the run queue too, up to 12 ms and more at
    load 6 on 2 cores, which read 1.4 and more over a 30 ms sleep, 1.06 over this one
    (counting the sleep as waiting would read x100 and more).
    """
    drift.mark()
    time.sleep(0.2)
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
    # Scripted clocks, each read 0.5 ms after the last, half of it waiting (a usable window
    # would read a factor of 2): a real window from mark() to the reference, meant to be
    # too short, lasted 2 ms and more whenever a loaded machine preempted the test.
    ticks = iter(range(0, 10**9, 500_000))
    monkeypatch.setattr(
        drift, "_clocks4", lambda: (lambda t: (t, t // 2, t // 2, t // 2))(next(ticks))
    )
    assert drift.reference_time() == 0.002  # no mark yet: wait factor 1
    drift.mark()
    assert drift.reference_time() == 0.002  # window too short to be a batch


def test_batches_without_a_reference_are_left_out():
    out = drift.normalize([1.0, 2.0, 3.0], [1, 2], [math.nan, 2.0])
    assert out == pytest.approx([1.0, 1.5])
    assert drift.normalize([1.0], [1], [0.0]) == []


# ------------------------------------------------- the pass's kernel, and when to refuse

FAST, SLOW = 140e-6, 265e-6  # the loop's two states on the shared 2-core VM


def _ref(factor=1.5, kernel=FAST, before=FAST, own=0.3, others=0.0):
    return drift.BatchReference(factor, kernel, before, own, others)


def test_batch_reference_value_is_wait_factor_times_kernel_after():
    assert _ref(1.5, 2e-4).value == pytest.approx(3e-4)
    assert _ref(None, 2e-4).value == pytest.approx(2e-4)  # no usable window: factor 1


def test_pass_kernel_is_the_fastest_reading_before_or_after_any_batch():
    refs = [_ref(kernel=SLOW, before=2 * SLOW), _ref(kernel=SLOW, before=SLOW)]
    assert drift.pass_kernel(refs) == SLOW
    refs = [_ref(kernel=SLOW, before=FAST)]  # only the reading at mark() was fast
    assert drift.pass_kernel(refs) == FAST
    assert math.isnan(drift.pass_kernel([_ref(kernel=math.nan, before=None)]))


def test_a_slow_reading_after_a_one_batch_pass_does_not_move_it():
    """generate(): one batch per run, and the reading after it caught a slow spell. The
    old per-batch rule read unchanged code as -47%; the pass's fastest reading does not."""
    times = [0.07] * 5
    steady = drift.normalize_batches(times, [5], [_ref(kernel=FAST, before=FAST)])
    caught = drift.normalize_batches(times, [5], [_ref(kernel=SLOW, before=FAST)])
    assert caught == pytest.approx(steady)
    old = drift.normalize(times, [5], [_ref(kernel=SLOW, before=FAST).value])
    assert old[0] / steady[0] == pytest.approx(FAST / SLOW)  # -47%: what the old rule said


def test_a_spell_that_lasts_the_whole_pass_is_still_corrected():
    """Every reading slow (a slower core for the whole run): rounds slowed alike cancel."""
    times = [0.02, 0.021, 0.019, 0.02]
    fast = drift.normalize_batches(times, [2, 2], [_ref(), _ref()])
    slow_refs = [_ref(kernel=2 * FAST, before=2 * FAST), _ref(kernel=2 * FAST, before=2 * FAST)]
    slow = drift.normalize_batches([2 * t for t in times], [2, 2], slow_refs)
    assert slow == pytest.approx(fast)


def test_normalize_batches_divides_by_each_batch_factor():
    out = drift.normalize_batches([1.0, 1.0, 2.0], [1, 2], [_ref(2.0), _ref(None)])
    k = FAST
    assert out == pytest.approx([1.0 / (2.0 * k), 1.0 / k, 2.0 / k])
    # no usable kernel at all: the batches are left out, as normalize() does
    nan_refs = [_ref(kernel=math.nan, before=None)]
    assert drift.normalize_batches([1.0], [1], nan_refs) == []


def test_untrusted_when_other_threads_did_the_work():
    """torch's intra-op workers: the measuring thread's wait is not the call's."""
    one_thread = [_ref(own=0.30, others=0.01), _ref(own=0.20, others=0.0)]
    assert drift.untrusted(one_thread) is None
    two_threads = [_ref(own=0.30, others=0.30), _ref(own=0.20, others=0.15)]
    why = drift.untrusted(two_threads)
    assert why is not None and "other threads" in why and "--llmperf-threads=1" in why
    # at the limit it is still trusted; just past it, not
    limit = drift.MAX_OTHER_THREADS_SHARE
    assert drift.untrusted([_ref(own=1.0, others=limit)]) is None
    assert drift.untrusted([_ref(own=1.0, others=limit + 0.01)]) is not None


def test_untrusted_without_schedstat_or_without_batches():
    unknown = [_ref(own=math.nan, others=math.nan)]  # no schedstat: nothing says otherwise
    assert drift.untrusted(unknown) is None
    assert drift.untrusted([]) is not None


def test_batch_reference_chains_kernel_readings(monkeypatch):
    """mark() reads the kernel before the window opens; each reference after its batch
    reads it again, and that reading opens the next window."""
    readings = iter([1e-4, 2e-4, 3e-4])
    monkeypatch.setattr(drift, "kernel_time", lambda: next(readings))
    drift.mark()
    first = drift.batch_reference()
    second = drift.batch_reference()
    assert (first.kernel_before, first.kernel) == (1e-4, 2e-4)
    assert (second.kernel_before, second.kernel) == (2e-4, 3e-4)


def test_reference_time_uses_the_fastest_reading_of_the_pass_so_far(monkeypatch):
    """The plain-number API: a one-batch pass whose reading after the batch caught a slow
    spell is divided by the reading at mark(); a new mark() starts a new pass."""
    readings = iter([FAST, SLOW, 1.5 * FAST, 2 * SLOW, SLOW])
    monkeypatch.setattr(drift, "kernel_time", lambda: next(readings))
    monkeypatch.setattr(drift, "share_factor", lambda *a: None)  # factor 1: kernels only
    drift.mark()  # FAST
    assert drift.reference_time() == FAST  # after: SLOW
    assert drift.reference_time() == FAST  # after: 1.5 x FAST
    drift.mark()  # 2 x SLOW: a new pass forgets the old one's readings
    assert drift.reference_time() == SLOW
