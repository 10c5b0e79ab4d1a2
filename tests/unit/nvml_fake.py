"""A fake NVML library that behaves as nvidia-ml-py's ``pynvml`` module does on a real GPU.

No GPU has run the plugin's NVML code, so its tests run it against this stand-in, which
keeps to the real module's contract where a hand-written stub would drift from it:

- every ``nvml*`` function binds its arguments to the REAL function's signature (a wrong
  call is a TypeError) and a name the real module lacks is an AttributeError;
- failures are the REAL error classes, raised as the real module raises them
  (``pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)`` is an ``NVMLError_NotSupported``);
  a call before ``nvmlInit`` is ``NVMLError_Uninitialized``;
- a driver that lacks a C symbol (``missing=``, by the Python name or the C symbol the
  real function looks up, e.g. ``nvmlDeviceGetHandleByPciBusId_v2``) raises
  ``NVMLError_FunctionNotFound`` when the function is called, as
  ``_nvmlGetFunctionPointer`` does: nvidia-ml-py 13 defines every Python function;
- constants, error classes and structures are the real module's.

The GPU model (an H100-like board): clock types graphics (0), SM (1), memory (2), video
(3); the application clocks (``nvidia-smi -ac MEM,GRAPHICS``) are readable as graphics and
memory only (type SM is ``NotSupported``); idle, the clocks are low and the clock event
reasons 0x1 (GPU idle); busy (``fake.busy = True``), the clocks are high, with 0x2 (user
defined clocks) under locked clocks (``nvidia-smi -lgc``, app clocks left at their
defaults) or application clocks set away from their defaults, and 0x4 under a power cap.
The energy counter (mJ) integrates the power (busy 300 W, idle 60 W) and updates every
``energy_interval_s`` of ``clock()``; a GPU without one raises ``NotSupported``.

    fake = FakeNVML(devices=[{"bus_id": "00000000:41:00.0"}, {"bus_id": "00000000:C1:00.0",
                    "energy": False}], missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    install(monkeypatch, fake)   # sys.modules["pynvml"], torch's device properties, caches
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml as real

GRAPHICS, SM, MEM, VIDEO = (real.NVML_CLOCK_GRAPHICS, real.NVML_CLOCK_SM, real.NVML_CLOCK_MEM,
                            real.NVML_CLOCK_VIDEO)  # fmt: skip
#: Clock event reason bits the fake sets.
IDLE, USER_CLOCKS, POWER_CAP = 0x1, 0x2, 0x4


@dataclass
class FakeGPU:
    """One GPU's settings and state (every field a constructor key of ``FakeNVML``)."""

    bus_id: str = "00000000:41:00.0"
    name: str = "NVIDIA H100 80GB HBM3"
    total_memory: int = 80 * 2**30
    energy: bool | int = True  # the counter reads; False: NotSupported; an NVML_ERROR_* code
    locked: int | None = None  # nvidia-smi -lgc N,N: the SM clock under load
    app_clocks: tuple[int, int] | None = None  # nvidia-smi -ac MEM,GRAPHICS
    power_cap: bool = False  # busy clocks held at 1650 MHz, reason 0x4
    persistence: bool = True
    processes: tuple[int, ...] = ()  # pids of compute processes
    busy: bool = False
    max_mhz: dict[int, int] = field(default_factory=lambda: {GRAPHICS: 1980, SM: 1980,
                                                             MEM: 2619, VIDEO: 1545})  # fmt: skip
    default_app_mhz: dict[int, int] = field(default_factory=lambda: {GRAPHICS: 1755, MEM: 2619})
    idle_mhz: int = 345
    energy_mj: int = 1_000_000
    energy_tick: float | None = None  # clock() of the counter's last update

    def app_mhz(self) -> dict[int, int]:
        if self.app_clocks is None:
            return dict(self.default_app_mhz)
        mem, graphics = self.app_clocks
        return {GRAPHICS: graphics, MEM: mem}

    def current_mhz(self, kind: int) -> int:
        if kind == MEM:
            return self.max_mhz[MEM]
        if not self.busy:
            return self.idle_mhz if kind != VIDEO else 765
        if kind == VIDEO:
            return self.max_mhz[VIDEO]
        if self.locked is not None:
            return self.locked
        if self.app_clocks is not None:
            return self.app_mhz()[GRAPHICS]
        return 1650 if self.power_cap else self.max_mhz[kind]

    def reasons(self) -> int:
        if not self.busy:
            return IDLE
        held = self.locked is not None or self.app_mhz() != self.default_app_mhz
        return (USER_CLOCKS if held else 0) | (POWER_CAP if self.power_cap else 0)


class FakeHandle:
    """An opaque device handle, as ``nvmlDeviceGetHandleBy*`` returns: unhashable, as the
    real one (a ctypes pointer) is, so no cache can be keyed by it here either."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, index: int, gpu: FakeGPU) -> None:
        self.index, self.gpu = index, gpu

    def __repr__(self) -> str:
        return f"<FakeNVML handle {self.index} {self.gpu.bus_id}>"


def _error(code: int) -> Exception:
    return real.NVMLError(code)  # the subclass for the code, as the real module raises


@functools.cache
def symbols(name: str) -> frozenset[str]:
    """The C symbols the real Python function ``name`` looks up (through the Python
    functions it calls when it looks up none itself)."""
    src = inspect.getsource(getattr(real, name))
    found = set(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', src))
    if not found:
        for callee in set(re.findall(r"\b(nvml\w+)\(", src)) - {name}:
            if callable(getattr(real, callee, None)):
                found |= symbols(callee)
    return frozenset(found)


def parse_bus_id(text: str | bytes) -> tuple[int, int, int, int]:
    """(domain, bus, device, function) of an NVML PCI bus id: ``domain:bus:device.function``,
    ``domain:bus:device`` or ``bus:device.function``, all hexadecimal."""
    s = text.decode() if isinstance(text, bytes) else text
    m = re.fullmatch(r"(?:([0-9a-f]+):)?([0-9a-f]+):([0-9a-f]+)(?:\.([0-9a-f]+))?", s.lower())
    if not m or (m.group(1) is None and m.group(4) is None):
        raise _error(real.NVML_ERROR_INVALID_ARGUMENT)
    return tuple(int(g or "0", 16) for g in m.groups())  # type: ignore[return-value]


class FakeNVML:
    """Stands in for the ``pynvml`` module: ``sys.modules["pynvml"] = FakeNVML(...)``.

    ``devices``: one dict of ``FakeGPU`` fields per GPU (index order; default one GPU);
    ``energy``, ``locked``, ``app_clocks``, ``power_cap``: defaults for every GPU;
    ``missing``: Python names or C symbols the driver lacks; ``clock``: seconds, for the
    energy counter, updated every ``energy_interval_s``. ``calls`` logs every call.
    """

    def __init__(
        self,
        devices: Iterable[dict[str, Any]] | None = None,
        *,
        energy: bool | int = True,
        missing: Iterable[str] = (),
        locked: int | None = None,
        app_clocks: tuple[int, int] | None = None,
        power_cap: bool = False,
        clock: Callable[[], float] = time.monotonic,
        energy_interval_s: float = 0.02,
        driver: str = "570.124.06",
    ) -> None:
        common = {"energy": energy, "locked": locked, "app_clocks": app_clocks,
                  "power_cap": power_cap}  # fmt: skip
        self.gpus = [FakeGPU(**{**common, **d}) for d in (devices or [{}])]
        self._handles = [FakeHandle(i, g) for i, g in enumerate(self.gpus)]
        self.missing = set(missing)
        self.clock, self.energy_interval_s, self.driver = clock, energy_interval_s, driver
        self.calls: list[tuple[str, tuple]] = []
        self._inits = 0
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- for the tests

    @property
    def busy(self) -> bool:
        return any(g.busy for g in self.gpus)

    @busy.setter
    def busy(self, value: bool) -> None:
        with self._lock:
            for g in self.gpus:
                self._tick(g)
                g.busy = value

    def count(self, name: str) -> int:
        """How many times ``name`` was called (failed calls included)."""
        return sum(1 for n, _ in self.calls if n == name)

    # ---------------------------------------------------------------- the module's face

    def __getattr__(self, name: str) -> Any:
        value = getattr(real, name)  # AttributeError where the real module lacks it
        if not (name.startswith("nvml") and callable(value)):
            return value  # constants, error classes, structures
        impl = getattr(type(self), "_" + name, None)
        signature = inspect.signature(value)

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)  # TypeError, as the real function
            with self._lock:
                self.calls.append((name, bound.args))
                if name in self.missing or symbols(name) & self.missing:
                    raise _error(real.NVML_ERROR_FUNCTION_NOT_FOUND)
                if self._inits == 0 and name not in ("nvmlInit", "nvmlInitWithFlags"):
                    raise _error(real.NVML_ERROR_UNINITIALIZED)
                if impl is None:
                    raise NotImplementedError(f"FakeNVML does not fake {name}")
                return impl(self, *bound.args)

        call.__name__ = call.__qualname__ = name
        return call

    def _gpu(self, handle: Any) -> FakeGPU:
        if not isinstance(handle, FakeHandle) or handle.gpu not in self.gpus:
            raise _error(real.NVML_ERROR_INVALID_ARGUMENT)
        return handle.gpu

    def _tick(self, g: FakeGPU) -> None:
        """Bring the energy counter up to ``clock()`` (whole updates only)."""
        now = self.clock()
        if g.energy_tick is None:
            g.energy_tick = now
        steps = int((now - g.energy_tick) / self.energy_interval_s)
        if steps > 0:
            watts = 300 if g.busy else 60
            g.energy_mj += round(steps * self.energy_interval_s * watts * 1000)
            g.energy_tick += steps * self.energy_interval_s

    # ---------------------------------------------------------------- the functions

    def _nvmlInit(self) -> None:
        self._inits += 1

    def _nvmlInitWithFlags(self, flags: int) -> None:
        self._inits += 1

    def _nvmlShutdown(self) -> None:
        self._inits -= 1

    def _nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def _nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def _nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        if not isinstance(index, int) or not 0 <= index < len(self.gpus):
            raise _error(real.NVML_ERROR_INVALID_ARGUMENT)
        return self._handles[index]

    def _nvmlDeviceGetHandleByPciBusId(self, bus_id: str | bytes) -> FakeHandle:
        want = parse_bus_id(bus_id)
        for h in self._handles:
            if parse_bus_id(h.gpu.bus_id) == want:
                return h
        raise _error(real.NVML_ERROR_NOT_FOUND)

    def _nvmlDeviceGetIndex(self, handle: Any) -> int:
        self._gpu(handle)
        return handle.index

    def _nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle).name

    def _nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        g = self._gpu(handle)
        if g.energy is not True:
            raise _error(real.NVML_ERROR_NOT_SUPPORTED if g.energy is False else g.energy)
        self._tick(g)
        return g.energy_mj

    def _nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return 300_000 if self._gpu(handle).busy else 60_000

    def _nvmlDeviceGetPersistenceMode(self, handle: Any) -> int:
        return int(self._gpu(handle).persistence)

    def _nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list:
        pids = self._gpu(handle).processes
        return [SimpleNamespace(pid=p, usedGpuMemory=2**30) for p in pids]

    def _nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list:
        self._gpu(handle)
        return []

    def _clock_type(self, kind: Any) -> int:
        if not isinstance(kind, int) or not 0 <= kind < real.NVML_CLOCK_COUNT:
            raise _error(real.NVML_ERROR_INVALID_ARGUMENT)
        return kind

    def _nvmlDeviceGetClockInfo(self, handle: Any, kind: int) -> int:
        return self._gpu(handle).current_mhz(self._clock_type(kind))

    def _nvmlDeviceGetMaxClockInfo(self, handle: Any, kind: int) -> int:
        return self._gpu(handle).max_mhz[self._clock_type(kind)]

    def _app(self, table: dict[int, int], kind: int) -> int:
        if self._clock_type(kind) not in table:  # SM, video: set and read as graphics
            raise _error(real.NVML_ERROR_NOT_SUPPORTED)
        return table[kind]

    def _nvmlDeviceGetApplicationsClock(self, handle: Any, kind: int) -> int:
        return self._app(self._gpu(handle).app_mhz(), kind)

    def _nvmlDeviceGetDefaultApplicationsClock(self, handle: Any, kind: int) -> int:
        return self._app(self._gpu(handle).default_app_mhz, kind)

    def _nvmlDeviceGetClock(self, handle: Any, kind: int, clock_id: int) -> int:
        g = self._gpu(handle)
        if clock_id == real.NVML_CLOCK_ID_CURRENT:
            return self._nvmlDeviceGetClockInfo(handle, kind)
        if clock_id == real.NVML_CLOCK_ID_APP_CLOCK_TARGET:
            return self._app(g.app_mhz(), kind)
        if clock_id == real.NVML_CLOCK_ID_APP_CLOCK_DEFAULT:
            return self._app(g.default_app_mhz, kind)
        if clock_id == real.NVML_CLOCK_ID_CUSTOMER_BOOST_MAX:
            return self._nvmlDeviceGetMaxClockInfo(handle, kind)
        raise _error(real.NVML_ERROR_INVALID_ARGUMENT)

    def _nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._gpu(handle).reasons()

    _nvmlDeviceGetCurrentClocksThrottleReasons = _nvmlDeviceGetCurrentClocksEventReasons


# -------------------------------------------------------------------- installing it


def properties(fake: FakeNVML) -> Callable[[Any], Any]:
    """A stand-in for ``torch.cuda.get_device_properties`` that describes the fake's GPUs
    (the attributes of torch's ``_CudaDeviceProperties`` the plugin reads)."""

    def get(device: Any = None) -> Any:
        index = getattr(device, "index", device) or 0
        g = fake.gpus[index]
        domain, bus, slot, _ = parse_bus_id(g.bus_id)
        return SimpleNamespace(name=g.name, total_memory=g.total_memory, major=9, minor=0,
                               multi_processor_count=132, pci_domain_id=domain,
                               pci_bus_id=bus, pci_device_id=slot)  # fmt: skip

    return get


def forget() -> None:
    """Clear the plugin's per-process NVML caches (handles, the energy counter's check)."""
    from pytest_llmperf.measure import energy

    energy._nvml_handle.cache_clear()  # the energy counter's check goes with its handle


class _Forget:
    """monkeypatch sets, then undoes, an attribute of this: either clears the caches."""

    def __setattr__(self, name: str, value: Any) -> None:
        forget()
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        forget()
        object.__delattr__(self, name)


_FORGET = _Forget()


def install(
    monkeypatch: Any | None, fake: FakeNVML, *, cuda_properties: bool = True
) -> Callable[[], None]:
    """Make ``fake`` the ``pynvml`` module and (``cuda_properties``) torch's CUDA device
    properties those of its GPUs, with the plugin's NVML caches cleared now and when undone.

    With a pytest ``monkeypatch`` all is undone at the test's end (the returned function
    does nothing); with None, call the returned function to undo (a script's ``finally``)."""
    import torch

    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        if cuda_properties:
            monkeypatch.setattr(torch.cuda, "get_device_properties", properties(fake))
        monkeypatch.setattr(_FORGET, "installed", fake, raising=False)
        return lambda: None
    before = sys.modules.get("pynvml"), torch.cuda.get_device_properties
    sys.modules["pynvml"] = fake  # type: ignore[assignment]
    if cuda_properties:
        torch.cuda.get_device_properties = properties(fake)  # type: ignore[assignment]
    forget()

    def undo() -> None:
        module, props = before
        if module is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = module
        torch.cuda.get_device_properties = props  # type: ignore[assignment]
        forget()

    return undo
