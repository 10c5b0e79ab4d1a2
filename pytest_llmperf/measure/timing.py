"""Device-synchronized timing, warm-up and the round loop (fixed or adaptive).

Accelerators: one event pair per round on the current stream and a single
synchronize per batch of rounds (triton's ``do_bench`` method), through
``torch.Event`` / ``torch.accelerator`` so CUDA, ROCm, XPU and MPS work alike.
CPU: ``time.perf_counter_ns`` around each call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Protocol

from . import distributed

#: Warm-up "auto" stops when the last few calls agree within this spread.
SETTLED_SPREAD = 0.10
AUTO_WARMUP_MAX_CALLS = 20
#: Adaptive rounds never stop on precision before this many rounds: the MAD of
#: fewer noisy CPU rounds is itself noise (A/B runs stopped after 5 pairs).
MIN_STOP_ROUNDS = 20


class RoundTimer:
    """Times a batch of rounds of ``fn``; ``setup`` runs untimed before each round."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.accelerated = device.type != "cpu"

    def run(
        self, fn: Callable[[], Any], n: int, setup: Callable[[], Any] | None = None
    ) -> tuple[list[float], Any]:
        """Seconds per round for ``n`` rounds, and the last result of ``fn``."""
        result = None
        if not self.accelerated:
            clock = time.perf_counter_ns
            times = [0.0] * n
            for i in range(n):
                if setup is not None:
                    setup()
                t0 = clock()
                result = fn()
                times[i] = (clock() - t0) * 1e-9
            return times, result

        import torch

        device = self.device
        starts = [torch.Event(device=device, enable_timing=True) for _ in range(n)]
        ends = [torch.Event(device=device, enable_timing=True) for _ in range(n)]
        # The measured device's stream, named: ``record()`` alone takes the current
        # device's, and work on another device would run past events that wait for none.
        stream = torch.accelerator.current_stream(device)
        for i in range(n):
            if setup is not None:
                setup()
            starts[i].record(stream)
            result = fn()
            ends[i].record(stream)
        torch.accelerator.synchronize(device.index)
        return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends, strict=True)], result


def device_event(device: Any) -> Any:
    """A timing event recorded now on ``device``'s current stream (a token mark, a block's
    ends): on the measured device whichever device is current."""
    import torch

    event = torch.Event(device=device, enable_timing=True)
    event.record(torch.accelerator.current_stream(device))
    return event


#: Bytes ``flush_l2`` zeroes before each round: triton's ``do_bench`` cache buffer (256 MB,
#: above any GPU's L2 and most CPUs' last-level cache).
L2_FLUSH_BYTES = 256_000_000


def l2_flushing(setup: Callable[[], Any] | None, device: Any) -> Callable[[], Any]:
    """``setup``, then a buffer larger than the cache zeroed on ``device``: each round then
    starts with its data out of the cache, as ``do_bench`` times a kernel. It runs where
    ``setup`` runs, before the round's start event (or clock), so it is never timed."""
    import torch

    buffer = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int, device=device)

    def flushed() -> Any:
        out = setup() if setup is not None else None
        buffer.zero_()
        return out

    return flushed


def relative_uncertainty(xs: list[float]) -> float:
    """Relative standard error of the median, from the MAD (robust to one slow round)."""
    n = len(xs)
    if n < 3:
        return math.inf
    m = median(xs)
    if m <= 0:
        return math.inf
    mad = median([abs(x - m) for x in xs]) * 1.4826
    return 1.2533 * mad / math.sqrt(n) / m


def settled(times: list[float], spread: float = SETTLED_SPREAD) -> bool:
    """Whether the last three timings agree within ``spread`` of their median."""
    if len(times) < 3:
        return False
    last = times[-3:]
    m = median(last)
    return m > 0 and (max(last) - min(last)) <= spread * m


def warm_up(
    timer: RoundTimer,
    fn: Callable[[], Any],
    warmup: int | str,
    budget_s: float,
    setup: Callable[[], Any] | None = None,
) -> list[float]:
    """Run untimed-for-the-gate calls; ``"auto"`` runs until timings settle.

    Returns the warm-up timings so the report can show what warm-up removed.
    """
    if warmup == "auto":
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < AUTO_WARMUP_MAX_CALLS:
            times += timer.run(fn, 1, setup)[0]
            done = settled(times) or time.perf_counter() - start > budget_s
            if distributed.same_on_all(done):
                break
        return times
    return timer.run(fn, int(warmup), setup)[0] if warmup else []


class Sampler(Protocol):
    """What the round loop measures: ``sample(n)`` runs n rounds and returns one value each.

    A timed call gives seconds per round; an A/B pair gives the pair's ratio, so
    the same loop stops when whatever it samples is known precisely enough.
    """

    def sample(self, n: int) -> list[float]: ...


class CallSampler:
    """Rounds of one call timed by a :class:`RoundTimer`; keeps the call's last result."""

    def __init__(
        self, timer: RoundTimer, fn: Callable[[], Any], setup: Callable[[], Any] | None = None
    ) -> None:
        self.timer, self.fn, self.setup = timer, fn, setup
        self.result: Any = None

    def sample(self, n: int) -> list[float]:
        times, self.result = self.timer.run(self.fn, n, self.setup)
        return times


@dataclass
class Rounds:
    """Sampled rounds and how many batches they came in (a drift sample per batch)."""

    values: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)


def measure_rounds(
    sampler: Sampler,
    *,
    rounds: int | str,
    min_rounds: int,
    max_rounds: int,
    max_time: float,
    precision: float,
    between_batches: Callable[[], Any] | None = None,
) -> Rounds:
    """Fixed ``rounds``, or adaptive: stop once the median's relative uncertainty is
    below ``precision`` (a fraction of the tolerance), but not before
    ``max(min_rounds, MIN_STOP_ROUNDS)`` rounds, or once ``max_rounds`` or the time
    budget ``max_time`` is reached. Batches grow geometrically within the budget."""
    out = Rounds()

    def batch_of(n: int) -> None:
        out.values += sampler.sample(n)
        out.batch_sizes.append(n)
        if between_batches is not None:
            between_batches()

    if rounds != "auto":
        batch_of(int(rounds))
        return out
    start = time.perf_counter()
    batch = max(1, min_rounds)
    while True:
        batch_of(batch)
        n = len(out.values)
        elapsed = time.perf_counter() - start
        precise = n >= max(min_rounds, MIN_STOP_ROUNDS) and (
            relative_uncertainty(out.values) <= precision
        )
        if n >= max_rounds or elapsed >= max_time or precise:
            batch = 0
        else:
            per_round = max(elapsed / n, 1e-9)
            # Grow geometrically, but never past the budget or the round cap.
            batch = int(
                min(max(batch, n // 2, 1), max_rounds - n, (max_time - elapsed) / per_round + 1)
            )
            batch = max(batch, 1)
        # Under torch.distributed every rank runs rank 0's count (0: stop).
        batch = distributed.same_on_all(batch)
        if batch <= 0:
            break
    return out


#: A first round this many times the median is what a cold start looks like (reference
#: 001: warm-up 0 moved the std from 2 ms to 209 ms). Over a warm-up that had settled, a
#: first round up to ``INTERFERENCE_FACTOR`` times the median is another process taking the
#: core (a 1.5 ms round on a shared 2-core runner ran 3-7x slow in 18 of the shipped suite's
#: cells after five warm-up calls), not a measurement that had not warmed up.
COLD_FACTOR = 3.0
INTERFERENCE_FACTOR = 10.0


def unsettled_note(
    times: list[float], warmup_times: list[float], warmup: int | str | None = None
) -> str | None:
    """A hint when the rounds show a cold start that more warm-up would remove (reference 001).

    Only a cold first round counts: the slowest round, over ``COLD_FACTOR`` times the
    median. Without warm-up that is what a cold start looks like. After warm-up it counts
    only where the warm-up had not settled (its last call still over ``COLD_FACTOR`` times
    the rounds' median) or the first round is far past interference (over
    ``INTERFERENCE_FACTOR`` times): slow rounds scattered through a warmed measurement, or
    one slow first round after warm-up calls that had settled, are a busy machine, which
    more warm-up does not cure. ``warmup`` is the policy that ran (a count or ``"auto"``;
    None: unknown), so the hint fits it: suggesting ``warmup='auto'`` to a test that
    already used it sends the user in a circle.
    """
    if len(times) < 3:
        return None
    m = median(times)
    if m <= 0 or not (times[0] > COLD_FACTOR * m and times[0] == max(times)):
        return None
    n = len(warmup_times)
    still_warming = n > 0 and warmup_times[-1] > COLD_FACTOR * m
    if n and not still_warming and times[0] <= INTERFERENCE_FACTOR * m:
        return None
    mean = sum(times) / len(times)
    std = math.sqrt(sum((t - mean) ** 2 for t in times) / (len(times) - 1))
    last = f", the last still {warmup_times[-1] / m:.0f}x the median" if still_warming else ""
    return (
        f"not settled: the first round took over {COLD_FACTOR:g}x the median "
        f"({times[0] / m:.0f}x; std {std * 1e3:.3g} ms vs median {m * 1e3:.3g} ms) after "
        f"{n} warm-up call(s){last}{_warmup_advice(warmup, warmup_times)}"
    )


def _warmup_advice(warmup: int | str | None, warmup_times: list[float]) -> str:
    """The end of the unsettled note: what to change, given the warm-up that ran."""
    n = len(warmup_times)
    larger = max(2 * n, 10)
    if warmup == "auto":
        count = f"a count (@pytest.mark.llmperf(warmup={larger}))"
        if n < AUTO_WARMUP_MAX_CALLS and not settled(warmup_times):
            return (
                f" (warmup='auto' ran out of its time budget, max_time, before three calls "
                f"agreed); raise max_time or set {count}"
            )
        if n >= AUTO_WARMUP_MAX_CALLS and not settled(warmup_times):
            return (
                f" (warmup='auto' stopped at its cap of {AUTO_WARMUP_MAX_CALLS} calls before "
                f"three agreed); set {count}"
            )
        return (
            " (warmup='auto' stopped when three calls agreed within "
            f"{SETTLED_SPREAD:.0%}, and later rounds were slow again); set {count}, or "
            "if other jobs shared the machine, measure again when it is quieter"
        )
    if isinstance(warmup, int) and not isinstance(warmup, bool) and warmup > 0:
        return (
            f"; add warm-up (@pytest.mark.llmperf(warmup='auto') or a count larger than {warmup})"
        )
    return "; add warm-up (@pytest.mark.llmperf(warmup='auto') or a count)"


class BlockTimer:
    """Device-synchronized elapsed seconds of a ``with`` block (the ``device_timer`` fixture)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.elapsed: float = math.nan

    def __enter__(self) -> BlockTimer:
        if self.device.type != "cpu":
            import torch

            torch.accelerator.synchronize(self.device.index)
            self._start = device_event(self.device)
        else:
            self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type != "cpu":
            import torch

            self._end = device_event(self.device)
            torch.accelerator.synchronize(self.device.index)
            self.elapsed = self._start.elapsed_time(self._end) * 1e-3
        else:
            self.elapsed = (time.perf_counter_ns() - self._t0) * 1e-9
