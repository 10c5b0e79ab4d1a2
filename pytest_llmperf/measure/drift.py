"""Machine-drift correction for CPU timings: take out the time spent waiting for a core.

On a shared CPU the same workload's wall time moves by tens of percent between
runs, and mostly not because the CPU got slower: other processes take turns on
the cores, and a round that is preempted waits in the run queue. A fixed
reference kernel timed between batches cannot see that (a sub-millisecond
kernel is rarely preempted, and its minimum is exactly the uncontended speed):
measured on a 2-core runner at load 5-8, an interpreter-loop kernel alone
correlated 0.1-0.5 with the workload and hardly narrowed its spread
(``scripts/noise_trials.py --drift-study``).

What does track it is how much of the batch this thread spent runnable but not
running. Linux reports that per thread (``/proc/self/task/<tid>/schedstat``:
run-queue wait in ns), so for each batch of rounds ``reference_time()`` returns
wall / (wall - run-queue wait) over the window since the previous reference
(the batch; the fixture opens the window right before the first batch). A round's wall time
divided by that factor is its time with the waiting taken out, which a baseline
recorded in a busier or quieter spell can still be compared with. The factor is
1 on an idle machine and grows with contention. It is multiplied by the time of
a small interpreter-loop kernel (the minimum of a few runs: how fast the core
runs while we have it), so a slower clock or a busy cache is taken out too; the
normalized samples are dimensionless. Between processes on the runner above,
this cut the spread of the workload's median from 0.49 (CV) to 0.10, against
0.21 for the wait factor alone and 0.44 for the kernel alone. Time the workload itself sleeps or blocks
is not run-queue wait, so sleeping or I/O-bound rounds are left as they are.

Without schedstat (other systems) the factor is wall / process CPU time, which
assumes the rounds keep the CPU busy; turn the correction off for a workload
that blocks (``@pytest.mark.llmperf(drift_correction=False)``). Either way the
verdict requires raw and corrected times to agree, so a bad factor makes a
verdict inconclusive, never a false failure.
"""

from __future__ import annotations

import math
import threading
import time

#: A window shorter than this is too coarse for the clocks.
MIN_WINDOW_S = 0.002
#: A window longer than this probably spans more than a batch (another test, idle time).
MAX_WINDOW_S = 10.0

_mark: tuple[int, int, int] | None = None


def run_queue_wait_ns() -> int:
    """This thread's total run-queue wait in ns (Linux schedstat), or -1 if unknown."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def clocks() -> tuple[int, int, int]:
    """(wall ns, process CPU ns, run-queue wait ns or -1), read together."""
    return time.perf_counter_ns(), time.process_time_ns(), run_queue_wait_ns()


def mark() -> None:
    """Start a drift window now (call right before a batch of measured rounds)."""
    global _mark
    _mark = clocks()


def share_factor(wall_ns: int, cpu_ns: int, wait_ns: int = -1) -> float | None:
    """How much longer than its own running the window took, or None when unusable.

    wall / (wall - run-queue wait) when the wait is known (``wait_ns >= 0``),
    else wall / process CPU time.
    """
    if not MIN_WINDOW_S * 1e9 <= wall_ns <= MAX_WINDOW_S * 1e9:
        return None
    if wait_ns >= 0:
        busy = wall_ns - wait_ns
        return wall_ns / busy if busy > 0 else None
    return wall_ns / cpu_ns if cpu_ns > 0 else None


def _factor_since(start: tuple[int, int, int]) -> float | None:
    end = clocks()
    wait = end[2] - start[2] if start[2] >= 0 and end[2] >= 0 else -1
    return share_factor(end[0] - start[0], end[1] - start[1], wait)


#: The speed kernel: an interpreter loop, independent of the torch and BLAS builds.
_LOOP = 3000
_REPEATS = 5


def kernel_time() -> float:
    """Seconds of a small fixed interpreter loop (about 0.15 ms), the minimum of a few.

    The minimum is the speed of the core while this thread runs on it (clock
    frequency, a busy sibling, cache pressure), without the waiting.
    """
    best = math.inf
    clock = time.perf_counter_ns
    for _ in range(_REPEATS):
        t0 = clock()
        s = 0
        for i in range(_LOOP):
            s += i * i
        best = min(best, (clock() - t0) * 1e-9)
    return best


def reference_time() -> float:
    """The drift reference for the batch that just ended; opens the next window.

    The batch's wait factor (:func:`share_factor`) times the speed kernel's time:
    the first takes out the waiting for a core, the second how fast the core ran.
    With no usable window (no mark yet, or a window too short or too long to be
    this batch) the wait factor is taken as 1: the kernel alone still corrects
    that batch for the core's speed, which is most of the drift between runs on
    a quiet runner.
    """
    factor = _factor_since(_mark) if _mark is not None else None
    ref = (factor or 1.0) * kernel_time()
    mark()
    return ref


def normalize(times: list[float], batch_sizes: list[int], refs: list[float]) -> list[float]:
    """Each round's time divided by the reference taken after its batch.

    Batches without a usable reference (NaN, zero) are left out.
    """
    out: list[float] = []
    i = 0
    for size, ref in zip(batch_sizes, refs, strict=True):
        if math.isfinite(ref) and ref > 0:
            out += [t / ref for t in times[i : i + size]]
        i += size
    return out
