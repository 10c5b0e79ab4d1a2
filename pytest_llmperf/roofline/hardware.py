"""The hardware an estimate prices: a device's peaks and the link between devices.

A device is a datasheet name (``device_specs``: no torch), a torch device or
``"cpu"`` (peaks measured by ``calibration``, which imports torch), or a
``Peaks``-like object; the link is the caller's ``Link``, else the datasheet
device's, with the caller's bandwidth or latency in place of its own.
"""

from __future__ import annotations

import math
from typing import Any

from .calibration import device_peaks
from .device_specs import canonical_dtype
from .device_specs import lookup as lookup_spec
from .interconnect import Link, with_overrides

#: Device names that mean "measure this machine" rather than a datasheet.
_TORCH_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "meta")


def _is_torch_device(name: str) -> bool:
    return name.split(":")[0].lower() in _TORCH_DEVICE_TYPES


def on_cpu(device: Any) -> bool:
    """Whether ``device`` runs on the CPU, where kernel launches add to the runtime."""
    return getattr(device, "type", None) == "cpu" or str(device).lower().startswith("cpu")


def resolve_peaks(device: Any = None, dtype: Any = "fp32") -> Any:
    """Peaks for a device given as a datasheet name ("RTX A5000"), "cpu"/a torch device
    (calibrated, or datasheet for a known accelerator), or a ``Peaks``-like object."""
    if device is not None and hasattr(device, "flops_per_s"):
        return device
    key = canonical_dtype(dtype)
    if isinstance(device, str) and not _is_torch_device(device):
        return lookup_spec(device).peaks(key)

    return device_peaks(device, key)


def finite(value: Any, low: float, inclusive: bool) -> bool:
    """Whether ``value`` is a real number (no bool, NaN or infinity) above ``low``
    (or at it, when ``inclusive``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value >= low if inclusive else value > low


def resolve_link(peaks: Any, devices: int, link: Link | None = None,
                 bandwidth: float | None = None, latency_s: float | None = None) -> Link | None:  # fmt: skip
    """The link a multi-device estimate prices: ``link``, else the device's own
    (``peaks.link``: a datasheet's), with a bandwidth (bytes/s) or latency (s) in
    place of its own; a bandwidth alone makes a link (latency 0 unless given).
    None on one device with nothing given; a ValueError when N > 1 has no link."""
    if bandwidth is not None and not finite(bandwidth, 0.0, inclusive=False):
        raise ValueError(f"link_bandwidth must be a finite number > 0 (bytes/s), got {bandwidth!r}")
    if latency_s is not None and not finite(latency_s, 0.0, inclusive=True):
        raise ValueError(
            f"link_latency_s must be a finite number >= 0 (seconds), got {latency_s!r}"
        )
    if link is not None and not isinstance(link, Link):
        raise ValueError(
            f"link must be an interconnect.Link (e.g. interconnect.pcie(4, 16)), got {link!r}"
        )
    base = link if link is not None else getattr(peaks, "link", None)
    if base is None:
        if bandwidth is None:
            if devices == 1:
                return None
            name = getattr(peaks, "device_name", "") or getattr(peaks, "source", "this device")
            raise ValueError(
                f"device {name!r} has no datasheet link: estimating {devices} devices needs "
                "link=Link(...) (e.g. calibration.measure_link()) or link_bandwidth= in bytes/s"
            )
        return Link("given link", float(bandwidth), float(latency_s or 0.0), "override")
    return with_overrides(base, bandwidth, latency_s)
