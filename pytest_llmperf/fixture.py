"""The ``llmperf`` fixture: measure a callable, record metrics, compare A with B.

Shaped like pytest-benchmark's ``benchmark`` fixture (``llmperf(fn, *args)``,
``llmperf.pedantic(...)``) so its users feel at home; every metric it records
is gated by the plugin when the test finishes.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import distributed, drift
from .device import device_key, is_oom
from .options import Policy, convert_keywords
from .results import STATUS_OOM, Metric, TestResult
from .timing import RoundTimer, measure_rounds, median, unsettled_note, warm_up


class OutOfMemoryResult(Exception):
    """Ends a test whose measured call ran out of memory; the plugin records status ``oom``."""


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
    rerun: Callable[[], None] | None = None
    #: The call itself, kept for profiling a failure.
    call: Callable[[], Any] | None = None

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


@dataclass
class ABResult:
    reference: Measurement
    candidate: Measurement
    #: reference time / candidate time, per interleaved pair.
    ratios: list[float]

    @property
    def speedup(self) -> float:
        return median(self.ratios)


@contextlib.contextmanager
def exclusive_device(device: Any) -> Iterator[None]:
    """Under pytest-xdist, performance tests never overlap on one device."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    name = f"pytest-llmperf-{device_key(device)}-{device.type}{device.index or 0}.lock"
    with open(Path(tempfile.gettempdir()) / name, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_memory(device: Any) -> None:
    import gc

    gc.collect()
    if device.type != "cpu":
        import torch

        torch.accelerator.empty_cache()


class LLMPerf:
    """The object behind the ``llmperf`` fixture; see docs/internals.md for the contract."""

    def __init__(self, result: TestResult, policy: Policy, device: Any, tier: str) -> None:
        self.result = result
        self.policy = policy
        self.device = device
        self.tier = tier
        self.measurements: list[Measurement] = []
        self.last: Measurement | None = None
        #: Which measurement produced each metric, to re-measure an unclear one.
        self.owners: dict[str, Measurement] = {}
        self._owner: Measurement | None = None
        #: Set by the plugin when a baseline exists: metric names -> the unclear ones.
        self.unclear: Callable[[list[str]], list[str]] | None = None

    @contextlib.contextmanager
    def _oom_as_status(self) -> Iterator[None]:
        """An out-of-memory error becomes status ``oom`` and ends the test.

        The error's frames hold the activations that did not fit: they are
        cleared, and the error dropped, before memory is returned to the device.
        """
        message = None
        try:
            yield
        except BaseException as exc:
            if not is_oom(exc):
                raise
            message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            traceback.clear_frames(exc.__traceback__)
        if message is not None:
            self.result.status = STATUS_OOM
            self.result.notes.append(f"out of memory: {message}")
            _free_memory(self.device)
            raise OutOfMemoryResult(message)

    # -- configuration -------------------------------------------------------------
    @property
    def group(self) -> str:
        return self.result.group

    @group.setter
    def group(self, value: str) -> None:
        self.result.group = str(value)

    def params(self, **columns: Any) -> None:
        """Configuration columns (model, context, mode, ...) for reports and baselines."""
        self.result.params.update(columns)

    # -- measuring -------------------------------------------------------------------
    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.pedantic(fn, args=args, kwargs=kwargs)

    def pedantic(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        setup: Callable[[], Any] | None = None,
        warmup: int | str | None = None,
        rounds: int | str | None = None,
        items: float | None = None,
        item_unit: str = "tokens",
        flops: float | None = None,
        bytes: float | None = None,  # noqa: A002 - pytest-benchmark-like keyword
        name: str | None = None,
        max_time: float | None = None,
        dtype: Any = None,
    ) -> Any:
        """Measure ``fn(*args, **kwargs)`` with full control; returns its last result.

        ``flops`` / ``bytes`` per call add MFU / MBU against the peak for ``dtype``
        (a torch dtype; fp32 when omitted).
        """
        overrides = {
            k: v
            for k, v in {
                "warmup": warmup,
                "rounds": rounds,
                "items": items,
                "flops": flops,
                "bytes": bytes,
                "max_time": max_time,
            }.items()
            if v is not None
        }
        policy = replace(
            self.policy, **convert_keywords(overrides, self.policy, "llmperf.pedantic")
        )
        prefix = f"{name}." if name else ""
        if f"{prefix}time" in self.result.metrics:
            raise ValueError(
                "llmperf: this test already measured a callable; pass name=... to "
                "llmperf.pedantic for each further measurement"
            )
        kwargs = kwargs or {}

        def call() -> Any:
            return fn(*args, **kwargs)

        m = Measurement(name or "", call=call)
        out: list[Any] = [None]

        def run() -> None:
            out[0] = self._measure(m, call, policy, setup, extra=bool(m.times))
            self._owner = m
            try:
                self._record_measurement(m, policy, prefix, item_unit, dtype)
            finally:
                self._owner = None

        m.rerun = run
        self.measurements.append(m)
        self.last = m
        run()
        self._settle(m, policy)
        return out[0]

    def _settle(self, m: Measurement, policy: Policy) -> None:
        """Re-measure (pooling rounds) while this measurement's metrics are past the
        tolerance but unclear: done here, while the objects the call uses are alive."""
        for _ in range(policy.remeasure):
            names = [n for n, owner in self.owners.items() if owner is m]
            if self.unclear is None or m.rerun is None or not self.unclear(names):
                return
            m.rerun()

    def _measure(
        self,
        m: Measurement,
        call: Callable[[], Any],
        policy: Policy,
        setup: Callable[[], Any] | None,
        extra: bool,
    ) -> Any:
        from .energy import EnergyMeter
        from .memory import PeakMemory, peak_of_call

        timer = RoundTimer(self.device)
        use_drift = (
            policy.drift_correction
            if policy.drift_correction is not None
            else self.device.type == "cpu"
        )
        refs: list[float] = []
        with exclusive_device(self.device), self._oom_as_status():
            if not extra:
                m.warmup_times = warm_up(
                    timer, call, policy.warmup, budget_s=policy.max_time, setup=setup
                )
            on_cpu = self.device.type == "cpu"
            mem = PeakMemory(self.device)
            meter = EnergyMeter(self.device)
            if not on_cpu:
                mem.start()
            distributed.barrier()
            meter.start()
            if use_drift:
                drift.mark()  # the first batch's drift window starts here
            rounds = measure_rounds(
                timer,
                call,
                rounds=policy.rounds,
                min_rounds=policy.min_rounds,
                max_rounds=policy.max_rounds,
                max_time=policy.max_time,
                precision=policy.tolerance_for("time", "time") / 4,
                setup=setup,
                between_batches=(lambda: refs.append(drift.reference_time()))
                if use_drift
                else None,
            )
            energy = meter.stop()
            distributed.barrier()
            rounds.times = distributed.slowest(rounds.times, self.device)
            # CPU: RSS needs a pass of its own (see memory.peak_of_call).
            peak = peak_of_call(self.device, call, setup) if on_cpu else mem.stop()
        m.times += rounds.times
        if use_drift:
            m.normalized += drift.normalize(rounds.times, rounds.batch_sizes, refs)
        if m.peak_memory is None or peak.peak > m.peak_memory:
            m.peak_memory = peak.peak
        if peak.reserved is not None:
            m.peak_memory_reserved = max(m.peak_memory_reserved or 0, peak.reserved)
        m.peak_exact = peak.exact
        if energy is not None:
            joules, m.energy_window_s = energy
            m.energy_j = joules / max(1, len(rounds.times))
        note = unsettled_note(m.times, m.warmup_times)
        if note and note not in self.result.notes:
            self.result.notes.append(f"{m.name + ': ' if m.name else ''}{note}")
        return rounds.result

    def _record_measurement(
        self, m: Measurement, policy: Policy, prefix: str, unit: str, dtype: Any = None
    ) -> None:
        from .energy import MIN_WINDOW_S

        has_items = policy.items is not None and policy.items > 0
        self._add(
            policy,
            Metric(
                f"{prefix}time",
                m.median,
                "s",
                False,
                "time",
                list(m.times),
                normalized_samples=list(m.normalized),
                gated=not has_items,
            ),
        )
        if has_items:
            items = float(policy.items or 0)
            self._add(
                policy,
                Metric(
                    f"{prefix}throughput",
                    items / m.median,
                    f"{unit}/s",
                    True,
                    "throughput",
                    [items / t for t in m.times if t > 0],
                    normalized_samples=[items / t for t in m.normalized if t > 0],
                ),
            )
        self._add(
            policy,
            Metric(
                f"{prefix}peak_memory",
                float(m.peak_memory or 0),
                "B",
                False,
                "memory",
                gated=m.peak_exact,
            ),
        )
        if m.peak_memory_reserved is not None:
            reserved_name = "peak_memory_reserved" if self.device.type != "cpu" else "peak_rss"
            self._add(
                policy,
                Metric(
                    f"{prefix}{reserved_name}",
                    float(m.peak_memory_reserved),
                    "B",
                    False,
                    "memory",
                    gated=self.device.type != "cpu",
                ),
            )
        if m.energy_j is not None:
            long_enough = m.energy_window_s >= MIN_WINDOW_S
            if not long_enough:
                self.result.notes.append(
                    f"energy window {m.energy_window_s:.2f} s is shorter than {MIN_WINDOW_S} s "
                    "(NVML updates every 20-100 ms): reported, not gated; raise max_time or rounds"
                )
            self._add(
                policy,
                Metric(f"{prefix}energy", m.energy_j, "J", False, "energy", gated=long_enough),
            )
        if policy.flops or policy.bytes:
            from .calibration import efficiency

            for key, value in efficiency(
                m.median, flops=policy.flops, bytes=policy.bytes, device=self.device, dtype=dtype
            ).items():
                self._add(
                    policy, Metric(f"{prefix}{key}", value, "", True, "efficiency", gated=False)
                )

    def _add(self, policy: Policy, metric: Metric) -> None:
        metric.gated = metric.gated and policy.gates(metric.name)
        if metric.tolerance is None:
            metric.tolerance = policy.tolerance_for(metric.name, metric.kind)
        if self._owner is not None:
            self.owners[metric.name] = self._owner
        self.result.add(metric)

    # -- custom metrics ------------------------------------------------------------
    def record(
        self,
        name: str,
        value: float,
        unit: str = "",
        *,
        higher_is_better: bool = False,
        kind: str = "other",
        tolerance: float | str | None = None,
        samples: list[float] | None = None,
        gated: bool = True,
    ) -> None:
        """Add a metric that is gated like the measured ones."""
        from .options import parse_tolerance

        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"llmperf.record({name!r}): value {value!r} is not a number") from None
        if math.isnan(value):
            raise ValueError(f"llmperf.record({name!r}): value is NaN")
        tol = None if tolerance is None else parse_tolerance(tolerance, f"llmperf.record({name!r})")
        self._add(
            self.policy,
            Metric(
                name,
                value,
                unit,
                higher_is_better,
                kind,
                [float(s) for s in samples] if samples else [],
                tolerance=tol,
                gated=gated,
            ),
        )

    # -- A/B ---------------------------------------------------------------------------
    def ab(
        self,
        reference: Callable[..., Any],
        candidate: Callable[..., Any],
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        warmup: int | str | None = None,
        rounds: int | str | None = None,
        items: float | None = None,
        item_unit: str = "tokens",
        name: str = "ab",
        tolerance: float | str | None = None,
    ) -> ABResult:
        """Measure reference and candidate interleaved (A B A B ...); gate on their ratio.

        Machine drift moves both sides of a pair alike, so the ratio holds still
        where absolute times on a shared runner do not.
        """
        overrides = {k: v for k, v in {"warmup": warmup, "rounds": rounds}.items() if v is not None}
        policy = replace(self.policy, **convert_keywords(overrides, self.policy, "llmperf.ab"))
        kwargs = kwargs or {}
        ref = Measurement(f"{name}.reference", call=lambda: reference(*args, **kwargs))
        cand = Measurement(f"{name}.candidate", call=lambda: candidate(*args, **kwargs))
        ratios: list[float] = []
        timer = RoundTimer(self.device)

        def pair() -> float:
            t_ref = timer.run(ref.call, 1)[0][0]  # type: ignore[arg-type]
            t_cand = timer.run(cand.call, 1)[0][0]  # type: ignore[arg-type]
            ref.times.append(t_ref)
            cand.times.append(t_cand)
            ratios.append(t_ref / t_cand if t_cand > 0 else math.inf)
            return ratios[-1]

        def run() -> None:
            with exclusive_device(self.device), self._oom_as_status():
                if not ratios:
                    for mm in (ref, cand):
                        mm.warmup_times = warm_up(timer, mm.call, policy.warmup, policy.max_time)  # type: ignore[arg-type]
                measure_rounds(
                    _PairTimer(pair),
                    lambda: None,
                    rounds=policy.rounds,
                    min_rounds=policy.min_rounds,
                    max_rounds=policy.max_rounds,
                    max_time=2 * policy.max_time,
                    precision=policy.tolerance_for(f"{name}.speedup", "ratio") / 4,
                )
            self._owner = holder
            for mm in (ref, cand):
                metric = Metric(
                    f"{mm.name}.time", mm.median, "s", False, "time", list(mm.times), gated=False
                )
                self._add(policy, metric)
                if items:
                    self._add(
                        policy,
                        Metric(
                            f"{mm.name}.throughput",
                            items / mm.median,
                            f"{item_unit}/s",
                            True,
                            "throughput",
                            gated=False,
                        ),
                    )
            self._add(
                policy,
                Metric(
                    f"{name}.speedup",
                    median(ratios),
                    "x",
                    True,
                    "ratio",
                    list(ratios),
                    tolerance=None
                    if tolerance is None
                    else convert_keywords({"tolerance": tolerance}, policy, "llmperf.ab")[
                        "tolerances"
                    ]["time"],
                ),
            )
            self._owner = None

        holder = Measurement(f"{name}.speedup", rerun=run)
        self.measurements.append(holder)
        run()
        self._settle(holder, policy)
        self.last = cand
        return ABResult(ref, cand, ratios)

    def release(self) -> None:
        """Forget the measured callables once the verdict is given."""
        for m in self.measurements:
            m.call = None
            m.rerun = None
        self.owners.clear()

    # -- diagnosis ---------------------------------------------------------------------
    def profile(self, directory: Path, memory: bool) -> Path | None:
        """Re-run the last measured call once under the profiler; returns the saved file."""
        m = next((x for x in reversed(self.measurements) if x.call is not None), None)
        if m is None or m.call is None:
            return None
        import torch

        directory.mkdir(parents=True, exist_ok=True)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.result.nodeid)[-150:]
        if memory and self.device.type == "cuda":
            path = directory / f"{stem}.memory.pickle"
            torch.cuda.memory._record_memory_history(max_entries=100000)
            try:
                m.call()
                torch.cuda.synchronize(self.device)
                torch.cuda.memory._dump_snapshot(str(path))
            finally:
                torch.cuda.memory._record_memory_history(enabled=None)
            return path
        path = directory / f"{stem}.trace.json"
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities, profile_memory=memory) as prof:
            m.call()
            if self.device.type != "cpu":
                torch.accelerator.synchronize(self.device.index)
        prof.export_chrome_trace(str(path))
        return path


class _PairTimer:
    """Adapts the A/B pair step to ``measure_rounds``: one round is one interleaved pair,
    and its "time" is the pair's ratio, so adaptive rounds stop when the ratio is certain."""

    def __init__(self, pair: Callable[[], float]) -> None:
        self.pair = pair

    def run(self, fn: Any, n: int, setup: Any = None) -> tuple[list[float], None]:
        ratios = []
        for _ in range(n):
            ratios.append(self.pair())
        return ratios, None
