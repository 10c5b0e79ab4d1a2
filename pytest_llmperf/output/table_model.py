"""The report's tables as data: a :class:`Table` is columns, text cells and alignment,
rendered alike by Markdown, HTML and the GitHub step summary; a :class:`Section` is a
report group's heading and tables. A project's own sections are built with these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import units
from ..results import TestResult

#: The rank of a generic section; a hook's section with a lower rank comes first.
GENERIC_RANK = 100


class Strong(str):
    """A table cell shown emphasised (bold), like the best cell of a pivot."""


@dataclass
class Table:
    """Columns and text rows; ``align`` is "l" or "r" per column."""

    columns: list[str]
    rows: list[list[str]]
    align: list[str]
    title: str = ""
    note: str = ""


@dataclass
class Section:
    """One report group: a heading and its tables.

    Sections sort by ``rank``, then by group name (the unnamed group last).
    ``group`` and ``results`` are filled in by the report for a hook's section.
    """

    title: str
    tables: list[Table] = field(default_factory=list)
    rank: int = GENERIC_RANK
    group: str = ""
    results: list[TestResult] = field(default_factory=list)


def make_table(title: str, columns: list[str], rows: list[list[Any]], note: str = "") -> Table:
    """A table whose non-text cells become numbers and whose numeric columns align right."""
    cells = [[c if isinstance(c, str) else units.number(c) for c in row] for row in rows]
    align = []
    for j in range(len(columns)):
        col = [row[j] for row in cells if j < len(row) and row[j] not in ("-", "")]
        numeric = bool(col) and all(_looks_numeric(c) for c in col)
        align.append("r" if numeric else "l")
    return Table(columns=columns, rows=cells, align=align, title=title, note=note)


def _looks_numeric(cell: str) -> bool:
    text = cell.strip().split(" ")[0].rstrip("%").replace(",", "")
    try:
        float(text)
    except ValueError:
        return False
    return True


def with_baselines(columns: list[str], with_base: list[str]) -> list[str]:
    """The column names with ``<name> baseline`` before each one in ``with_base``: a
    metric's baseline beside its current value, in every table of metrics."""
    out: list[str] = []
    for name in columns:
        out += [f"{name} baseline", name] if name in with_base else [name]
    return out
