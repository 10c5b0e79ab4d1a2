"""Tolerances: the default per metric kind and the parsing of what a user gives.

The defaults come from ``metrics.Kind``, so a kind and its gate cannot disagree.
"""

from __future__ import annotations

from typing import Any

from ..metrics import Kind
from .limits import MAX_TOLERANCE
from .values import shown, too_large

#: Relative tolerance per metric kind (``metrics.Kind`` holds them): what a user would keep
#: as a default gate. Memory is near-deterministic, so it is tight; energy reads a coarse
#: counter; work is counted, so exact.
DEFAULT_TOLERANCES: dict[str, float] = {k.value: k.tolerance for k in Kind}
#: Kinds a bare tolerance ("--llmperf-tolerance=10%") applies to: the measured ones.
#: Work stays exact unless a tolerance names it.
MEASURED_KINDS = tuple(k.value for k in Kind if k is not Kind.WORK)

#: Memory changes below this many bytes are never a regression (allocator slack).
MEMORY_ABS_SLACK = 4 * 2**20


def parse_tolerance(value: Any, where: str) -> float:
    """A tolerance as a fraction: 0.1, "10%" and "0.1" all mean 10%."""
    out_of_range = ValueError(
        f"{where}: tolerance {shown(value)} must be >= 0 and <= {MAX_TOLERANCE:g} "
        f"({MAX_TOLERANCE:.0%}): a fraction (0.1) or a percentage ('10%')"
    )
    if too_large(value):  # before float(), which would overflow
        raise out_of_range
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, str) and value.strip().endswith("%"):
            tol = float(value.strip()[:-1]) / 100.0
        else:
            tol = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"{where}: tolerance {shown(value)} is not a number or a percentage"
        ) from None
    if not 0 <= tol <= MAX_TOLERANCE:  # NaN fails this too
        raise out_of_range
    return tol


def parse_tolerances(value: Any, where: str) -> dict[str, float]:
    """Tolerances keyed by metric name or kind; a bare number applies to every kind.

    Accepts a number, ``"time=20%,memory=2%"`` or a dict. A bare number leaves the
    exact work gate alone (``work=5%`` loosens it by name).
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return _from_dict(value, where)
    if isinstance(value, str) and "=" in value:
        return _from_text(value, where)
    tol = parse_tolerance(value, where)
    return {kind: tol for kind in MEASURED_KINDS}


def _from_dict(value: dict[Any, Any], where: str) -> dict[str, float]:
    """Tolerances given as ``{"time": "20%", ...}`` (a marker's keyword)."""
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k.strip():
            raise ValueError(f"{where}: a tolerance key must be a metric name or kind, got {k!r}")
        out[k.strip()] = parse_tolerance(v, f"{where}[{k}]")
    return out


def _from_text(value: str, where: str) -> dict[str, float]:
    """Tolerances given as ``"time=20%,memory=2%"`` (an option, or a marker's string)."""
    out: dict[str, float] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"{where}: expected NAME=TOL in {value!r}, got {part!r}")
        k, v = part.split("=", 1)
        if not k.strip():
            raise ValueError(f"{where}: expected NAME=TOL in {value!r}, got {part!r}")
        out[k.strip()] = parse_tolerance(v, f"{where}[{k.strip()}]")
    return out
