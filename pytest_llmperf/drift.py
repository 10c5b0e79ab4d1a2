"""Machine-drift correction for CPU timings.

On a shared CPU the same workload's speed moves by tens of percent between
runs. A small fixed reference kernel (an integer loop in the interpreter,
independent of the torch and BLAS builds under test) is timed between batches
of rounds; each round's time divided by the nearest reference time is a
drift-corrected sample that a baseline from a faster or slower spell can still
be compared with.
"""

from __future__ import annotations

import time

_LOOP = 3000
_REPEATS = 5


def reference_time() -> float:
    """Seconds of one reference-kernel call (about 0.15 ms): the minimum of a few."""
    best = float("inf")
    clock = time.perf_counter_ns
    for _ in range(_REPEATS):
        t0 = clock()
        s = 0
        for i in range(_LOOP):
            s += i * i
        best = min(best, (clock() - t0) * 1e-9)
    return best


def normalize(times: list[float], batch_sizes: list[int], refs: list[float]) -> list[float]:
    """Each round's time divided by the reference time taken after its batch."""
    out: list[float] = []
    i = 0
    for size, ref in zip(batch_sizes, refs, strict=True):
        out += [t / ref for t in times[i : i + size]]
        i += size
    return out
