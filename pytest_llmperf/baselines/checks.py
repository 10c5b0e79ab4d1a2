"""The checks of a baseline's fields: every key the plugin reads has the type it relies on,
and no number anywhere is non-finite or nested too deep.

Shared by the reader (a file that fails is a BaselineError naming the file, the test
and the field) and the writer (which refuses what it could not read back).
"""

from __future__ import annotations

import math
from typing import Any

from ..results import Status
from .schema import MAX_DEPTH

_STATUSES = tuple(s.value for s in Status)


class _Bad(Exception):
    """What is wrong inside a file, in words that follow the file's name."""


def _is_number(x: Any) -> bool:
    """A finite JSON number. ``true`` is an int to Python but no number in a baseline, and
    ``NaN``, ``Infinity``, ``1e999`` (parsed as inf) or an int beyond a float hide any change."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # 10**400: no float holds it
        return False


def _show(x: Any) -> str:
    if isinstance(x, dict):
        return "an object"
    if isinstance(x, list):
        return "a list"
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _not_number(x: Any, at: str, want: str = "a finite number") -> _Bad:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and not _is_number(x):
        return _Bad(
            f"{at} is {_show(x)}, not a finite number (NaN, Infinity and 1e999 are invalid "
            "in a baseline: they hide every change)"
        )
    return _Bad(f"{at} is {_show(x)}, expected {want}")


def _key(at: str, key: Any) -> str:
    """``runs[0].samples``: where a field is, as a reader finds it in the file."""
    if isinstance(key, str) and key.isidentifier():
        return f"{at}.{key}" if at else key
    return f"{at}[{key!r}]"


def _sweep(value: Any, where: str) -> None:
    """A free-form value (params, fingerprint, stack, unknown keys): no number in it may be
    non-finite, and it may not nest deeper than MAX_DEPTH. Iterative: no RecursionError."""
    todo = [(value, where, 0)]
    while todo:
        x, at, depth = todo.pop()
        if isinstance(x, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                raise _Bad(f"{at} nests deeper than {MAX_DEPTH} levels")
            items = x.items() if isinstance(x, dict) else enumerate(x)
            todo += [(v, _key(at, k), depth + 1) for k, v in items]
        elif isinstance(x, (int, float)) and not isinstance(x, bool) and not _is_number(x):
            raise _not_number(x, at)


_PLAIN_NUMBERS = frozenset({int, float})
#: The keys of a metric and of a run whose types are checked one by one; any other key
#: (a newer writer's, a person's note) is tolerated, only swept for non-finite numbers.
_METRIC_TYPES = {
    "unit": (str, "a string"),
    "kind": (str, "a string"),
    "higher_is_better": (bool, "true or false"),
    "gated": (bool, "true or false"),
    "summary": (dict, "an object"),
    "runs": (list, "a list"),
}
_METRIC_KEYS = frozenset({"value", "tolerance", *_METRIC_TYPES})
_RUN_KEYS = frozenset({"samples", "normalized_samples"})


def _numbers(xs: Any, field: str, *, empty: bool = True) -> None:
    """A list of finite numbers (samples). One pass in C for the usual file (plain numbers
    with a finite sum); the item by item look only to name what is wrong."""
    if not isinstance(xs, list) or not (xs or empty):
        raise _Bad(f"{field} is {_show(xs)}, expected a {'' if empty else 'non-empty '}list")
    try:
        if set(map(type, xs)) <= _PLAIN_NUMBERS and math.isfinite(sum(xs)):
            return
    except OverflowError:  # an int beyond a float, or a sum beyond one: look item by item
        pass
    for i, x in enumerate(xs):
        if not _is_number(x):
            raise _not_number(x, f"{field}[{i}]")


def _check_metric(m: Any) -> None:
    """Every key the judge and the merge read: ``value``, ``tolerance``, ``gated``,
    ``runs[*].samples`` and ``normalized_samples`` (``metric_samples``, ``run_spread``,
    pooling), and the descriptive ``unit``, ``kind``, ``higher_is_better``, ``summary``."""
    if not isinstance(m, dict):
        raise _Bad(f"is {_show(m)}, expected an object")
    if not _is_number(m.get("value")):
        raise _not_number(m.get("value"), "value")
    for key, x in m.items():
        if key in _METRIC_TYPES:
            kind, words = _METRIC_TYPES[key]
            if not isinstance(x, kind):
                raise _Bad(f"{key} is {_show(x)}, expected {words}")
        elif key not in _METRIC_KEYS:
            _sweep(x, _key("", key))
    tolerance = m.get("tolerance")
    if tolerance is not None and not (_is_number(tolerance) and tolerance >= 0):
        raise _not_number(tolerance, "tolerance", "null or a finite number >= 0")
    for key, x in m.get("summary", {}).items():
        if not _is_number(x):
            raise _not_number(x, _key("summary", key))
    for i, run in enumerate(m.get("runs", [])):
        if not isinstance(run, dict):
            raise _Bad(f"runs[{i}] is {_show(run)}, expected an object")
        # pooling takes the median of every run's samples: each run needs some
        _numbers(run.get("samples"), f"runs[{i}].samples", empty=False)
        if "normalized_samples" in run:
            _numbers(run["normalized_samples"], f"runs[{i}].normalized_samples")
        for key, x in run.items():
            if key not in _RUN_KEYS:
                _sweep(x, _key(f"runs[{i}]", key))


def _check_work(work: Any) -> None:
    """By-name counts per measurement (``{"decode": {"ops": {"aten.mm": 24}}}``): the work
    diff subtracts and prints them as whole numbers."""
    if not isinstance(work, dict):
        raise _Bad(f"work is {_show(work)}, expected an object")
    for measurement, details in work.items():
        if not isinstance(details, dict):
            raise _Bad(f"{_key('work', measurement)} is {_show(details)}, expected an object")
        for detail, counts in details.items():
            at = _key(_key("work", measurement), detail)
            if not isinstance(counts, dict):
                raise _Bad(f"{at} is {_show(counts)}, expected an object of counts")
            for name, n in counts.items():
                if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                    raise _Bad(f"{at}[{name!r}] is {_show(n)}, expected a whole count >= 0")


def _check_entry(nodeid: str, entry: Any, contexts: bool = True) -> None:
    """One test's entry: every key the plugin reads, with the type it relies on; unknown
    keys are tolerated (only checked for non-finite numbers and depth). A work file's
    entry holds one such entry per dispatch context."""
    if not isinstance(entry, dict):
        raise _Bad(f"has a malformed entry for {nodeid!r}: it is {_show(entry)}, not an object")
    if contexts and "contexts" in entry:
        if not isinstance(entry["contexts"], dict) or not entry["contexts"]:
            raise _Bad(
                f"has a malformed entry for {nodeid!r}: contexts is {_show(entry['contexts'])}, "
                "expected a non-empty object"
            )
        for ctx, inner in entry["contexts"].items():
            _check_entry(f"{nodeid}, context {ctx}", inner, contexts=False)
        return

    def bad(why: str) -> _Bad:
        return _Bad(f"has a malformed entry for {nodeid!r}: {why}")

    if "status" in entry and entry["status"] not in _STATUSES:
        want = " or ".join(map(repr, _STATUSES))
        raise bad(f"status is {_show(entry['status'])}, expected {want}")
    if "tier" in entry and not isinstance(entry["tier"], str):
        raise bad(f"tier is {_show(entry['tier'])}, expected a string")
    if entry.get("group") is not None and not isinstance(entry["group"], str):
        raise bad(f"group is {_show(entry['group'])}, expected a string")
    for key in ("params", "metrics", "stack"):
        if key in entry and not isinstance(entry[key], dict):
            raise bad(f"{key} is {_show(entry[key])}, expected an object")
    for name, m in entry.get("metrics", {}).items():
        try:
            _check_metric(m)
        except _Bad as exc:
            raise _Bad(f"has a malformed metric {name!r} in {nodeid!r}: {exc}") from None
    if "work" in entry:
        try:
            _check_work(entry["work"])
        except _Bad as exc:
            raise _Bad(f"has a malformed work signature in {nodeid!r}: {exc}") from None
    for key, x in entry.items():
        if key not in ("metrics", "work"):
            try:
                _sweep(x, _key("", key))
            except _Bad as exc:
                raise bad(str(exc)) from None
