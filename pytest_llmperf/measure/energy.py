"""Energy from the NVML total-energy counter (package nvidia-ml-py).

The counter ticks every 20-100 ms, so a window shorter than ``MIN_WINDOW_S``
is marked approximate and not gated. Without NVML, or on a GPU whose counter NVML
cannot read (``NVMLError_NotSupported`` on GPUs older than Volta, ``NoPermission``,
a driver without the function), there is no energy metric: absent, never 0. The
counter is read once per device up front, and the run's header says why it is not.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Any

from ..extras import missing
from .device import pci_bus_id

#: Windows shorter than this span only a few counter updates.
MIN_WINDOW_S = 0.5

#: What an NVML error class says about the energy counter, for the run's header line.
_COUNTER_ERRORS = {
    "NVMLError_NotSupported": "NVML says this GPU has no total-energy counter",
    "NVMLError_NoPermission": "NVML refuses this process the GPU's energy counter",
    "NVMLError_FunctionNotFound": "the NVIDIA driver's NVML lacks the total-energy counter",
}


@functools.cache
def _nvml_handle(device: Any) -> Any | None:
    """The NVML handle of a CUDA device, found once per process (NVML is initialised once):
    by its PCI bus id (the one name every process agrees on), else by its index where
    torch's indices are NVML's (no ``CUDA_VISIBLE_DEVICES``: with it, torch's cuda:0 may
    be NVML's device 3, and another GPU's energy would be read)."""
    if device.type != "cuda":
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        bus = pci_bus_id(device)
        if bus is not None:
            try:
                return pynvml.nvmlDeviceGetHandleByPciBusId(bus)
            except pynvml.NVMLError:
                pass
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            return None
        return pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
    except Exception:
        return None


#: device -> (the handle whose counter was read, why it gave no energy or None): the
#: counter is read once per handle (a handle found anew, its cache cleared, is read again).
_checked: dict[Any, tuple[Any, str | None]] = {}


def _energy_counter(device: Any) -> tuple[Any | None, str | None]:
    """(the NVML handle whose energy counter reads, None), or (None, why there is no
    energy on this CUDA device); (None, None) off CUDA, where none is expected."""
    if device.type != "cuda":
        return None, None
    handle = _nvml_handle(device)
    if handle is None:
        why = missing("pynvml", "energy per call")
        return None, why or "NVML did not initialise or find this GPU"
    seen = _checked.get(device)
    if seen is None or seen[0] is not handle:
        seen = _checked[device] = handle, _counter_error(handle)
    return (None, seen[1]) if seen[1] else (handle, None)


def _counter_error(handle: Any) -> str | None:
    """Why NVML cannot read the handle's total-energy counter (one read), or None."""
    try:
        import pynvml

        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as e:
        name = type(e).__name__
        return f"{_COUNTER_ERRORS.get(name, 'reading the total-energy counter failed')} ({name})"
    return None


def why_no_energy(device: Any) -> str | None:
    """Why a CUDA run records no energy: NVML's module is missing (its extra named), or
    NVML cannot read this GPU's counter (the error it gave); None where energy is not
    expected anyway (no NVIDIA GPU) or can be read."""
    why = _energy_counter(device)[1]
    return f"energy not measured: {why}" if why else None


class EnergyMeter:
    """Total energy (J) between ``start()`` and ``stop()``; None where NVML is absent, the
    GPU has no counter, or a read failed."""

    def __init__(self, device: Any) -> None:
        self.handle = _energy_counter(device)[0]
        self._e0: int | None = None
        self._t0 = 0.0

    @property
    def available(self) -> bool:
        return self.handle is not None

    def _read_mj(self) -> int:
        import pynvml

        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def start(self) -> None:
        """Read the counter; a failed read leaves this window without energy."""
        self._e0 = None
        if self.handle is not None:
            with contextlib.suppress(Exception):  # this window has no energy, never 0 J
                self._e0, self._t0 = self._read_mj(), time.perf_counter()

    def stop(self) -> tuple[float, float] | None:
        """(joules, window seconds), or None without NVML or a counter read."""
        if self.handle is None or self._e0 is None:
            return None
        try:
            return (self._read_mj() - self._e0) / 1000.0, time.perf_counter() - self._t0
        except Exception:
            return None
