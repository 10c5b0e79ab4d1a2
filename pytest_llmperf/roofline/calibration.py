"""Achievable peaks of the device a run measures on: the roofline's two slopes.

``device_peaks()`` answers with the datasheet for a known accelerator
(``device_specs``) and otherwise measures: a large matrix product gives FLOP/s
for a dtype, a large device-to-device copy gives bytes/s (read + write). The
measurements are cached per process and sized to take well under two seconds on
a 2-core CPU. ``efficiency()`` turns a measured time plus known FLOPs / bytes
into MFU / MBU, fractions of those peaks.

torch is imported inside functions only.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from .device_specs import Peaks, canonical_dtype
from .device_specs import lookup as lookup_spec


def _torch_device(device: Any = None) -> Any:
    """``device`` as a torch.device; None means the device the run uses."""
    import torch

    from ..measure.device import current_device

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
def measure_matmul_flops(device: str = "cpu", dtype: str = "fp32") -> float:
    """FLOP/s of an (n x n) @ (n x n) product on ``device`` in ``dtype`` (cached).

    n is 1024 on a CPU (512 for half precision, which many CPUs emulate), and
    8192 (4096 in fp32) on accelerators, so the product saturates the matrix units.
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
    try:
        with torch.no_grad():
            return _best_rate(lambda: torch.mm(a, b), 2.0 * n**3, dev, budget)
    finally:
        if old_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = old_tf32


@functools.cache
def measure_copy_bandwidth(device: str = "cpu") -> float:
    """Bytes/s (read + write) of a large device-to-device copy (cached).

    64 MiB on a CPU (beyond the last-level cache), 1 GiB on accelerators.
    """
    import torch

    dev = torch.device(device)
    nbytes = (64 if dev.type == "cpu" else 1024) * 2**20
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    return _best_rate(lambda: dst.copy_(src), 2.0 * nbytes, dev, 0.15 if dev.type == "cpu" else 0.2)


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
    from ..measure.device import device_name

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
    flops = measure_matmul_flops(dev_str, key)
    bw = measure_copy_bandwidth(dev_str)
    power = _cpu_power_w() if dev.type == "cpu" else None
    return Peaks(flops, bw, "calibrated", power, name)


def efficiency(
    seconds: float,
    flops: float | None = None,
    bytes: float | None = None,  # noqa: A002 - the fixture's keyword
    device: Any = None,
    dtype: Any = None,
    peaks: Peaks | None = None,
) -> dict[str, float]:
    """MFU / MBU of a call that took ``seconds``: achieved FLOP/s and bytes/s over peak.

    Returns ``{"mfu": ...}`` when ``flops`` is given, ``{"mbu": ...}`` when ``bytes`` is,
    both when both are (fractions, 0.42 = 42 %); an empty dict for neither or a
    non-positive time. ``peaks`` skips the lookup (e.g. peaks already computed).
    """
    out: dict[str, float] = {}
    if (flops is None and bytes is None) or not seconds or seconds <= 0:
        return out
    if peaks is None:
        peaks = device_peaks(device, dtype)
    if flops is not None:
        out["mfu"] = float(flops) / seconds / peaks.flops_per_s
    if bytes is not None:
        out["mbu"] = float(bytes) / seconds / peaks.bytes_per_s
    return out
