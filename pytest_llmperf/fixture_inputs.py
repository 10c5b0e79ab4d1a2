"""What the fixture's calls take, checked: counts, finite numbers, a setup's arguments.

Checked where the user's call is, so the error names the call and the value, before any
arithmetic (``batch=10**400`` overflowed there once).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .config import shown

#: The largest count a call takes (``batch``, ``prompt_tokens``): every count up to it
#: is exact as a float, so the rates computed from it cannot overflow or round.
MAX_COUNT = 2**53


def arguments_from_setup(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    setup: Callable[[], Any] | None,
    where: str,
) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
    """The call, and the setup that runs untimed before each round. As in pytest-benchmark,
    a setup may return ``(args, kwargs)``: that round's call then takes them (fresh inputs
    per round), and ``args``/``kwargs`` must not be given as well."""
    if setup is None:
        return (lambda: fn(*args, **kwargs)), None
    given: list[Any] = [None]

    def run_setup() -> None:
        returned = setup()
        if returned is None:
            given[0] = None
            return
        if not (isinstance(returned, tuple) and len(returned) == 2):
            raise TypeError(
                f"{where}: setup returned {shown(returned)}; it returns nothing, or "
                "(args, kwargs) for the call"
            )
        if args or kwargs:
            raise TypeError(
                f"{where}: setup returned the call's arguments, so args=/kwargs= cannot be "
                "given as well"
            )
        given[0] = (tuple(returned[0]), dict(returned[1] or {}))

    def call() -> Any:
        if given[0] is None:
            return fn(*args, **kwargs)
        call_args, call_kwargs = given[0]
        return fn(*call_args, **call_kwargs)

    return call, run_setup


def checked_count(value: Any, where: str, least: int) -> int:
    """An int from ``least`` to MAX_COUNT (a bool is not one), or an error naming ``where``;
    checked as an int, before any float arithmetic (``batch=10**400`` overflowed there)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{where}: expected an int >= {least}, got {shown(value)}")
    if value > MAX_COUNT:
        raise ValueError(f"{where}: must be <= 2**53, got {shown(value)}")
    return value


def finite(value: Any, where: str) -> float:
    """``value`` as a finite float: what a baseline can store (strict JSON has no NaN or
    Infinity) and a verdict can compare. A bool or a str is no number here."""
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{where} must be a finite number, got {shown(value)}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{where} must be a finite number, got {shown(value)}") from None
    if not math.isfinite(x):
        raise ValueError(f"{where} must be a finite number, got {x!r}")
    return x
