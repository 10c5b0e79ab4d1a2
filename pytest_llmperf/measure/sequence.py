"""The measurement sequence: what happens, in order, when a callable is measured.

warm-up (first pass only) -> reset the memory peak -> ranks meet -> energy
counter -> rounds (fixed or adaptive, a drift reference after each batch on the
CPU) -> energy counter -> ranks meet, slowest rank per round -> memory peak (on
the CPU in a pass of its own) -> the work signature (first pass only, passes of
its own: ``work.signature_of``; dynamo's counters are read around warm-up and
rounds). A re-measurement runs the same sequence again and pools its rounds with the first
pass's. The instruments are in the sibling
modules; this one only orders them and turns what they read into metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from ..config import Policy
from ..metrics import Kind, Metric
from ..results import TestResult
from . import distributed, drift, generation, mark_checks
from .compiled import add_compile_delta, compile_counters
from .device import exclusive_device
from .energy import MIN_WINDOW_S, EnergyMeter
from .memory import PeakMemory, fresh_cache, peak_of_call
from .oom import OutOfMemoryResult, oom_as_status
from .timing import (
    CallSampler,
    RoundTimer,
    l2_flushing,
    measure_rounds,
    unsettled_note,
    warm_up,
)
from .work import WorkSignature, leak_note, signature_of


@dataclass
class Measurement:
    """What one measured callable produced, and how to measure it again."""

    name: str
    times: list[float] = field(default_factory=list)
    warmup_times: list[float] = field(default_factory=list)
    normalized: list[float] = field(default_factory=list)
    peak_memory: int | None = None
    #: Accelerator: the caching allocator's reserved peak; CPU: the absolute RSS peak.
    peak_memory_reserved: int | None = None
    #: False where the RSS high-water mark could not be reset: reported, not gated.
    peak_exact: bool = True
    energy_j: float | None = None
    energy_window_s: float = 0.0
    #: What the call asks PyTorch to do, counted once (None: not taken).
    work: WorkSignature | None = None
    #: The call itself, kept for profiling a failure.
    call: Callable[[], Any] | None = None
    #: Why the CPU drift correction was refused ("": it was not); then no pass is corrected.
    drift_refused: str = ""
    #: A generation's rounds (``generation.GenerationSampler``): its log holds the token marks.
    generation: Any = None
    #: Calls per timed round (pytest-benchmark's ``iterations``): a call too short for the
    #: timer is timed in a loop, and each round's time divided back to one call's.
    iterations: int = 1
    #: Notes the last pass said (the unsettled note, ``call_metrics``' notes) and metrics it
    #: recorded that a later pass may leave out (MFU/MBU): a re-measurement replaces them,
    #: so each note is said once per test and a metric never outlives its decision.
    said: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.times)

    @property
    def mean(self) -> float:
        return sum(self.times) / len(self.times)

    @property
    def std(self) -> float:
        n = len(self.times)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((t - m) ** 2 for t in self.times) / (n - 1))

    @property
    def rounds(self) -> int:
        return len(self.times)


#: In a ``--llmperf-compare`` worker: the controller decides when this process warms up
#: and how many rounds it times (``compare.worker.Remote``); None everywhere else.
remote: Any = None


def uses_drift_correction(policy: Policy, device: Any) -> bool:
    """On by default on the CPU, where a shared machine drifts; off on accelerators and in
    a compare worker (its pairs are interleaved with the other tree's: drift cancels)."""
    if remote is not None:
        return False
    if policy.drift_correction is not None:
        return policy.drift_correction
    return device.type == "cpu"


def repeated(call: Callable[[], Any], n: int) -> Callable[[], Any]:
    """``call`` n times in a row, returning the last result: one timed round of
    ``iterations`` calls."""

    def loop() -> Any:
        out = None
        for _ in range(n):
            out = call()
        return out

    return loop


@contextmanager
def _oom_skips(result: TestResult, device: Any) -> Iterator[None]:
    """Out of memory in a run-once test: a skip that says so (measured, it is status oom)."""
    try:
        with oom_as_status(result, device):
            yield
    except OutOfMemoryResult as exc:
        import pytest

        pytest.skip(f"out of memory running the body once (measured: status oom): {exc}")


def measure_once(
    m: Measurement, device: Any, result: TestResult, setup: Callable[[], Any] | None = None
) -> Any:
    """One round of ``m``'s call (a generation's: its tokens marked), and nothing else: no
    warm-up, memory pass, work signature or energy. Without ``--llmperf`` each performance
    test's body runs once this way, so it still checks the code it measures, at the cost
    of one call (pytest-benchmark's ``--benchmark-disable``, codspeed without
    ``--codspeed``)."""
    assert m.call is not None
    with _oom_skips(result, device):
        sampler = m.generation or CallSampler(RoundTimer(device), m.call, setup)
        m.times += sampler.sample(1)
        return sampler.result


def pair_once(sampler: PairSampler, device: Any, result: TestResult) -> None:
    """One interleaved pair and nothing else: ``measure_once`` for ``llmperf.ab``."""
    with _oom_skips(result, device):
        sampler.sample(1)


def measure_call(
    m: Measurement,
    policy: Policy,
    device: Any,
    result: TestResult,
    setup: Callable[[], Any] | None = None,
) -> Any:
    """One pass of the sequence over ``m.call``, pooled into ``m``; returns the call's last result.

    The rounds are ``m.generation``'s for a generation (each round one generation, its
    token marks logged), else the call's. An out-of-memory error ends the test with
    status ``oom`` (``oom_as_status``).
    """
    call = m.call
    assert call is not None
    timed = call if m.iterations == 1 else repeated(call, m.iterations)
    timer = RoundTimer(device)
    use_drift = uses_drift_correction(policy, device)
    first = not m.times
    if not first:
        forget_last_pass(m, result)
    distributed.report_state("measuring", result.nodeid)
    with exclusive_device(device), oom_as_status(result, device):
        compiled_before = compile_counters() if first and policy.work else None
        if first:
            fresh_cache(device)
        rounds_setup = l2_flushing(setup, device) if policy.flush_l2 else setup
        sampler = m.generation or CallSampler(timer, timed, rounds_setup)
        driven = _warm_up(m, policy, timer, timed, sampler, rounds_setup) if first else None
        taken = _timed_pass(m, policy, device, sampler, driven, use_drift, setup)
        if first and policy.work:
            take_signature(m, device, result, compiled_before, setup)
    distributed.report_state("measured", result.nodeid)
    _pool(m, taken, policy, result, use_drift)
    return sampler.result


@dataclass
class _Pass:
    """What one pass of the rounds read, before it is pooled into the measurement."""

    #: One call's time per round (the slowest rank's).
    times: list[float]
    batch_sizes: list[int]
    #: The drift references taken between batches (none without drift correction).
    refs: list[drift.BatchReference]
    peak: Any
    #: (joules, window in seconds) where NVML counted them.
    energy: tuple[float, float] | None


def _warm_up(
    m: Measurement,
    policy: Policy,
    timer: RoundTimer,
    timed: Callable[[], Any],
    sampler: Any,
    setup: Callable[[], Any] | None,
) -> Any:
    """The first pass's warm-up; in a compare worker the controller drives it and the
    rounds, which are returned (None: the rounds are still to be timed here)."""

    def warm() -> None:
        times = warm_up(timer, timed, policy.warmup, policy.max_time, setup)
        m.warmup_times = [t / m.iterations for t in times]

    prefix = f"{m.name}." if m.name else ""
    names = [f"{prefix}throughput", f"{prefix}{'e2e_latency' if m.generation else 'time'}"]
    driven = remote.measure(names, sampler, warm, False) if remote else None
    if driven is None:
        warm()
    return driven


def _timed_pass(
    m: Measurement,
    policy: Policy,
    device: Any,
    sampler: Any,
    driven: Any,
    use_drift: bool,
    setup: Callable[[], Any] | None,
) -> _Pass:
    """The rounds (``driven``: already timed), between the ranks' barriers, with the energy
    counter and the memory peak around them."""

    on_cpu = device.type == "cpu"
    refs: list[drift.BatchReference] = []
    mem = PeakMemory(device, empty_cache=False)  # warm-up filled the cache for the rounds
    meter = EnergyMeter(device)
    if not on_cpu:
        mem.start()
    distributed.barrier()
    meter.start()
    if use_drift:
        drift.mark()  # the first batch's drift window starts here
    rounds = driven or measure_rounds(
        sampler,
        rounds=policy.rounds,
        min_rounds=policy.min_rounds,
        max_rounds=policy.max_rounds,
        max_time=policy.max_time,
        precision=policy.tolerance_for("time", Kind.TIME) / 4,
        between_batches=(lambda: refs.append(drift.batch_reference())) if use_drift else None,
    )
    energy = meter.stop()
    distributed.barrier()
    times = [t / m.iterations for t in distributed.slowest(rounds.values, device)]
    # CPU: RSS needs a pass of its own (see memory.peak_of_call).
    peak = peak_of_call(device, m.call, setup) if on_cpu else mem.stop()
    return _Pass(times, rounds.batch_sizes, refs, peak, energy)


def _pool(
    m: Measurement, taken: _Pass, policy: Policy, result: TestResult, use_drift: bool
) -> None:
    """A pass's rounds, drift-corrected times, memory peak and energy pooled into ``m``,
    and the note that says its rounds had not settled."""
    m.times += taken.times
    if use_drift:
        _pool_drift(m, taken, result)
    peak = taken.peak
    m.peak_memory = peak.peak if m.peak_memory is None else max(m.peak_memory, peak.peak)
    if peak.reserved is not None:
        m.peak_memory_reserved = max(m.peak_memory_reserved or 0, peak.reserved)
    m.peak_exact = peak.exact
    if taken.energy is not None:
        joules, m.energy_window_s = taken.energy
        m.energy_j = joules / max(1, len(taken.times))
    note = unsettled_note(m.times, m.warmup_times, policy.warmup)
    if note:
        note = f"{m.name}: {note}" if m.name else note
        result.note(note)
        m.said.append(note)


def _pool_drift(m: Measurement, taken: _Pass, result: TestResult) -> None:
    """The pass's drift-normalized times, or, where its references are not trusted, none
    for the whole measurement (said once)."""
    why = m.drift_refused or drift.untrusted(taken.refs)
    if why:
        if not m.drift_refused:
            text = f"drift correction not applied: {why}"
            result.note(f"{m.name}: {text}" if m.name else text)
        m.drift_refused, m.normalized = why, []
    else:
        m.normalized += drift.normalize_batches(taken.times, taken.batch_sizes, taken.refs)


def forget_last_pass(m: Measurement, result: TestResult) -> None:
    """Before a re-measurement: drop what ``m``'s last pass said and the metrics it may not
    record again, so the pooled pass decides them anew. Its unsettled note (the same
    rounds, pooled) printed three times with three sets of numbers, and an MFU the last
    pass left out stayed in the report beside the note that left it out."""
    for note in m.said:
        if note in result.notes:
            result.notes.remove(note)
    for name in m.optional:
        result.metrics.pop(name, None)
    m.said, m.optional = [], []


def take_signature(
    m: Measurement,
    device: Any,
    result: TestResult,
    compiled_before: dict[str, Any] | None,
    setup: Callable[[], Any] | None = None,
) -> None:
    """The work signature of ``m.call``, with what dynamo compiled since ``compiled_before``
    (read before the warm-up); its by-name counts go to the result to explain a diff."""
    assert m.call is not None
    compiled_after = compile_counters()
    m.work = signature_of(m.call, device, setup)
    add_compile_delta(m.work, compiled_before, compiled_after)
    result.work[m.name] = m.work.detail()
    said = [*m.work.uncounted, leak_note(m.work)]
    if m.generation is not None:
        g = m.generation
        said.append(mark_checks.first_mark_note(g.work_marks, g.work_trace))
        said.append(mark_checks.stream_note(g.work_marks, *g.work_streams))
    for note in said:
        if note:
            result.note(f"{m.name}: work: {note}" if m.name else f"work: {note}")


def call_metrics(
    m: Measurement,
    policy: Policy,
    device: Any,
    *,
    prefix: str = "",
    item_unit: str = "tokens",
    dtype: Any = None,
) -> tuple[list[Metric], list[str]]:
    """The metrics a measured call yields (time, throughput, memory, energy, MFU/MBU) and
    the notes that say why one of them is not gated."""
    items = policy.items if policy.items is not None and policy.items > 0 else None
    notes: list[str] = []
    if m.generation is not None:
        metrics, notes = generation_metrics(m, prefix)
    else:
        metrics = speed_metrics(m, prefix, items, item_unit)
    metrics += memory_metrics(m, prefix, device) + work_metrics(m, prefix)
    energy, energy_notes = energy_metrics(m, prefix)
    metrics += energy
    notes += energy_notes
    if policy.flops or policy.bytes:
        from ..roofline.calibration import reportable_efficiency

        fractions, left_out = reportable_efficiency(
            m.median, flops=policy.flops, bytes=policy.bytes, device=device, dtype=dtype
        )
        for key, value in fractions.items():
            metrics.append(Metric(f"{prefix}{key}", value, "", kind=Kind.EFFICIENCY, gated=False))
            m.optional.append(f"{prefix}{key}")
        notes += [f"{prefix}{note}" for note in left_out]
    m.said += notes  # the caller says them; a re-measurement replaces them
    return metrics, notes


def generation_metrics(
    m: Measurement, prefix: str, gated: bool = True
) -> tuple[list[Metric], list[str]]:
    """A generation's token metrics (``generation.generation_metrics``) from ``m``'s rounds."""
    return generation.generation_metrics(
        m.generation.log, m.times, m.normalized, prefix, m.drift_refused, gated=gated
    )


def speed_metrics(
    m: Measurement, prefix: str, items: float | None, item_unit: str, gated: bool = True
) -> list[Metric]:
    """Seconds per call, and with ``items`` per call the throughput, which then carries
    the gate (tokens/s is what users read; the two are the same samples)."""
    metrics = [
        Metric(
            f"{prefix}time",
            m.median,
            "s",
            kind=Kind.TIME,
            samples=list(m.times),
            normalized_samples=list(m.normalized),
            drift_refused=m.drift_refused,
            gated=gated and not items,
        )
    ]
    if items:
        metrics.append(
            Metric(
                f"{prefix}throughput",
                items / m.median,
                f"{item_unit}/s",
                kind=Kind.THROUGHPUT,
                samples=[items / t for t in m.times if t > 0],
                normalized_samples=[items / t for t in m.normalized if t > 0],
                drift_refused=m.drift_refused,
                gated=gated,
            )
        )
    return metrics


def memory_metrics(m: Measurement, prefix: str, device: Any) -> list[Metric]:
    """The call's peak; beside it the allocator's reserved peak (gated) or, on the CPU, the
    absolute RSS peak (not gated: it includes whatever earlier tests left). On the CPU
    the call's own RSS peak informs and ``work.tensor_peak`` gates, where counted."""
    if m.peak_memory is None:  # run once, unmeasured: no memory pass was taken
        return []
    on_cpu = device.type == "cpu"
    # On the CPU the RSS growth of a call moved 10-25% between identical runs: where
    # the work signature's live tensor bytes are counted, they gate and RSS informs.
    counted = on_cpu and m.work is not None and m.work.complete and bool(m.work.ops)
    metrics = [
        Metric(
            f"{prefix}peak_memory",
            float(m.peak_memory or 0),
            "B",
            kind=Kind.MEMORY,
            gated=m.peak_exact and not counted,
        )
    ]
    if m.peak_memory_reserved is not None:
        name = "peak_rss" if on_cpu else "peak_memory_reserved"
        metrics.append(
            Metric(
                f"{prefix}{name}",
                float(m.peak_memory_reserved),
                "B",
                kind=Kind.MEMORY,
                gated=not on_cpu,
            )
        )
    return metrics


def work_metrics(m: Measurement, prefix: str) -> list[Metric]:
    """The signature's totals, kind ``work``: gated exactly, and portable across machines
    of a device type (they go to the device type's work baseline). A partial signature
    is reported, not gated; so is a total that moved between two passes of the call
    (``WorkSignature.unsteady``, named in a note)."""
    if m.work is None:
        return []
    return [
        Metric(
            f"{prefix}work.{name}",
            value,
            unit,
            kind=Kind.WORK,
            gated=m.work.complete and name not in m.work.unsteady,
        )
        for name, value, unit in m.work.totals()
    ]


def energy_metrics(m: Measurement, prefix: str) -> tuple[list[Metric], list[str]]:
    """Joules per call where NVML counted them; a window too short for the counter's
    20-100 ms updates is reported, not gated, and says so."""
    if m.energy_j is None:
        return [], []
    long_enough = m.energy_window_s >= MIN_WINDOW_S
    notes = []
    if not long_enough:
        notes.append(
            f"energy window {m.energy_window_s:.2f} s is shorter than {MIN_WINDOW_S} s "
            "(NVML updates every 20-100 ms): reported, not gated; raise max_time or rounds"
        )
    return [Metric(f"{prefix}energy", m.energy_j, "J", kind=Kind.ENERGY, gated=long_enough)], notes


# --------------------------------------------------------------------------- A/B


class PairSampler:
    """One round is one interleaved pair, reference then candidate, and its value is the
    pair's ratio (reference time / candidate time): the round loop then stops when the
    ratio, not either time, is known precisely enough."""

    def __init__(self, timer: RoundTimer, reference: Measurement, candidate: Measurement) -> None:
        self.timer, self.reference, self.candidate = timer, reference, candidate
        self.ratios: list[float] = []

    def _time(self, m: Measurement) -> float:
        assert m.call is not None
        t = m.generation.sample(1)[0] if m.generation else self.timer.run(m.call, 1)[0][0]
        m.times.append(t)
        return t

    def sample(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t_ref = self._time(self.reference)
            t_cand = self._time(self.candidate)
            out.append(t_ref / t_cand if t_cand > 0 else math.inf)
        self.ratios += out
        return out


def measure_pairs(
    sampler: PairSampler, policy: Policy, device: Any, result: TestResult, metric: str
) -> None:
    """One pass of interleaved pairs (A B A B ...), warm-up of both sides on the first pass;
    adaptive rounds aim at a quarter of ``metric``'s (the ratio's) tolerance."""
    first = not sampler.ratios
    with exclusive_device(device), oom_as_status(result, device):
        compiled_before = compile_counters() if first and policy.work else None
        if first:
            fresh_cache(device)

        def warm() -> None:
            for m in (sampler.reference, sampler.candidate):
                assert m.call is not None
                m.warmup_times = warm_up(sampler.timer, m.call, policy.warmup, policy.max_time)

        driven = remote.measure([metric], sampler, warm, True) if first and remote else None
        if first and driven is None:
            warm()
        driven or measure_rounds(
            sampler,
            rounds=policy.rounds,
            min_rounds=policy.min_rounds,
            max_rounds=policy.max_rounds,
            max_time=2 * policy.max_time,
            precision=policy.tolerance_for(metric, Kind.RATIO) / 4,
        )
        if first and policy.work:
            # Both sides compiled in one window: the reference's signature carries it.
            take_signature(sampler.reference, device, result, compiled_before)
            take_signature(sampler.candidate, device, result, compile_counters())


def pair_metrics(
    sampler: PairSampler,
    items: float | None,
    item_unit: str,
    speedup_name: str,
    tolerance: float | None,
) -> list[Metric]:
    """Each side's time (and throughput) for the record, and the gated speedup ratio."""
    metrics = []
    ref, cand = sampler.reference, sampler.candidate
    for m in (ref, cand):
        if m.generation is not None:
            metrics += generation_metrics(m, f"{m.name}.", gated=False)[0]
        else:
            metrics += speed_metrics(m, f"{m.name}.", items, item_unit, gated=False)
        metrics += work_metrics(m, f"{m.name}.")
    ratios = list(sampler.ratios)
    metrics.append(
        Metric(
            speedup_name,
            median(ratios),
            "x",
            higher_is_better=True,  # reference / candidate: > 1, the candidate is faster
            kind=Kind.RATIO,
            samples=ratios,
            tolerance=tolerance,
        )
    )
    if ref.generation is not None and cand.generation is not None:
        from .generation import paired_token_metrics

        base = speedup_name.removesuffix(".speedup")
        metrics += paired_token_metrics(ref.generation.log, cand.generation.log, base, tolerance)
    return metrics
