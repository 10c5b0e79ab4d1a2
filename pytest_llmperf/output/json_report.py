"""The report as JSON: every result whole, for scripts and for diffing two runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..results import TestResult
from .tables import verdict_counts

FORMAT = "pytest-llmperf-report"
VERSION = 1


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: NaN/inf become null, paths and dates text, keys strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def dumps(data: Any, **kwargs: Any) -> str:
    """``data`` as strict JSON: what every JSON file the plugin writes goes through.

    ``json.dumps`` writes ``NaN`` and ``Infinity`` by default, which are not JSON
    (``jq``, JavaScript and most strict parsers reject the whole file). A value can be
    legitimately undefined (a change against a baseline of 0, a metric of a run that
    ran out of memory), so non-finite numbers become null (:func:`jsonable`), and
    ``allow_nan=False`` makes any that slipped through an error instead of a bad file.
    """
    return json.dumps(jsonable(data), allow_nan=False, **kwargs)


def render_json(results: list[TestResult], session: dict, hook: Any = None) -> str:
    """Session, verdict counts and results, with sorted keys: a stable, diffable file.

    ``hook`` is accepted for a renderer's common signature; JSON has no layout to hook.
    """
    data = {
        "format": FORMAT,
        "version": VERSION,
        "session": session,
        "summary": dict(verdict_counts(results)),
        "results": [r.to_dict() for r in results],
    }
    return dumps(data, sort_keys=True, indent=2) + "\n"
