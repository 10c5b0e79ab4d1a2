"""Parsers for the numbers and names a marker, a call or an option gives.

Each takes the raw value and ``where`` (the option or keyword, for the message) and
returns the parsed value or raises ``ValueError`` saying what was wrong with it.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from typing import Any

from .limits import DEFAULT_CPU_THREADS, MAX_ROUNDS, MAX_THREADS


def shown(value: Any) -> str:
    """``value`` for an error message: its repr, shortened (an int of 5000 digits has none)."""
    try:
        text = repr(value)
    except ValueError:  # int too large to print
        return f"an integer of {value.bit_length()} bits"
    if len(text) <= 60:
        return text
    if isinstance(value, int):  # 10**400 cut to 57 digits would read as a smaller number
        return f"{text[:20]}... (an integer of {len(text.lstrip('-'))} digits)"
    return text[:57] + "..."


#: The largest finite float; an int past it has no float to become.
_FLOAT_MAX = int(sys.float_info.max)


def too_large(value: Any) -> bool:
    """An int no float holds (``10**400``): checked before ``float()``, which would raise
    OverflowError, so the message can say the value is out of range, not "no number"."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > _FLOAT_MAX


#: ``where`` of a value parsed for argparse, which names the option itself.
_WHERE = "value"


def arg_type(parse: Callable[..., Any], name: str, **bounds: Any) -> Callable[[str], Any]:
    """An argparse ``type`` from ``parse(text, where, **bounds)``, a config-style parser
    raising ValueError: argparse itself would say only "invalid int value", or nothing at
    all for ``nan`` or ``-5``. ``name`` names the kind of number (``positive integer``)."""

    def convert(text: str) -> Any:
        try:
            return parse(text, _WHERE, **bounds)
        except ValueError as exc:  # argparse prefixes "argument --option: "
            import argparse

            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{_WHERE}: ")) from None

    convert.__name__ = name
    return convert


def parse_count(
    value: Any,
    where: str,
    *,
    allow_auto: bool = True,
    minimum: int = 0,
    maximum: int = MAX_ROUNDS,
) -> int | str:
    """A whole count (``"auto"`` too where allowed) from ``minimum`` to ``maximum``.

    True is not 1 here: a bool where a count belongs is a slip.
    """
    if allow_auto and value == "auto":
        return "auto"
    expected = "an integer or 'auto'" if allow_auto else "an integer"
    try:
        if isinstance(value, bool):
            raise TypeError
        n = int(value)
        if isinstance(value, float) and value != n:
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ValueError(f"{where}: expected {expected}, got {shown(value)}") from None
    if n < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {n}")
    if n > maximum:
        raise ValueError(f"{where}: must be <= {maximum}, got {shown(n)}")
    return n


def parse_float(
    value: Any, where: str, *, minimum: float = 0.0, maximum: float = math.inf
) -> float:
    """A finite number from ``minimum`` to ``maximum``; NaN, infinity and bools are slips.

    An int is range-checked as an int before it becomes a float: ``10**400`` is "must be
    <= 86400" (or, with no bound, too large for a float), not an OverflowError."""
    if too_large(value):
        if value < minimum:
            raise ValueError(f"{where}: must be >= {minimum}, got {shown(value)}")
        if value > maximum:
            raise ValueError(f"{where}: must be <= {maximum:g}, got {shown(value)}")
        raise ValueError(
            f"{where}: {shown(value)} is too large for a float (at most {sys.float_info.max:g})"
        )
    try:
        if isinstance(value, bool):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: expected a number, got {shown(value)}") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: expected a finite number, got {shown(value)}")
    if x < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {x}")
    if x > maximum:
        raise ValueError(f"{where}: must be <= {maximum:g}, got {shown(value)}")
    return x


#: Device types a run can measure on, for ``--llmperf-device`` (checked without torch; what
#: this machine has is checked when the device is first needed: measure.device.check_device).
DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "mtia", "hpu", "npu", "maia", "privateuseone")
_DEVICE = re.compile(r"([a-z][a-z0-9_]*)(?::(\d{1,4}))?")


def parse_device(value: Any, where: str) -> str:
    """A torch device string, ``TYPE`` or ``TYPE:INDEX``, of a type a run can measure on."""
    text = str(value).strip()
    match = _DEVICE.fullmatch(text)
    if match is None or match.group(1) not in DEVICE_TYPES:
        raise ValueError(
            f"{where}: {shown(value)} is not a device to measure on; expected one of "
            f"{', '.join(DEVICE_TYPES)}, optionally with an index (cuda:0)"
        )
    return text


def parse_threads(value: Any, where: str, *, measuring: bool) -> int | None:
    """``--llmperf-threads``: a count, or ``auto`` (None: torch's own choice, left alone).

    Unset, a run that measures gets ``DEFAULT_CPU_THREADS``; one that does not (a plain
    ``pytest``) leaves torch alone.
    """
    if value is None:
        return DEFAULT_CPU_THREADS if measuring else None
    if isinstance(value, str):
        value = value.strip()
    n = parse_count(value, where, allow_auto=True, minimum=1, maximum=MAX_THREADS)
    return None if n == "auto" else int(n)
