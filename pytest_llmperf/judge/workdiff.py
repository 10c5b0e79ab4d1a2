"""A work signature's change, worded so a person reads it in one glance.

``work: aten.mm 24 -> 36 (+12), flops 1.208 GFLOP -> 1.812 GFLOP (+50.0%), syncs 0 -> 32
(aten._local_scalar_dense x32)``: the operators whose counts moved, then every
other total that moved, each with the names behind it (which sync, which graph
break, which recompilation). The decisions say which totals moved past their
tolerance; the by-name counts stored beside them say why.
"""

from __future__ import annotations

from typing import Any

from .. import units
from ..measure.work import TOTALS
from .decision import Decision

#: Operators listed by name before the rest are summed up.
MAX_NAMES = 6
#: The words for each total, and the by-name counts that explain it (``ops``, worded by
#: name before the rest, is not listed).
_TOTALS = {t.name: (t.label, t.detail) for t in TOTALS if t.name != "ops"}


def by_name(old: dict[str, int], new: dict[str, int], limit: int = MAX_NAMES) -> list[str]:
    """``aten.mm 24 -> 36 (+12)`` for each name whose count moved, largest moves first."""
    moved = [
        (name, old.get(name, 0), new.get(name, 0))
        for name in sorted(set(old) | set(new))
        if old.get(name, 0) != new.get(name, 0)
    ]
    moved.sort(key=lambda x: -abs(x[2] - x[1]))
    parts = [f"{name} {a} -> {b} ({b - a:+d})" for name, a, b in moved[:limit]]
    if len(moved) > limit:
        parts.append(f"{len(moved) - limit} more operators")
    return parts


def _causes(old: dict[str, int], new: dict[str, int], unit: str = "") -> str:
    """The names whose counts grew, as ``name xN`` (what was added), or ``name +8 MiB``
    where they count bytes (what ``retained`` keeps, by the operator that made it)."""
    grown = [(n, new[n] - old.get(n, 0)) for n in sorted(new) if new[n] > old.get(n, 0)]
    grown.sort(key=lambda nk: -nk[1])
    if unit == "B":
        return ", ".join(f"{n} +{units.quantity(k, unit)}" for n, k in grown[:3])
    return ", ".join(f"{n} x{k}" for n, k in grown[:3])


def _split(metric: str) -> tuple[str, str]:
    """``decode.work.flops`` -> (``decode``, ``flops``)."""
    head, _, total = metric.rpartition("work.")
    return head.rstrip("."), total


def work_diff(decisions: list[Decision], current: dict[str, Any], stored: dict[str, Any]) -> str:
    """The moved totals of ``decisions`` (all work metrics of one test) with their names;
    ``current`` / ``stored`` are the by-name counts per measurement name."""
    order = {total: i for i, total in enumerate(_TOTALS)}  # "ops" (not listed) first
    groups: dict[str, list[str]] = {}
    for d in sorted(decisions, key=lambda d: order.get(_split(d.metric)[1], -1)):
        measurement, total = _split(d.metric)
        new, old = current.get(measurement, {}), stored.get(measurement, {})
        parts = groups.setdefault(measurement, [])
        if total == "ops":
            names = by_name(old.get("ops", {}), new.get("ops", {}))
            parts[:0] = names or [
                f"ops {units.quantity(d.baseline)} -> {units.quantity(d.current)}"
            ]
            continue
        label, detail = _TOTALS.get(total, (total, None))
        text = (
            f"{label} {units.quantity(d.baseline, d.unit)} -> {units.quantity(d.current, d.unit)}"
        )
        if d.unit in ("FLOP", "B") and d.baseline:
            # +4 B on 16 MiB is +0.0%: say the difference itself where the share rounds away
            small = abs(d.change) < 0.0005
            delta = units.quantity(d.current - d.baseline, d.unit)
            text += (
                f" ({'+' if d.current > d.baseline else ''}{delta})"
                if small
                else f" ({units.change(d.change)})"
            )
        causes = _causes(old.get(detail, {}), new.get(detail, {}), d.unit) if detail else ""
        parts.append(f"{text} ({causes})" if causes else text)
    return "; ".join(
        (f"{name}: " if name else "") + ", ".join(parts) for name, parts in groups.items()
    )
