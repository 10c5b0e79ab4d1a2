"""NVIDIA GPU facts through NVML: persistence, other processes, clocks and throttle reasons
(sampled under the probes' load), locked or application clocks and the energy counter's
update interval; each read may fail alone."""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import threading
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
    0x2: "user-defined clocks (application or locked clocks)",
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
#: Reasons that do not slow a measurement by themselves: idle, display, and clocks a user
#: holds (locked clocks are what benchmarking guides recommend; the locked-clocks fact
#: says so).
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

#: NVML clock types (``NVML_CLOCK_GRAPHICS``, ``_SM``, ``_MEM``).
GRAPHICS, SM, MEM = 0, 1, 2
#: The type the SM's application clocks are read as: they are set, and reported, as the
#: graphics clock (``nvidia-smi -ac MEM,GRAPHICS``), not as type SM.
APP_CLOCK = GRAPHICS
#: Clock event reasons: the GPU is idle; clocks held by a user setting (app or locked clocks).
IDLE_REASON, USER_CLOCKS_REASON = 0x1, 0x2


def nvml_facts(
    nvml: Any,
    handle: Any,
    exclude_pids: Sequence[int] = (),
    changes: int = 5,
    timeout_s: float = 3.0,
    clock: Callable[[], float] = time.perf_counter,
    load: dict | None = None,
) -> dict[str, dict]:
    """Persistence, other processes, clocks, throttle reasons, application clocks and the
    energy counter's update interval of one NVML device; each fact known or unknown.

    ``load``: a ``LoadSampler``'s ``summary()``, the clocks and reasons sampled while the
    probes ran the workload; the facts read now, on an idle GPU, only where nothing was
    sampled."""
    load = load or {}

    def ask(fn: str, *args: Any) -> Any:
        return getattr(nvml, fn)(handle, *args)

    facts: dict[str, dict] = {}
    readers: dict[str, Callable[[], dict]] = {
        "gpu_persistence": lambda: _persistence(ask),
        "gpu_other_processes": lambda: _processes(ask, exclude_pids),
        "gpu_sm_clock": lambda: _clocks(ask, SM, "SM", APP_CLOCK, load, "sm_mhz"),
        "gpu_memory_clock": lambda: _clocks(ask, MEM, "memory", MEM, load, "mem_mhz"),
        "gpu_clock_reasons": lambda: _reasons(nvml, handle, load),
        "gpu_application_clocks": lambda: _held_clocks(ask, facts["gpu_clock_reasons"]["value"]),
        "gpu_energy_interval": lambda: _energy_interval(ask, changes, timeout_s, clock),
    }
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


def _idle_why(load: dict) -> str:
    errors = "; ".join(load.get("errors") or [])
    why = load.get("why") or (f"NVML under load: {errors}" if errors else "")
    return f"read idle: {why or 'nothing sampled under load'}"


def _clocks(ask: Ask, kind: int, label: str, app_kind: int, load: dict, key: str) -> dict:
    """One clock (SM or memory) under load (sampled while the probes ran), else now, with
    its maximum and application clocks (``app_kind``: the type they are read as)."""
    seen = load.get(key) or []
    if seen:
        cur = round(median(seen))
        out: dict[str, Any] = {"current_mhz": cur, "min_mhz": min(seen), "under_load": True}
        words = [f"{cur} MHz under load (median of {len(seen)} samples, min {min(seen)})"]
    else:
        cur = int(ask("nvmlDeviceGetClockInfo", kind))
        out = {"current_mhz": cur, "min_mhz": None, "under_load": False}
        words = [f"{cur} MHz ({_idle_why(load)})"]
    for k, fn, arg in (
        ("max_mhz", "nvmlDeviceGetMaxClockInfo", kind),
        ("default_app_mhz", "nvmlDeviceGetDefaultApplicationsClock", app_kind),
        ("app_mhz", "nvmlDeviceGetApplicationsClock", app_kind),
    ):
        try:
            out[k] = int(ask(fn, arg))
        except Exception:
            out[k] = None
    if out["max_mhz"]:
        words.append(f"max {out['max_mhz']}")
    if out["default_app_mhz"]:
        words.append(f"default {out['default_app_mhz']}")
    return fact(out, f"{label} " + ", ".join(words) + " MHz" * (len(words) > 1))


def _function_not_found(nvml: Any) -> tuple[type[BaseException], ...]:
    """What a missing NVML function raises: nvidia-ml-py defines every Python function and
    raises ``NVMLError_FunctionNotFound`` where the driver lacks its C symbol; an older
    module lacks the Python function (AttributeError)."""
    cls = getattr(nvml, "NVMLError_FunctionNotFound", None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return AttributeError, cls
    return (AttributeError,)


def clock_reasons(nvml: Any, handle: Any) -> int:
    """The clock event reasons now (a driver older than that name: the throttle-reasons one)."""
    try:
        return int(nvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
    except _function_not_found(nvml):
        return int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))


def _reasons(nvml: Any, handle: Any, load: dict) -> dict:
    """Why the clocks were held back under load (the union of the sampled reasons), else now."""
    seen = load.get("reasons") or []
    under_load = bool(seen)
    mask = functools.reduce(operator.or_, seen, 0) if seen else clock_reasons(nvml, handle)
    names = decode_clock_reasons(mask)
    slowing = bool(mask & ~BENIGN_REASONS)
    where = f"under load, {len(seen)} samples" if under_load else _idle_why(load)
    text = f"{', '.join(names) if names else 'none'}; {where}"
    return fact(
        {"mask": mask, "reasons": names, "slowing": slowing, "under_load": under_load}, text
    )


def _app_clocks(ask: Ask) -> tuple[tuple[int, int], tuple[int, int]]:
    """(graphics, memory) application clocks and their defaults, in MHz."""
    pairs = [
        (int(ask(fn, APP_CLOCK)), int(ask(fn, MEM)))
        for fn in ("nvmlDeviceGetApplicationsClock", "nvmlDeviceGetDefaultApplicationsClock")
    ]
    return pairs[0], pairs[1]


def _held_clocks(ask: Ask, reasons: dict | None) -> dict:
    """Whether a user setting holds the clocks: application clocks set away from their
    defaults (``nvidia-smi -ac``), or NVML's user-defined-clocks reason (0x2), which locked
    clocks (``nvidia-smi -lgc``, application clocks left at their defaults) set under load."""
    app = default = None
    try:
        app, default = _app_clocks(ask)
    except Exception as e:
        if reasons is None:
            raise  # neither is known: the fact is unknown
        app_words = f"application clocks unknown ({type(e).__name__})"
    app_set = app is not None and app != default
    if app is not None and default is not None:
        app_words = f"application clocks graphics {app[0]}, memory {app[1]} MHz" + (
            f" (defaults {default[0]}, {default[1]})" if app_set else " (the defaults)"
        )
    user_bit = None if reasons is None else bool(reasons["mask"] & USER_CLOCKS_REASON)
    where = "under load" if reasons and reasons["under_load"] else "read idle"
    bit_words = {None: "clock event reasons unknown",
                 True: f"user-defined clocks reason (0x2) seen {where}",
                 False: f"no user-defined clocks reason (0x2) {where}"}[user_bit]  # fmt: skip
    locked = app_set or bool(user_bit)
    if app_set:
        head = "held by a user setting (application clocks set)"
    elif locked:
        head = "held by a user setting (locked clocks, nvidia-smi -lgc)"
    else:
        # idle, a lock does not show: the reason is "gpu idle"
        head = "not locked" if user_bit is False and where == "under load" else "not seen locked"
    value = {"locked": locked, "app_clocks_set": app_set, "user_clocks_reason": user_bit,
             "app_mhz": app, "default_app_mhz": default}  # fmt: skip
    return fact(value, f"{head}: {app_words}; {bit_words}")


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


def gpu_facts(
    exclude_pids: Sequence[int],
    plan: Plan,
    cuda: bool | None = None,
    load: dict | None = None,
) -> dict[str, dict]:
    """NVIDIA GPU facts of the device torch uses, or one "no GPU" line.

    ``cuda``: what a probe found (False spares this process importing torch); None: look.
    ``load``: a ``LoadSampler``'s summary, the clocks and reasons under the probes' load.
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
        **nvml_facts(
            pynvml, handle, exclude_pids, plan.energy_changes, plan.energy_timeout_s, load=load
        ),
    }


class LoadSampler:
    """The GPU's SM and memory clocks and clock event reasons, polled from a thread every
    ``period_s`` while the probes run the workload: read after them, a GPU is idle.

    ``with LoadSampler(nvml, handle):`` samples that device; doctor's ``measure`` uses
    ``with sampler.running(ready):``, which finds it by the probe's PCI bus id with
    ``pynvml`` alone (no torch here: importing it while the probes are timed would load the
    CPU they run on). Never raises: where nothing could be sampled, ``summary()["why"]``
    says why."""

    def __init__(self, nvml: Any = None, handle: Any = None, period_s: float = 0.05) -> None:
        self.nvml, self.handle, self.period_s = nvml, handle, period_s
        self.samples: list[tuple[int | None, int | None, int | None]] = []
        self.why: str | None = "the probes did not run the workload"
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def running(self, ready: dict | None) -> LoadSampler:
        """This sampler, on the device of the probe whose first reply is ``ready``."""
        if self.handle is None:
            found = self._find(ready)
            if found is not None:
                self.nvml, self.handle = found
        return self

    def _find(self, ready: dict | None) -> tuple[Any, Any] | None:
        device, bus = (ready or {}).get("device", ""), (ready or {}).get("pci_bus_id")
        if not str(device).startswith("cuda"):
            self.why = f"the workload ran on {device or 'no device'}"
            return None
        try:
            import pynvml
        except ImportError:
            self.why = f"pynvml not importable: {hint('pynvml')}"
            return None
        try:
            pynvml.nvmlInit()
            return pynvml, pynvml.nvmlDeviceGetHandleByPciBusId(bus)
        except Exception as e:  # NVMLError_*, no bus id (None)
            self.why = f"NVML: {type(e).__name__}: {e}".rstrip(": ")
            return None

    def __enter__(self) -> LoadSampler:
        if self.handle is not None and self._thread is None:
            self.why, self._stop = None, threading.Event()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5.0)
            self._thread = None

    def _poll(self) -> None:
        while True:
            self.samples.append(self._sample(self.nvml, self.handle))
            if self._stop.wait(self.period_s):
                return

    def _sample(self, nvml: Any, handle: Any) -> tuple[int | None, int | None, int | None]:
        """SM and memory clocks, between two reads of the reasons (a sample is under load
        only where neither says the GPU was idle)."""
        reads: list[int | None] = []
        for read in (
            lambda: clock_reasons(nvml, handle),
            lambda: nvml.nvmlDeviceGetClockInfo(handle, SM),
            lambda: nvml.nvmlDeviceGetClockInfo(handle, MEM),
            lambda: clock_reasons(nvml, handle),
        ):
            try:
                reads.append(int(read()))
            except Exception as e:
                reads.append(None)
                if len(self.errors) < 3:
                    self.errors.append(f"{type(e).__name__}: {e}".rstrip(": "))
        before, sm, mem, after = reads
        known = [r for r in (before, after) if r is not None]
        return sm, mem, functools.reduce(operator.or_, known) if known else None

    def summary(self) -> dict:
        """The samples under load (those whose reasons do not say the GPU was idle)."""
        under = [s for s in self.samples if s[2] is None or not s[2] & IDLE_REASON]
        why = self.why
        if why is None and not under:
            why = f"all {len(self.samples)} samples showed an idle GPU"
        return {
            "samples": len(self.samples),
            "under_load": len(under),
            "sm_mhz": [s[0] for s in under if s[0] is not None],
            "mem_mhz": [s[1] for s in under if s[1] is not None],
            "reasons": [s[2] for s in under if s[2] is not None],
            "why": why,
            "errors": self.errors,
        }
