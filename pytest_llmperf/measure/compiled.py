"""What torch.compile did around a measurement: graphs, graph breaks and recompilations.

``torch._dynamo``'s own counters, read before the warm-up and after the rounds; the
work signature (``measure.work``) keeps their difference. Nothing is read where
dynamo was never imported: then nothing was compiled.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from typing import Any


def compile_counters() -> dict[str, Any] | None:
    """dynamo's counters now; None where torch._dynamo was never imported (nothing compiled)."""
    if "torch._dynamo" not in sys.modules:
        return None
    from torch._dynamo.utils import counters, guard_failures

    recompiles: Counter[str] = Counter()
    for code, reasons in list(guard_failures.items()):
        # A recompilation logs one failed guard per cached entry, newest first; the oldest
        # entry ("3/0: ...") fails every time, so its lines count the recompilations.
        first = [r for r in map(str, reasons) if _FIRST_ENTRY.match(r)] or list(map(str, reasons))
        for reason in first:
            text = _FIRST_ENTRY.sub("", reason, count=1)
            recompiles[f"{getattr(code, 'co_name', code)}: {short(text)}"] += 1
    return {
        "graphs": int(counters["stats"].get("unique_graphs", 0)),
        "graph_breaks": Counter({short(k): v for k, v in counters["graph_break"].items()}),
        "recompiles": recompiles,
    }


#: dynamo's compile id of a cache entry's first compilation, at the start of a guard failure.
_FIRST_ENTRY = re.compile(r"^\s*\[?\d+/0\]?\s*:\s*")


def short(text: Any, width: int = 160) -> str:
    """A reason in one line: its first line and, where dynamo gives one, its explanation
    (which names the culprit: "builtin operator `print`"), whitespace collapsed."""
    lines = [" ".join(line.split()) for line in str(text).strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    explained = [line for line in lines[1:] if line.startswith("Explanation:")]
    line = lines[0] + (f" ({explained[0][len('Explanation:') :].strip()})" if explained else "")
    return line if len(line) <= width else line[: width - 3] + "..."


def add_compile_delta(
    sig: Any, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    """What dynamo compiled between two snapshots; nothing when it compiled nothing."""
    if after is None:
        return
    before = before or {"graphs": 0, "graph_breaks": Counter(), "recompiles": Counter()}
    graphs = after["graphs"] - before["graphs"]
    breaks = after["graph_breaks"] - before["graph_breaks"]
    recompiles = after["recompiles"] - before["recompiles"]
    if graphs or breaks or recompiles:
        sig.graphs, sig.graph_breaks, sig.recompiles = graphs, breaks, recompiles
