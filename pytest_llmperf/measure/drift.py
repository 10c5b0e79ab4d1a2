"""Machine-drift correction for CPU timings: take out the time spent waiting for a core.

On a shared CPU the same workload's wall time moves by tens of percent between
runs, and mostly not because the CPU got slower: other processes take turns on
the cores, and a round that is preempted waits in the run queue. A fixed
reference kernel timed between batches cannot see that (a sub-millisecond
kernel is rarely preempted, and its minimum is exactly the uncontended speed):
measured on a 2-core runner at load 5-8, an interpreter-loop kernel alone
correlated 0.1-0.5 with the workload and hardly narrowed its spread
(``scripts/evidence/noise_trials.py --drift-study``).

What does track it is how much of the batch this thread spent runnable but not
running. Linux reports that per thread (``/proc/self/task/<tid>/schedstat``:
run-queue wait in ns), so for each batch of rounds :func:`batch_reference`
measures wall / (wall - run-queue wait) over the window since the previous
reference (the batch; :func:`mark` opens the window right before the first
batch). A round's wall time divided by that factor is its time with the waiting
taken out, which a baseline recorded in a busier or quieter spell can still be
compared with. The factor is 1 on an idle machine and grows with contention. It
is multiplied by the time of a small interpreter-loop kernel (how fast the core
runs while we have it), so a slower clock or a busy cache is taken out too; the
normalized samples are dimensionless. Between processes on the runner above,
this cut the spread of the workload's median from 0.49 (CV) to 0.10, against
0.21 for the wait factor alone and 0.44 for the kernel alone. Time the workload
itself sleeps or blocks is not run-queue wait, so sleeping or I/O-bound rounds
are left as they are.

The kernel is read before the first batch and after each batch, and a pass of
rounds is divided by the *fastest* of its readings (:func:`normalize_batches`),
not by the reading after each batch. A reading is an instant (under a
millisecond) and a batch is not: on a shared 2-core VM the loop's time flipped
between about 135 and 255 us, a state lasting a median 50-100 ms, while a batch
of a small GPT's ``generate()`` lasted 0.2-0.5 s and was often its run's only
batch, so one reading, a coin flip, set the whole run's correction; unchanged
code read as -79% to +375% drift-corrected between processes. With the fastest
reading of the pass, a spell that lasts the whole pass still shows, and a flip
the readings happened to catch does not. In three runs of
``scripts/evidence/drift_generate.py`` the spread of run medians between processes (log
scale) went from 0.27, 0.11, 0.10 to 0.12, 0.08, 0.12 for ``generate()`` and
from 0.36, 0.08, 0.08 to 0.08, 0.09, 0.07 for a forward (raw 0.23-0.59; the
wait factor alone 0.10-0.15). What is left: the model slowed less than the loop
in a slow spell (x1.4-1.5 against x1.8), so a spell that lasts the whole pass is
over-corrected by about 20%, and 29-62% of A/A pairs between processes still
differed by more than 10%. On a shared runner, gate time with ``llmperf.ab``.

Where the correction cannot stand for the call, :func:`untrusted` says why and
the pass gets no corrected samples. That is the case when the process's other
threads did a share of the work (torch's intra-op workers): the threads spin at
their barriers while one of them waits for a core, and spinning counts as
running, not as run-queue wait. With torch's 2 threads on the 2 shared cores,
``generate()`` ran 6-14x slower than on one thread, the measuring thread alone
used 166-231 ms of CPU per call against 44-46 ms on one thread (it never
slept), the other threads used 0.5-1.6x its CPU time (one thread: under 0.03),
and no reference brought the spread between processes below 0.36 (raw
0.50-0.84).

Without schedstat (other systems) the factor is wall / process CPU time, which
assumes the rounds keep the CPU busy; turn the correction off for a workload
that blocks (``@pytest.mark.llmperf(drift_correction=False)``). Where a pass is
corrected, the verdict requires raw and corrected times to agree, so a bad
factor makes a verdict inconclusive, never a false failure. A pass that
:func:`untrusted` refuses has nothing to agree with: its caller drops the
corrected samples and says why in a note.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from . import procfs

#: A window shorter than this is too coarse for the clocks.
MIN_WINDOW_S = 0.002
#: A window longer than this probably spans more than a batch (another test, idle time).
MAX_WINDOW_S = 10.0
#: Other threads' CPU time over the measuring thread's, above which the measuring
#: thread's run-queue wait no longer stands for the call's (intra-op workers). One
#: thread: 0.03 at most per pass; torch's 2 threads: 0.5-1.6 (scripts/evidence/drift_generate.py).
MAX_OTHER_THREADS_SHARE = 0.25

#: (wall ns, process CPU ns, run-queue wait ns or -1, this thread's CPU ns or -1) at the
#: window's start, the kernel reading taken right before it opened, and the fastest
#: reading since ``mark()`` (for ``reference_time``).
_mark: tuple[int, int, int, int] | None = None
_mark_kernel: float | None = None
_pass_fastest: float = math.inf
#: The last kernel reading: (perf_counter_ns when taken, seconds).
_last_reading: tuple[int, float] | None = None
#: A reading this recent stands for now: the core's speed states last a median 50-100 ms
#: (see the module docstring), and a reading costs about 1 ms, which for a test of a few
#: microseconds' rounds was most of the plugin's cost per test (scripts/evidence/scale.py). A
#: batch longer than this always gets a reading of its own after it.
REUSE_S = 0.03


def _schedstat() -> tuple[int, int]:
    """This thread's (CPU ns, run-queue wait ns) from Linux schedstat, or (-1, -1)."""
    try:
        fields = procfs.read(f"/proc/self/task/{threading.get_native_id()}/schedstat").split()
        return int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return -1, -1


def run_queue_wait_ns() -> int:
    """This thread's total run-queue wait in ns (Linux schedstat), or -1 if unknown."""
    return _schedstat()[1]


def clocks() -> tuple[int, int, int]:
    """(wall ns, process CPU ns, run-queue wait ns or -1), read together."""
    return time.perf_counter_ns(), time.process_time_ns(), run_queue_wait_ns()


def _clocks4() -> tuple[int, int, int, int]:
    own, wait = _schedstat()
    return time.perf_counter_ns(), time.process_time_ns(), wait, own


def mark() -> None:
    """Start a drift window now (call right before a batch of measured rounds).

    Reads the speed kernel first (outside the window): the pass's first reading.
    """
    global _mark, _mark_kernel, _pass_fastest
    _mark_kernel = recent_kernel_time()
    _pass_fastest = math.inf
    _mark = _clocks4()


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


def recent_kernel_time() -> float:
    """:func:`kernel_time`, or the last reading when it is under ``REUSE_S`` old."""
    global _last_reading
    now = time.perf_counter_ns()
    if _last_reading is not None and now - _last_reading[0] < REUSE_S * 1e9:
        return _last_reading[1]
    reading = kernel_time()
    _last_reading = (time.perf_counter_ns(), reading)
    return reading


@dataclass(frozen=True)
class BatchReference:
    """What one batch's drift window measured (:func:`batch_reference`)."""

    #: wall / (wall - run-queue wait) of the measuring thread; None: no usable window.
    factor: float | None
    #: The speed kernel's time right after the batch, seconds.
    kernel: float
    #: The reading that opened the window (after the previous batch, or at ``mark``).
    kernel_before: float | None = None
    #: CPU seconds of the measuring thread, and of the process's other threads, in the
    #: window (NaN: unknown, e.g. no schedstat).
    own_cpu: float = math.nan
    others_cpu: float = math.nan

    @property
    def value(self) -> float:
        """This batch's reference on its own: wait factor x the kernel after it."""
        return (self.factor or 1.0) * self.kernel


def batch_reference() -> BatchReference:
    """The drift measurements of the batch that just ended; opens the next window.

    With no usable window (no mark yet, or a window too short or too long to be
    this batch) the wait factor is None and counts as 1: the kernel alone still
    corrects that batch for the core's speed.
    """
    global _mark, _mark_kernel
    end = _clocks4()
    factor = None
    own = others = math.nan
    start = _mark
    if start is not None:
        wall, cpu = end[0] - start[0], end[1] - start[1]
        wait = end[2] - start[2] if start[2] >= 0 and end[2] >= 0 else -1
        factor = share_factor(wall, cpu, wait)
        if start[3] >= 0 and end[3] >= 0:
            own = (end[3] - start[3]) * 1e-9
            others = max(0.0, cpu * 1e-9 - own)
    kernel = recent_kernel_time()
    before = _mark_kernel if start is not None else None  # no mark: no pass to chain to
    ref = BatchReference(factor, kernel, before, own, others)
    _mark_kernel = kernel
    _mark = _clocks4()
    return ref


def reference_time() -> float:
    """The drift reference for the batch that just ended (a number); opens the next window.

    For callers that hold plain numbers: the batch's wait factor times the fastest
    kernel reading since :func:`mark` (so far in the pass; :func:`normalize_batches`
    uses the fastest of the whole pass). With no usable window the factor is 1.
    """
    global _pass_fastest
    if _mark is None:  # no mark(): this is a pass of its own
        _pass_fastest = math.inf
    ref = batch_reference()
    readings = [k for k in (ref.kernel, ref.kernel_before) if k and math.isfinite(k) and k > 0]
    _pass_fastest = min([_pass_fastest, *readings])
    return (ref.factor or 1.0) * _pass_fastest


def pass_kernel(refs: Sequence[BatchReference]) -> float:
    """The fastest kernel reading of a pass: the core's speed while this process had it.

    Readings that catch a passing slow spell are left out; a spell that lasts the
    whole pass is in every reading and still shows.
    """
    readings = [r.kernel for r in refs] + [r.kernel_before for r in refs if r.kernel_before]
    readings = [k for k in readings if math.isfinite(k) and k > 0]
    return min(readings) if readings else math.nan


def normalize_batches(
    times: list[float], batch_sizes: list[int], refs: Sequence[BatchReference]
) -> list[float]:
    """Each round's time divided by its batch's wait factor and the pass's fastest kernel.

    Batches whose factor is unusable count it as 1 (as :func:`batch_reference` says).
    """
    kernel = pass_kernel(refs)
    values = [(r.factor or 1.0) * kernel for r in refs]
    return normalize(times, batch_sizes, values)


def untrusted(refs: Sequence[BatchReference]) -> str | None:
    """Why this pass's correction cannot stand for the call, or None when it can.

    The measuring thread's run-queue wait is the call's only when the call runs
    on that thread. When the process's other threads (torch's intra-op workers)
    used more than ``MAX_OTHER_THREADS_SHARE`` of its CPU time, the threads spin
    at their barriers while one of them waits for a core; spinning counts as
    running, so no factor from these clocks tracks the call (see the module
    docstring). No batch at all is untrusted too.
    """
    if not refs:
        return "no drift reference was taken"
    own = sum(r.own_cpu for r in refs if math.isfinite(r.own_cpu))
    others = sum(r.others_cpu for r in refs if math.isfinite(r.others_cpu))
    if own > 0 and others > MAX_OTHER_THREADS_SHARE * own:
        return (
            f"other threads of the process used {others / own:.0%} of the measuring "
            "thread's CPU time (intra-op workers?): threads that spin-wait for each other "
            "count as running, so its run-queue wait does not stand for the call's; pin "
            "one thread (--llmperf-threads=1) for a corrected time"
        )
    return None


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
