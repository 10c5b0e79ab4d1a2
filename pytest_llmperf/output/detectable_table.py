"""What each timed gate could see in this run (``judge.detectable``): a section for the
report and one summary line for the terminal."""

from __future__ import annotations

from .. import units
from ..judge.detectable import can_see, sees_line
from ..results import TestResult
from .result_reads import short_name
from .table_model import Section, make_table


def detectable_section(results: list[TestResult]) -> Section | None:
    """What each timed gate could see in this run: the smallest change its samples would
    show (``judge.detectable``) beside its tolerance, the blind ones first."""
    rows = sorted(
        (
            (mdc > tol, short_name(r.nodeid), name, mdc, tol, r.detectable_why.get(name, ""))
            for r in results
            for name, (mdc, tol) in r.detectable.items()
        ),
        key=lambda row: (not row[0], -row[3] / row[4] if row[4] else 0, row[1]),
    )
    if not rows:
        return None
    table_rows = [
        [test, name, can_see(mdc, why), units.percent(tol), "no" if blind else "yes"]
        for blind, test, name, mdc, tol, why in rows
    ]
    note = (
        "The smallest change (80% power, one-sided 1%) that the gate's samples would show, "
        "floored by the baseline's run-to-run spread; a gate above its tolerance passes "
        "changes it cannot see (--llmperf-strict fails it). E.g. "
        + sees_line(rows[0][3], rows[0][4], rows[0][5])
        + "."
    )
    columns = ["test", "metric", "can see", "tolerance", "sees its tolerance"]
    return Section("What each gate can see", [make_table("", columns, table_rows, note)])


def detectable_line(results: list[TestResult]) -> str | None:
    """One summary line: how many timed gates see their tolerance, the worst one named."""
    pairs = [
        (mdc, tol, r.nodeid, n, r.detectable_why.get(n, ""))
        for r in results
        for n, (mdc, tol) in r.detectable.items()
    ]
    if not pairs:
        return None
    blind = [p for p in pairs if p[0] > p[1]]
    worst = max(pairs, key=lambda p: p[0] / p[1] if p[1] else p[0])

    return (
        f"what the timed gates can see: {len(pairs) - len(blind)} of {len(pairs)} see their "
        f"tolerance; least: {short_name(worst[2])} {worst[3]} {sees_line(worst[0], worst[1], worst[4])}"
    )
