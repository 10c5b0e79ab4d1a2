"""NVIDIA GPU facts through NVML: persistence, other processes, clocks, throttle reasons,
application clocks and the energy counter's update interval; each read may fail alone."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from statistics import median
from typing import Any

from ..extras import hint
from ..measure.device import current_device, device_name
from ..measure.energy import _nvml_handle
from .facts import fact, unknown
from .plan import Plan

#: NVML clock event (throttle) reasons, bit -> words.
CLOCK_REASONS = {
    0x1: "gpu idle",
    0x2: "application clocks setting",
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x10: "sync boost",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
    0x100: "display clock setting",
    0x200: "board limit",
    0x400: "reliability",
}
#: Reasons that do not slow a measurement by themselves.
BENIGN_REASONS = 0x1 | 0x2 | 0x100


def decode_clock_reasons(mask: int) -> list[str]:
    """The words for an NVML clocks-event bit mask (unknown bits by their hex value)."""
    names = [name for bit, name in CLOCK_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_REASONS)
    if rest:
        names.append(f"other 0x{rest:x}")
    return names


def counter_interval(readings: Sequence[tuple[float, float]]) -> float | None:
    """Median seconds between changes of a polled counter; (time, value) pairs in order.

    The first change comes at an arbitrary phase after polling started, so only
    the intervals between changes count.
    """
    changes = [t for (t, v), (_, prev) in zip(readings[1:], readings, strict=False) if v != prev]
    gaps = [b - a for a, b in zip(changes, changes[1:], strict=False)]
    return median(gaps) if gaps else None


#: ``nvml_facts``'s reader of one NVML device query: ``ask("nvmlDeviceGet...", *args)``.
Ask = Callable[..., Any]


def nvml_facts(
    nvml: Any,
    handle: Any,
    exclude_pids: Sequence[int] = (),
    changes: int = 5,
    timeout_s: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict]:
    """Persistence, other processes, clocks, throttle reasons, application clocks and the
    energy counter's update interval of one NVML device; each fact known or unknown."""

    def ask(fn: str, *args: Any) -> Any:
        return getattr(nvml, fn)(handle, *args)

    readers: dict[str, Callable[[], dict]] = {
        "gpu_persistence": lambda: _persistence(ask),
        "gpu_other_processes": lambda: _processes(ask, exclude_pids),
        "gpu_sm_clock": lambda: _clocks(ask, 1, "SM"),
        "gpu_memory_clock": lambda: _clocks(ask, 2, "memory"),
        "gpu_clock_reasons": lambda: _reasons(ask),
        "gpu_application_clocks": lambda: _app_clocks(ask),
        "gpu_energy_interval": lambda: _energy_interval(ask, changes, timeout_s, clock),
    }
    facts: dict[str, dict] = {}
    for name, read in readers.items():
        try:
            facts[name] = read()
        except Exception as e:  # NVMLError_NotSupported, NoPermission, missing function
            facts[name] = unknown(f"NVML: {type(e).__name__}: {e}".rstrip(": "))
    return facts


def _persistence(ask: Ask) -> dict:
    on = bool(ask("nvmlDeviceGetPersistenceMode"))
    return fact(on, "on" if on else "off (driver state is torn down between runs)")


def _processes(ask: Ask, exclude_pids: Sequence[int]) -> dict:
    """Other processes on the GPU (this one and ``exclude_pids``, the probes, left out)."""
    procs = list(ask("nvmlDeviceGetComputeRunningProcesses"))
    with contextlib.suppress(Exception):
        procs += list(ask("nvmlDeviceGetGraphicsRunningProcesses"))
    skip = {os.getpid(), *exclude_pids}
    others = sorted({int(p.pid) for p in procs} - skip)
    text = "none" if not others else f"{len(others)} (pids {', '.join(map(str, others[:8]))})"
    return fact(others, text)


def _clocks(ask: Ask, kind: int, label: str) -> dict:
    """One clock (1: SM, 2: memory) now, with its maximum and application clocks if known."""
    cur = int(ask("nvmlDeviceGetClockInfo", kind))
    out: dict[str, Any] = {"current_mhz": cur}
    words = [f"{cur} MHz"]
    for key, fn in (
        ("max_mhz", "nvmlDeviceGetMaxClockInfo"),
        ("default_app_mhz", "nvmlDeviceGetDefaultApplicationsClock"),
        ("app_mhz", "nvmlDeviceGetApplicationsClock"),
    ):
        try:
            out[key] = int(ask(fn, kind))
        except Exception:
            out[key] = None
    if out["max_mhz"]:
        words.append(f"max {out['max_mhz']}")
    if out["default_app_mhz"]:
        words.append(f"default {out['default_app_mhz']}")
    return fact(out, f"{label} " + ", ".join(words) + " MHz" * (len(words) > 1))


def _reasons(ask: Ask) -> dict:
    """Why the clocks are held back now (older NVML: the throttle-reasons name)."""
    try:
        mask = int(ask("nvmlDeviceGetCurrentClocksEventReasons"))
    except AttributeError:
        mask = int(ask("nvmlDeviceGetCurrentClocksThrottleReasons"))
    names = decode_clock_reasons(mask)
    slowing = bool(mask & ~BENIGN_REASONS)
    text = ", ".join(names) if names else "none"
    return fact({"mask": mask, "reasons": names, "slowing": slowing}, text)


def _app_clocks(ask: Ask) -> dict:
    """Whether application clocks are set away from their defaults (locked clocks)."""
    sm_app = int(ask("nvmlDeviceGetApplicationsClock", 1))
    sm_def = int(ask("nvmlDeviceGetDefaultApplicationsClock", 1))
    mem_app = int(ask("nvmlDeviceGetApplicationsClock", 2))
    mem_def = int(ask("nvmlDeviceGetDefaultApplicationsClock", 2))
    locked = (sm_app, mem_app) != (sm_def, mem_def)
    text = (
        f"set: SM {sm_app} MHz (default {sm_def}), memory {mem_app} MHz (default {mem_def})"
        if locked
        else f"default (SM {sm_def}, memory {mem_def} MHz): not locked"
    )
    return fact({"locked": locked, "sm_mhz": sm_app, "mem_mhz": mem_app}, text)


def _energy_interval(ask: Ask, changes: int, timeout_s: float, clock: Callable[[], float]) -> dict:
    """Poll the energy counter until it changed ``changes`` times (or ``timeout_s``)."""
    readings: list[tuple[float, float]] = []
    end = clock() + timeout_s
    seen = 0
    while clock() < end and seen <= changes:
        v = float(ask("nvmlDeviceGetTotalEnergyConsumption"))
        if readings and v != readings[-1][1]:
            seen += 1
        readings.append((clock(), v))
        time.sleep(0.001)
    gap = counter_interval(readings)
    if gap is None:
        return unknown(f"the counter changed {seen} times in {timeout_s:g} s")
    return fact(gap, f"updates every {gap * 1e3:.0f} ms (median of {seen - 1} intervals)")


def gpu_facts(exclude_pids: Sequence[int], plan: Plan, cuda: bool | None = None) -> dict[str, dict]:
    """NVIDIA GPU facts of the device torch uses, or one "no GPU" line.

    ``cuda``: what a probe found (False spares this process importing torch); None: look.
    """
    if os.environ.get("LLMPERF_DEVICE") == "cpu":
        return {"gpu": fact(False, "no GPU (LLMPERF_DEVICE=cpu)")}
    if cuda is False:
        return {"gpu": fact(False, "no GPU")}
    try:
        import torch
    except ImportError as e:  # pragma: no cover - the plugin requires torch
        return {"gpu": unknown(f"torch not importable: {e}")}
    if not torch.cuda.is_available():
        return {"gpu": fact(False, "no GPU")}

    dev = current_device()
    dev = dev if dev.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    name = device_name(dev)
    facts = {"gpu": fact(name, f"{name} (cuda:{dev.index or 0})")}
    try:
        import pynvml
    except ImportError:
        return {**facts, "gpu_nvml": unknown(f"pynvml not importable: {hint('pynvml')}")}
    handle = _nvml_handle(dev)
    if handle is None:
        return {**facts, "gpu_nvml": unknown("NVML did not initialise or find the device")}
    return {
        **facts,
        **nvml_facts(pynvml, handle, exclude_pids, plan.energy_changes, plan.energy_timeout_s),
    }
