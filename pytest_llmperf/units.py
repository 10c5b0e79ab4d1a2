"""The one formatter for quantities and changes: failure messages, summaries and reports
print the same number the same way.

Bytes scale in binary units (KiB, MiB, GiB: what allocators and ``torch.cuda``
report), seconds in s / ms / us / ns; every quantity keeps four significant
digits. A change is signed and relative: ``+12.3%``.
"""

from __future__ import annotations

import math
from typing import Any

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
BYTE_UNITS = {
    "b": 1.0,
    "byte": 1.0,
    "bytes": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "kib": 2.0**10,
    "mib": 2.0**20,
    "gib": 2.0**30,
    "tib": 2.0**40,
}
_TIME_SCALES = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))
_BYTE_SCALES = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_FLOP_SCALES = (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6))


def finite(value: Any) -> bool:
    """A real, finite number (not a bool, not None, not NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def convert(value: float | None, unit: str, target: str) -> float | None:
    """``value`` in ``unit`` expressed in ``target`` (time or byte units).

    A unit that is unknown or of another kind than ``target`` leaves the value
    as it is (the metric is then taken to be recorded in ``target`` already).
    """
    if value is None:
        return None
    u, t = (unit or "").strip(), target.strip()
    if u in TIME_UNITS and t in TIME_UNITS:
        return value * TIME_UNITS[u] / TIME_UNITS[t]
    ul, tl = u.lower(), t.lower()
    if ul in BYTE_UNITS and tl in BYTE_UNITS:
        return value * BYTE_UNITS[ul] / BYTE_UNITS[tl]
    return value


def quantity(value: float | None, unit: str = "") -> str:
    """A value with its unit: seconds and bytes scaled to a readable unit, 4 significant digits."""
    if value is None:
        return "-"
    if not finite(value):
        return f"{value} {unit}".strip()
    u = (unit or "").strip()
    if u == "FLOP":
        return flops(value)
    if not u and float(value).is_integer():
        return str(int(value))  # a count: exact
    if u in TIME_UNITS:
        seconds = value * TIME_UNITS[u]
        for name, scale in _TIME_SCALES:
            if abs(seconds) >= scale:
                return f"{seconds / scale:.4g} {name}"
        return f"{seconds * 1e9:.4g} ns"
    if u.lower() in ("b", "byte", "bytes"):
        for name, scale in _BYTE_SCALES:
            if abs(value) >= scale:
                return f"{value / scale:.4g} {name}"
        return f"{value:.0f} B"
    return f"{value:.4g} {u}".strip()


def flops(value: float) -> str:
    """A FLOP count in the largest unit that keeps it at or above 1."""
    for name, scale in _FLOP_SCALES:
        if value >= scale:
            return f"{value / scale:.4g} {name}"
    return f"{value:.0f} FLOP"


def number(value: Any, digits: int = 2) -> str:
    """A bare number for a table cell: fixed decimals, scientific when tiny or huge."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e7 or a < 10.0 ** (-digits):
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def relative_change(current: float | None, baseline: float | None) -> float | None:
    """(current - baseline) / |baseline|; None when either is missing or the baseline is 0."""
    if not (finite(current) and finite(baseline)) or baseline == 0:
        return None
    return (current - baseline) / abs(baseline)  # type: ignore[operator]


def change(rel: float | None) -> str:
    """A signed relative change, ``+12.3%``; ``from zero`` for a change off a zero baseline."""
    if rel is None or (isinstance(rel, float) and math.isnan(rel)):
        return "-"
    if math.isinf(rel):
        return "from zero"
    return f"{rel:+.1%}"


def percent(fraction: float) -> str:
    """A tolerance or share as a whole percentage: 0.1 -> ``10%``."""
    return f"{fraction:.0%}"
