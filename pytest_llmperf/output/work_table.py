"""The work signature in the report: every measurement's counts beside their baselines
and its most called operators (:func:`work_section`), and the work gate's summary
lines for the terminal (:func:`work_gate_lines`)."""

from __future__ import annotations

from collections import Counter

from .. import units
from ..judge.outcome import WorkGate
from ..results import Metric, TestResult
from .result_reads import baseline_change, short_name
from .table_model import Section, make_table, with_baselines

#: The work table's columns: (metric tail, heading); compile and kernel columns only when
#: some test has them, the retained and leak columns only when some test retains or leaks.
WORK_COLUMNS = (
    ("ops", "ops"),
    ("flops", "FLOPs"),
    ("bytes", "bytes"),
    ("syncs", "syncs"),
    ("copies", "copies"),
    ("tensor_peak", "tensor peak"),
    ("retained", "retained"),
    ("growth", "leak/call"),
    ("allocator_growth", "allocator leak/call"),
    ("graphs", "graphs"),
    ("graph_breaks", "graph breaks"),
    ("recompiles", "recompiles"),
    ("kernels", "kernels"),
)
_ALWAYS = 6
_WHEN_NONZERO = frozenset({"retained", "growth", "allocator_growth"})


def work_section(results: list[TestResult]) -> Section | None:
    """Every measurement's work signature: the counts the work gate compares, and the
    operators called most, so a reader sees what a test does without a profiler."""
    rows: list[tuple[TestResult, str, dict[str, Metric], dict[str, int]]] = []
    for r in results:
        for name in sorted(r.work):
            prefix = f"{name}.work." if name else "work."
            counts = {k[len(prefix) :]: m for k, m in r.metrics.items() if k.startswith(prefix)}
            if counts:
                rows.append((r, name, counts, r.work[name].get("ops", {})))
    if not rows:
        return None
    shown = [
        (key, title)
        for i, (key, title) in enumerate(WORK_COLUMNS)
        if i < _ALWAYS
        or any(
            key in counts and (key not in _WHEN_NONZERO or counts[key].value)
            for _, _, counts, _ in rows
        )
    ]
    # A count equal to its baseline needs no baseline beside it (counts are exact).
    changed = {
        key
        for key, _ in shown
        for r, _, counts, _ in rows
        if key in counts and baseline_change(counts[key], r.baseline_values.get(counts[key].name))
    }
    table_rows = []
    for r, name, counts, ops in rows:
        cells = [short_name(r.nodeid), name or "-"]
        for key, _ in shown:
            m = counts.get(key)
            if key in changed:
                base = r.baseline_values.get(m.name) if m is not None else None
                cells.append("-" if base is None else units.quantity(base, m.unit))
            cells.append(units.quantity(m.value, m.unit) if m is not None else "-")
        top = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        cells.append(", ".join(f"{op.removeprefix('aten.')} x{n}" for op, n in top) or "-")
        table_rows.append(cells)
    titles = [title for _, title in shown]
    columns = ["test", "measurement"]
    columns += with_baselines(titles, [t for k, t in shown if k in changed]) + ["most called"]
    note = (
        "Counted in one call outside the timed rounds; the same on every machine of this "
        "device type with the same torch, and gated exactly (any growth is a regression). "
        "A baseline column beside each count that differs from its baseline in some test."
    )
    return Section("Work signature", [make_table("", columns, table_rows, note)])


def work_gate_lines(results: list[TestResult]) -> list[str]:
    """How many tests the work gate decided, then one line per dispatch-context difference
    under which it only informed (counts differ from another context's entry)."""
    seen = Counter(r.work_gate for r in results if r.work_gate)
    if not seen:
        return []
    exact, equal = seen[WorkGate.EXACT], seen[WorkGate.EQUAL]
    against = [f"{exact} against an entry of this dispatch context"] if exact else []
    if equal:
        against.append(f"{equal} against another context's entry with equal counts")
    lines = [f"work gate: {exact + equal} of {len(results)} tests gated" + ": " * bool(against)]
    lines[0] += ", ".join(against)
    informed = Counter(r.work_context for r in results if r.work_gate == WorkGate.INFORMED)
    for differs, n in sorted(informed.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(
            f"work gate: {n} test{'s' if n != 1 else ''} only informed, counts differ from "
            f"an entry of another dispatch context ({differs}); record this context with "
            "--llmperf-update-baselines"
        )
    return lines
