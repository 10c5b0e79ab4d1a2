"""Energy from the NVML total-energy counter (package nvidia-ml-py).

The counter ticks every 20-100 ms, so a window shorter than ``MIN_WINDOW_S``
is marked approximate and not gated. Without NVML there is no energy metric:
absent, never 0.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from ..extras import missing

#: Windows shorter than this span only a few counter updates.
MIN_WINDOW_S = 0.5


@functools.cache
def _nvml_handle(device: Any) -> Any | None:
    """The NVML handle of a CUDA device, found once per process (NVML is initialised once)."""
    if device.type != "cuda":
        return None
    try:
        import pynvml
        import torch

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device)
        bus = getattr(props, "pci_bus_id", None)
        if bus is not None:
            dom = getattr(props, "pci_domain_id", 0)
            dev = getattr(props, "pci_device_id", 0)
            try:
                return pynvml.nvmlDeviceGetHandleByPciBusId(f"{dom:08x}:{bus:02x}:{dev:02x}.0")
            except pynvml.NVMLError:
                pass
        return pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
    except Exception:
        return None


def why_no_energy(device_type: str) -> str | None:
    """Why a CUDA run records no energy because NVML's module is missing (its extra named);
    None where energy is not expected anyway (no NVIDIA GPU) or can be read."""
    if device_type != "cuda":
        return None
    why = missing("pynvml", "energy per call")
    return f"energy not measured: {why}" if why else None


class EnergyMeter:
    """Total energy (J) between ``start()`` and ``stop()``; None where NVML is absent."""

    def __init__(self, device: Any) -> None:
        self.handle = _nvml_handle(device)
        self._e0 = 0
        self._t0 = 0.0

    @property
    def available(self) -> bool:
        return self.handle is not None

    def _read_mj(self) -> int:
        import pynvml

        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def start(self) -> None:
        if self.handle is not None:
            self._e0 = self._read_mj()
            self._t0 = time.perf_counter()

    def stop(self) -> tuple[float, float] | None:
        """(joules, window seconds), or None without NVML."""
        if self.handle is None:
            return None
        try:
            return (self._read_mj() - self._e0) / 1000.0, time.perf_counter() - self._t0
        except Exception:
            return None
