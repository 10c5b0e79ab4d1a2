"""Achievable peaks of the device a run measures on: the roofline's two slopes.

``device_peaks()`` answers with the datasheet for a known accelerator
(``device_specs``) and otherwise measures: a large matrix product gives FLOP/s
for a dtype, a large device-to-device copy gives bytes/s (read + write). The
measurements are cached per process (and per intra-op thread count on the CPU:
two threads ran fp32 products about twice as fast as one) and sized to take well
under two seconds on a 2-core CPU. ``reportable_efficiency()`` turns a measured
time plus known FLOPs / bytes into MFU / MBU, fractions of those peaks, keeping
only the fractions it can vouch for (at most 1).

The product is timed in both operand layouts, ``a @ b`` and ``a @ w.T`` (what
``nn.Linear`` runs), and the faster one is the peak: on an AVX2 CPU without
native bf16 (torch 2.13), a bf16 ``a @ b`` took a generic path at 0.9-1.3
GFLOP/s while ``a @ w.T`` reached 9-10 GFLOP/s, so a peak measured in one layout
only was 7-8x too low and a bf16 model's MFU read above 100%.

torch is imported inside functions only.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

from ..measure import distributed
from ..measure.device import current_device, device_name
from .device_specs import Peaks, canonical_dtype
from .device_specs import lookup as lookup_spec
from .interconnect import Link


def _torch_device(device: Any = None) -> Any:
    """``device`` as a torch.device; None means the device the run uses."""
    import torch

    return current_device() if device is None else torch.device(device)


def _sync(device: Any) -> None:
    import torch

    if device.type != "cpu":
        torch.accelerator.synchronize(device.index)


def _torch_dtype(key: str) -> Any:
    import torch

    # int8 / fp8 matmuls need special kernels (torch._int_mm, _scaled_mm) that not every
    # device has: the calibration measures them as bf16, a lower bound of the peak.
    return {
        "fp32": torch.float32,
        "tf32": torch.float32,
        "bf16": torch.bfloat16,
        "fp16": torch.float16,
        "int8": torch.bfloat16,
        "fp8": torch.bfloat16,
    }[key]


def _best_rate(fn: Any, work: float, device: Any, budget_s: float, min_reps: int = 3) -> float:
    """Highest work/s over repeated calls of ``fn`` (one warm-up), within ``budget_s``."""
    fn()
    _sync(device)
    best = 0.0
    t_end = time.perf_counter() + budget_s
    reps = 0
    while reps < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        dt = time.perf_counter() - t0
        if dt > 0:
            best = max(best, work / dt)
        reps += 1
        if reps >= 50:
            break
    return best


@functools.cache
def measure_matmul_flops(device: str = "cpu", dtype: str = "fp32", threads: int = 0) -> float:
    """FLOP/s of an (n x n) product on ``device`` in ``dtype`` (cached).

    n is 1024 on a CPU (512 for half precision, which many CPUs emulate), and
    8192 (4096 in fp32) on accelerators, so the product saturates the matrix units.
    Both operand layouts are timed and the faster counts: a peak is the best the
    device reaches, and a library may have a fast kernel for one layout only
    (bf16 on an AVX2 CPU: 7-8x apart). ``threads`` > 0 measures with that many
    intra-op threads (a CPU's peak depends on them; they are part of the cache key).
    """
    import torch

    dev = torch.device(device)
    key = canonical_dtype(dtype)
    tdtype = _torch_dtype(key)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def make(n: int) -> tuple[Any, Any]:
        a = torch.randn(n, n, generator=gen).to(device=dev, dtype=tdtype)
        b = torch.randn(n, n, generator=gen).to(device=dev, dtype=tdtype)
        return a, b

    if dev.type == "cpu":
        # 1024 is past the size where a few cores reach their best rate (512 is
        # ~2x slower per FLOP); half precision without native units is slow, so
        # it is measured at 512.
        n = 1024 if key in ("fp32", "tf32") else 512
        a, b = make(n)
        budget = 0.3
    else:
        n = 4096 if key == "fp32" else 8192
        a, b = make(n)
        budget = 0.2
    old_tf32 = None
    if dev.type == "cuda" and key in ("fp32", "tf32"):
        old_tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
    old_threads = torch.get_num_threads()
    if dev.type == "cpu" and threads > 0 and threads != old_threads:
        torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            plain = _best_rate(lambda: torch.mm(a, b), 2.0 * n**3, dev, budget / 2)
            # b.t() is a transposed view: the layout of nn.Linear's x @ weight.T.
            linear = _best_rate(lambda: torch.mm(a, b.t()), 2.0 * n**3, dev, budget / 2)
            return max(plain, linear)
    finally:
        if old_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = old_tf32
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)


@functools.cache
def measure_copy_bandwidth(device: str = "cpu", threads: int = 0) -> float:
    """Bytes/s (read + write) of a large device-to-device copy (cached).

    64 MiB on a CPU (beyond the last-level cache), 1 GiB on accelerators;
    ``threads`` > 0 copies with that many intra-op threads (CPU).
    """
    import torch

    dev = torch.device(device)
    nbytes = (64 if dev.type == "cpu" else 1024) * 2**20
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    old_threads = torch.get_num_threads()
    if dev.type == "cpu" and threads > 0 and threads != old_threads:
        torch.set_num_threads(threads)
    try:
        budget = 0.15 if dev.type == "cpu" else 0.2
        return _best_rate(lambda: dst.copy_(src), 2.0 * nbytes, dev, budget)
    finally:
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)


@functools.cache
def measure_launch_overhead(device: str = "cpu") -> float:
    """Seconds per tiny eager op (dispatch + kernel launch), the floor under every kernel.

    Eager PyTorch pays it once per kernel whatever the work; it is what a roofline
    misses for small models (``estimate(..., launch_overhead_s=...)`` adds it).
    """
    import torch

    dev = torch.device(device)
    x = torch.zeros(16, device=dev)
    y = torch.empty_like(x)
    n = 200

    def burst() -> None:
        for _ in range(n):
            torch.add(x, 1.0, out=y)

    rate = _best_rate(burst, float(n), dev, 0.05, min_reps=3)
    return 1.0 / rate


def measure_link(
    group: Any = None, sizes: tuple[int, int] = (4, 8 * 2**20), budget_s: float = 0.3
) -> Link:
    """The link of a process group, measured with its own ``all_reduce``: a collective.

    Every rank of ``group`` (None: the default group) must call it at the same time.
    A burst of all-reduces of ``sizes[0]`` bytes gives the latency per ring step
    (``time / 2 (N-1)``) and one of ``sizes[1]`` bytes the bandwidth per direction
    (``2 (N-1)/N x n / (time - 2 (N-1) x latency)``, ``interconnect.all_reduce_s``
    inverted). Each is the best of several repetitions after a warm-up, a barrier
    before each; the ranks then take the slowest rank's times so all return the same
    Link. Tensors live on the backend's device (cuda for nccl, cpu for gloo). Not
    cached: a rank answering from a cache would leave the others waiting.
    """
    import torch
    import torch.distributed as dist

    small, large = sizes
    if not (isinstance(small, int) and isinstance(large, int) and 4 <= small < large):
        raise ValueError(
            f"measure_link: sizes must be bytes (small, large), 4 <= small < large, got {sizes!r}"
        )
    if not budget_s > 0:
        raise ValueError(f"measure_link: budget_s must be > 0, got {budget_s!r}")
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "measure_link needs a process group: call torch.distributed.init_process_group() "
            "on every rank first"
        )
    world = dist.get_world_size(group)
    if world < 2:
        raise ValueError(f"measure_link: the process group has {world} rank; nothing to measure")
    backend = str(dist.get_backend(group))
    dev = distributed.collective_device(group=group)
    tiny = torch.zeros(small // 4, dtype=torch.float32, device=dev)
    big = torch.zeros(large // 4, dtype=torch.float32, device=dev)
    burst = 10  # tiny all-reduces per timing: a barrier's skew spreads over them

    def timed(t: Any, calls: int) -> float:
        dist.barrier(group)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(calls):
            dist.all_reduce(t, group=group)
        _sync(dev)
        return (time.perf_counter() - t0) / calls

    # Warm-up (connections, buffers), which also sizes the repetitions: every rank
    # must run the same number of collectives, so the count comes from agreed times.
    # The slowest rank's times (distributed.slowest): every rank computes the same.
    warm = distributed.slowest([timed(tiny, burst) * burst + timed(big, 1)], dev, group)[0]
    reps = max(3, min(20, int(budget_s / max(warm, 1e-6))))
    best_tiny = best_big = math.inf
    for _ in range(reps):
        best_tiny = min(best_tiny, timed(tiny, burst))
        best_big = min(best_big, timed(big, 1))
    t_tiny, t_big = distributed.slowest([best_tiny, best_big], dev, group)
    steps = 2 * (world - 1)
    latency = t_tiny / steps
    moving = t_big - steps * latency
    if moving <= 0.1 * t_big:  # latency not resolvable against this size: all of it is moving
        moving = t_big
    bandwidth = steps / world * (big.numel() * 4) / moving
    return Link(f"{backend} ({world} ranks, measured)", bandwidth, latency, source="calibrated")


def _float32_key(device: Any) -> str:
    """fp32 matmuls run on TF32 units when PyTorch allows it (CUDA only)."""
    import torch

    if device.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "fp32"


def _cpu_power_w() -> float | None:
    """The CPU package's sustained power limit from Linux RAPL, where readable."""
    path = "/sys/class/powercap/intel-rapl:0/constraint_0_power_limit_uw"
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip()) / 1e6
    except (OSError, ValueError):
        return None


def device_peaks(device: Any = None, dtype: Any = None, *, calibrate: bool = False) -> Peaks:
    """Peak FLOP/s for ``dtype`` (default float32) and bytes/s of ``device``.

    A known accelerator answers from its datasheet (``source="datasheet: <name>"``);
    the CPU, an unknown accelerator, or ``calibrate=True`` measure (``"calibrated"``).
    ``device`` is a torch.device or string; None means the device the run uses.
    """
    dev = _torch_device(device)
    key = canonical_dtype(dtype if dtype is not None else "fp32")
    if key == "fp32":
        key = _float32_key(dev)
    name = device_name(dev)
    if dev.type != "cpu" and not calibrate:
        try:
            return lookup_spec(name).peaks(key, name)
        except ValueError:  # no datasheet entry for this accelerator: measure it
            pass
    dev_str = str(dev)
    import torch

    # On the CPU the rate depends on the intra-op threads the call runs with now.
    threads = torch.get_num_threads() if dev.type == "cpu" else 0
    flops = measure_matmul_flops(dev_str, key, threads)
    bw = measure_copy_bandwidth(dev_str, threads)
    power = _cpu_power_w() if dev.type == "cpu" else None
    return Peaks(flops, bw, "calibrated", power, name)


#: What a fraction above 1 says about the peak it was divided by: (metric, source) -> why.
_WHY_OVER = {
    ("mfu", "calibrated"): "the peak is underestimated (measured in a busy spell, or on a "
    "kernel or thread count the call does not use)",
    ("mbu", "calibrated"): "the call's bytes stay in cache (the peak is a copy larger than the "
    "last-level cache), or the peak is underestimated",
    ("mfu", "datasheet"): "the FLOP count, or the dtype the peak is for, does not match the call",
    ("mbu", "datasheet"): "the byte count does not match the call, or the bytes stay in cache",
}
_SCALES = {
    "FLOP": (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)),
    "B": (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10)),
}


def _rates(achieved: float, peak: float, unit: str) -> tuple[str, str]:
    """Two rates in one scale (that of the larger), so a note compares like with like."""
    top = max(abs(achieved), abs(peak))
    name, scale = next(((n, s) for n, s in _SCALES[unit] if top >= s), (unit, 1.0))
    return f"{achieved / scale:.3g} {name}/s", f"{peak / scale:.3g} {name}/s"


@dataclass(frozen=True)
class Efficiency:
    """One MFU or MBU as every output shows it: the fraction where it is reported, else
    None and why not. The one decision (:func:`decide_efficiency`) behind the metric the
    fixture records, the note the terminal prints and the cell the Markdown and HTML
    tables show, so they cannot disagree (a test once read ``mfu not reported: (333%)``
    in the terminal and ``mfu 70.8%`` in the HTML report)."""

    name: str
    fraction: float | None
    why: str = ""

    @property
    def reported(self) -> bool:
        return self.fraction is not None

    def cell(self) -> str:
        """A table cell: ``70.8%``, or ``-`` where it is not reported."""
        return "-" if self.fraction is None else f"{self.fraction * 100.0:.1f}%"


def decide_efficiency(
    name: str,
    amount: float,
    seconds: float,
    peak: float,
    kind: str,
    what: str,
    unit: str,
    source: str = "calibrated",
) -> Efficiency:
    """Whether ``amount`` (FLOPs or bytes) in ``seconds`` against ``peak`` (per second) is an
    MFU / MBU that can be reported as a fact: a fraction from 0 to 1 of a usable peak.

    A call cannot beat the device's peak, so a fraction above 1 is a fact about the peak
    (too low) or the counts, not about the call; it is left out and ``why`` names the
    achieved rate, the peak, where the peak came from and why it cannot be right.
    ``kind``: "measured" or "datasheet"; ``what``: the peak's words ("peak of cpu fp32").
    """
    if not (peak > 0 and math.isfinite(peak)):
        return Efficiency(name, None, f"{name} not reported: no usable {kind} {what} ({peak!r})")
    achieved = float(amount) / seconds
    fraction = achieved / peak
    if not (math.isfinite(fraction) and fraction >= 0):  # a negative or unbounded count
        return Efficiency(name, None, f"{name} not reported: {amount!r} is not a count")
    if fraction > 1.0:
        got, top = _rates(achieved, peak, unit)
        what_first, _, of = what.partition(" of ")
        return Efficiency(
            name,
            None,
            f"{name} not reported: achieved {got} exceeds the {kind} {what_first} {top} "
            f"of {of} ({fraction:.0%}); {_WHY_OVER[name, source]}",
        )
    return Efficiency(name, fraction)


def recorded_efficiency(metric: Any) -> Efficiency:
    """An MFU / MBU metric as the outputs show it (``output.tables.efficiency_cell``),
    recorded as a fraction or in %: reported only where it is one a measurement could
    have reported (:func:`decide_efficiency`'s bound), so a value recorded by hand or read
    from an older report cannot show what the measuring side would have left out."""
    name = str(getattr(metric, "name", "") or "efficiency").rsplit(".", 1)[-1]
    value = getattr(metric, "value", None)
    if metric is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return Efficiency(name, None, f"{name} not recorded")
    unit = (getattr(metric, "unit", "") or "").strip().lower()
    fraction = float(value) / 100.0 if unit in ("%", "percent") else float(value)
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        return Efficiency(
            name, None, f"{name} not reported: {fraction:.0%} is not a fraction of a peak"
        )
    return Efficiency(name, fraction)


def reportable_efficiency(
    seconds: float,
    flops: float | None = None,
    bytes: float | None = None,  # noqa: A002 - the fixture's keyword
    device: Any = None,
    dtype: Any = None,
    peaks: Peaks | None = None,
) -> tuple[dict[str, float], list[str]]:
    """The MFU / MBU that can be reported as facts, and a note for each one left out
    (each decided by :func:`decide_efficiency`).

    On a 2-core AVX2 CPU a bf16 model read as 138% MFU against a peak measured on a
    slow kernel: such a fraction is left out, with a note saying why. ``peaks`` skips
    the lookup; fractions, 0.42 = 42 %.
    """
    if (flops is None and bytes is None) or not seconds or seconds <= 0:
        return {}, []
    if peaks is None:
        peaks = device_peaks(device, dtype)
    key = canonical_dtype(dtype if dtype is not None else "fp32")
    source = "datasheet" if peaks.source.startswith("datasheet") else "calibrated"
    kind = "measured" if source == "calibrated" else "datasheet"
    where = peaks.device_name or _device_type(device)
    out: dict[str, float] = {}
    notes: list[str] = []
    for name, amount, peak, unit, what in (
        ("mfu", flops, peaks.flops_per_s, "FLOP", f"peak of {where} {key}"),
        ("mbu", bytes, peaks.bytes_per_s, "B", f"bandwidth of {where}"),
    ):
        if amount is None:
            continue
        e = decide_efficiency(name, amount, seconds, peak, kind, what, unit, source)
        if e.fraction is not None:
            out[name] = e.fraction
        else:
            notes.append(e.why)
    return out, notes


def _device_type(device: Any) -> str:
    """``"cpu"``, ``"cuda"``, ... for a note, without measuring anything."""
    if device is None:
        return "this device"
    return str(getattr(device, "type", device)).split(":")[0]
