"""Baseline files: one JSON per device, validated on load, merged and written atomically.

Two kinds of file, one format. ``baselines/<machine>.json`` (the device model,
or ``--llmperf-machine``) holds what only that machine can reproduce: time,
throughput, memory, energy. ``baselines/work/<device type>.json`` holds the work
signatures, which every machine of the device type shares. Layout::

    {"schema": "pytest-llmperf-baseline", "schema_version": 2, "project": "my-model",
     "device": {"key": ..., "name": ...}, "fingerprint": {...},
     "tests": {"<nodeid>": {"status": "ok", "tier": "smoke", "group": ..., "params": {...},
                "metrics": {"time": {"value": ..., "unit": "s", "higher_is_better": false,
                                     "kind": "time", "tolerance": null, "gated": true,
                                     "runs": [{"samples": [...],
                                     "normalized_samples": [...]}]}}}}}

A work file keeps one entry per test and dispatch context (``measure.dispatch``): the
facts that decide which operators run, such as the torch version or a CPU's
AVX512_VNNI. A refresh under a new context adds its entry beside the others::

    "tests": {"<nodeid>": {"contexts": {"cpu AVX512 amx_tile+avx512_vnni torch-2.13 ...": {
                "status": ..., "tier": ..., "metrics": {"work.ops": {...}, ...},
                "work": {"<measurement>": {"ops": {"aten.mm": 24, ...}, "syncs": {...}}},
                "stack": {"device_type": "cpu", "torch": ..., "cpu_features": [...]}}}}}

Version 1 work files kept one entry per test (no ``contexts``): read as one entry of
an unknown CPU context, and replaced by the test's first refresh.

A metric of more than SUMMARY_ABOVE samples also keeps a ``summary`` (n, mean, std,
quartiles) for people reading the file; no verdict reads it. Keys are sorted and
indentation fixed so a refresh diffs cleanly in review.
A write re-reads the file under a lock and merges, so pytest-xdist workers,
parallel jobs and partial refreshes (``-k``) never lose an entry; it goes to a
temporary file first and is renamed over the old one, so an interrupted write
leaves the old file intact. A corrupt or foreign file is never overwritten.

Loading validates every field the plugin reads (``_check_entry``): a wrong type,
a non-finite number (``NaN``, ``Infinity``, ``1e999``), a binary file or one
nested absurdly deep is a BaselineError naming the file, the test and the
field, never a crash later or a gate that silently passes. Writing refuses
non-finite numbers the same way, follows a symlinked file to its target,
leaves a read-only file alone and removes the temporaries an earlier, killed
write left behind.

``project`` names the project that wrote the file (``find_project``), so two
projects that share one baselines directory (a CI cache mounted at the same
path) cannot judge against or write over each other's entries: a file of
another project is refused, on read and on refresh, naming both projects, the
file and the options that separate them. A file without ``project`` (written
before it was recorded) is valid and read by anyone; the first refresh adopts
it for its project.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from .config import MAX_PROJECT
from .results import Metric, Status, TestResult

SCHEMA = "pytest-llmperf-baseline"
SCHEMA_VERSION = 2
#: Significant digits kept for samples: enough for any gate, small diffs on refresh.
DIGITS = 6
#: Samples kept per run: a quantile sketch of the run's distribution.
SKETCH_SIZE = 64
#: A run's ``summary`` (n, mean, std, quartiles) is stored only above this many samples:
#: no verdict reads it, and a handful of sorted samples already show it to a reader.
SUMMARY_ABOVE = 8
#: Deepest nesting of free-form values (params, fingerprint, stack): deeper is no baseline,
#: and would overflow the recursive JSON encoder on the next write.
MAX_DEPTH = 32
_STATUSES = tuple(s.value for s in Status)


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file."""


@dataclass
class BaselineFile:
    path: Path
    device: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The project that wrote the file; None: written before files recorded one.
    project: str | None = None

    def entry(self, nodeid: str, tier: str) -> dict[str, Any] | None:
        """The stored entry for this test at this tier; another tier's numbers don't count."""
        return _at_tier(self.tests.get(nodeid), tier)

    def entries(self, nodeid: str, tier: str) -> list[dict[str, Any]]:
        """A work file's entries for this test at this tier, one per dispatch context (a
        version 1 entry is one of an unknown context)."""
        e = self.tests.get(nodeid)
        if e is None:
            return []
        found = (
            [_at_tier(x, tier) for x in e["contexts"].values()]
            if "contexts" in e
            else [_at_tier(e, tier)]
        )
        return [x for x in found if x is not None]


def _at_tier(e: dict[str, Any] | None, tier: str) -> dict[str, Any] | None:
    if e is None or (tier and e.get("tier", tier) != tier):
        return None
    return e


# --------------------------------------------------------------------------- project identity


@dataclass(frozen=True)
class Project:
    """Which project a run records for: its ``name`` and, for messages, where it came from."""

    name: str
    source: str

    def owns(self, recorded: str) -> bool:
        """Whether a file's ``project`` is this one: names compare as package names do
        (PEP 503: case, and runs of ``-``, ``_`` and ``.``, do not matter)."""
        return normalize_project(recorded) == normalize_project(self.name)


def normalize_project(name: str) -> str:
    """A project name as PEP 503 compares distribution names: ``My_Model`` is ``my-model``."""
    return re.sub(r"[-_.\s]+", "-", name.strip()).lower()


def _pyproject_name(path: Path) -> str | None:
    """``[project] name`` (or Poetry's ``[tool.poetry] name``) of a pyproject.toml."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        import tomllib
    except ImportError:  # Python 3.10: the two tables' name lines, read plainly
        for table in ("project", "tool.poetry"):
            section = re.search(
                rf"^\[{re.escape(table)}\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S
            )
            found = section and re.search(
                r"""^name\s*=\s*["']([^"'\n]+)["']""", section.group(1), re.M
            )
            if found:
                return found.group(1)
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    for table in (data.get("project"), data.get("tool", {}).get("poetry")):
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            return table["name"]
    return None


def _setup_cfg_name(path: Path) -> str | None:
    """``[metadata] name`` of a setup.cfg."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    return parser.get("metadata", "name", fallback=None)


def find_project(rootdir: Path, given: str | None = None, given_from: str = "") -> Project:
    """The project a run records for: ``given`` (``--llmperf-project``), else the package
    name in the rootdir's pyproject.toml or setup.cfg, else the rootdir's own name.

    Why these: the identity must be the same on every clone, runner and machine of one
    project, and differ between projects. The package name is the same wherever the
    project is checked out (a fork's CI included) and whatever its tests are (a hash of
    the test paths would change with every new test); the rootdir's absolute path differs
    between runners, and a git remote is absent from a tarball and differs on a fork. The
    rootdir's name is the fallback for a project with neither file; ``--llmperf-project``
    settles what these cannot (two checkouts of one name, a renamed project).
    """
    if given:
        return Project(given.strip(), given_from or "--llmperf-project")
    for filename, read in (("pyproject.toml", _pyproject_name), ("setup.cfg", _setup_cfg_name)):
        name = read(rootdir / filename)
        if name and name.strip() and len(name) <= MAX_PROJECT:
            return Project(name.strip(), f"the name in {rootdir / filename}")
    return Project(rootdir.name or str(rootdir), f"the name of the rootdir {rootdir}")


def other_project_error(path: Path, recorded: str, project: Project) -> BaselineError:
    """Why a file of another project is neither read nor written, and what to do."""
    return BaselineError(
        f"llmperf: baseline file {path} belongs to project {recorded!r}, not to this project "
        f"{project.name!r} ({project.source}). Two projects share this baselines directory; "
        "one project's entries are never judged against or written over by another's, so "
        "the file was neither used nor changed. Give this project a directory of its own "
        "with --llmperf-baselines=DIR (ini llmperf_baselines), or, if it is the same project "
        f"under a new name, run with --llmperf-project={recorded} (ini llmperf_project)."
    )


def _fail(path: Path, why: str) -> BaselineError:
    return BaselineError(
        f"llmperf: baseline file {path} {why}. It was left untouched; fix or delete it "
        f"(or point --llmperf-baselines elsewhere) and run again."
    )


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


def _validate(
    data: Any, path: Path, device_key: str | None, project: Project | None = None
) -> BaselineFile:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise _fail(path, f'is not a pytest-llmperf baseline (no "schema": "{SCHEMA}")')
    version = data.get("schema_version")
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or version > SCHEMA_VERSION
        or version < 1
    ):
        raise _fail(
            path, f"has schema_version {version!r}; this plugin reads up to {SCHEMA_VERSION}"
        )
    device = data.get("device")
    tests = data.get("tests")
    if not isinstance(device, dict) or not isinstance(tests, dict):
        raise _fail(path, 'lacks a "device" object or a "tests" object')
    if not isinstance(device.get("key"), str):
        raise _fail(path, f"has a device key {_show(device.get('key'))}, expected a string")
    if device_key is not None and device.get("key") != device_key:
        raise _fail(
            path, f"belongs to device {device.get('key')!r}, not to this device {device_key!r}"
        )
    fingerprint = data.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise _fail(path, f"has a fingerprint that is {_show(fingerprint)}, not an object")
    recorded = data.get("project")
    if recorded is not None and (
        not isinstance(recorded, str) or not recorded.strip() or len(recorded) > MAX_PROJECT
    ):
        raise _fail(
            path,
            f"has a project {_show(recorded)}, expected the name of the project that wrote "
            f"it (a non-empty string of at most {MAX_PROJECT} characters)",
        )
    try:
        for key, x in data.items():
            if key != "tests":
                _sweep(x, _key("", key))
        for nodeid, entry in tests.items():
            _check_entry(nodeid, entry)
    except _Bad as exc:
        raise _fail(path, str(exc)) from None
    if recorded is not None and project is not None and not project.owns(recorded):
        raise other_project_error(path, recorded, project)
    return BaselineFile(path, device, fingerprint or {}, tests, recorded)


def load(
    path: Path, device_key: str | None = None, project: Project | None = None
) -> BaselineFile | None:
    """The baseline at ``path``, None if there is none; BaselineError if unusable, or if
    it names a project other than ``project`` (None: any project's file is read)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            path, f"is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise _fail(path, "is not valid JSON (nested too deeply to read)") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise _fail(path, f"is not valid JSON ({exc})") from None
    return _validate(data, path, device_key, project)


def sketch(samples: list[float], size: int = SKETCH_SIZE) -> list[float]:
    """At most ``size`` evenly spaced order statistics: keeps the distribution, bounds the file."""
    xs = sorted(samples)
    n = len(xs)
    if n <= size:
        return xs
    return [xs[round(i * (n - 1) / (size - 1))] for i in range(size)]


def summarize(samples: list[float]) -> dict[str, float]:
    """Robust summary of a sample, stored beside the sketch for readers of the file (no
    verdict reads it; above SKETCH_SIZE samples it says what the sketch cannot: n, mean, std)."""
    if not samples:
        return {}
    xs = sorted(samples)
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0

    def q(p: float) -> float:
        pos = p * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": xs[0],
        "q1": q(0.25),
        "median": q(0.5),
        "q3": q(0.75),
        "max": xs[-1],
    }


def _round(x: float) -> float:
    """Whole numbers (bytes, counts) stay exact; others keep DIGITS significant digits."""
    x = float(x)
    if x.is_integer():
        return x
    return float(f"{x:.{DIGITS}g}")


def metric_samples(m: dict[str, Any], normalized: bool = False) -> list[float]:
    """All samples of a stored metric, pooled over its runs."""
    key = "normalized_samples" if normalized else "samples"
    return [x for run in m.get("runs", []) for x in run.get(key, [])]


def run_spread(m: dict[str, Any], normalized: bool = False) -> float:
    """Largest relative distance of one pooled run's median from the runs' median."""
    key = "normalized_samples" if normalized else "samples"
    medians = [median(r[key]) for r in m.get("runs", []) if r.get(key)]
    if len(medians) < 2:
        return 0.0
    mid = median(medians)
    return max(abs(x - mid) for x in medians) / mid if mid else 0.0


def metric_entry(metric: Metric, previous: dict[str, Any] | None, pool: int) -> dict[str, Any]:
    """A metric as stored; with ``pool`` > 1 the last ``pool`` runs are kept together.
    A count of the work signature is exact: its value alone, no samples to pool."""
    entry: dict[str, Any] = {
        "value": _round(metric.value),
        "unit": metric.unit,
        "higher_is_better": metric.higher_is_better,
        "kind": metric.kind,
        "tolerance": metric.tolerance,
        "gated": metric.gated,
    }
    if metric.kind == "work":
        return entry
    run: dict[str, Any] = {"samples": [_round(x) for x in sketch(metric.samples or [metric.value])]}
    if metric.normalized_samples:
        run["normalized_samples"] = [_round(x) for x in sketch(metric.normalized_samples)]
    runs = [run]
    if previous is not None and pool > 1:
        runs = (list(previous.get("runs", [])) + runs)[-pool:]
    if len(runs) > 1:
        entry["value"] = _round(median([x for r in runs for x in r["samples"]]))
    if len(metric.samples) > SUMMARY_ABOVE:  # fewer are read straight off the samples
        summary = summarize(metric.samples)
        entry["summary"] = {k: v if k == "n" else _round(v) for k, v in summary.items()}
    entry["runs"] = runs
    return entry


def test_entry(result: TestResult, previous: dict[str, Any] | None, pool: int) -> dict[str, Any]:
    """A test's stored entry; runs are pooled only with a previous entry of the same tier."""
    same = previous is not None and previous.get("tier") == result.tier
    prev_metrics = previous.get("metrics", {}) if same and previous else {}
    if same and previous and previous.get("status") != result.status:
        prev_metrics = {}
    entry = {
        "status": result.status.value,
        "tier": result.tier,
        "group": result.group,
        "params": result.params,
        "metrics": {
            name: metric_entry(m, prev_metrics.get(name), pool)
            for name, m in sorted(result.metrics.items())
        },
    }
    if result.work:  # the by-name counts that explain a work diff
        entry["work"] = result.work
    return entry


def _finite_float(x: Any) -> bool:
    """What the writer stores as a number: anything ``float()`` takes but text, if finite."""
    if isinstance(x, (str, bytes)):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError, OverflowError):
        return False


def _check_writable(path: Path, results: list[TestResult], **facts: Any) -> None:
    """Refuse what would be written as ``NaN``/``Infinity`` (invalid JSON to strict readers,
    and a baseline that hides every regression), naming the file, test and metric."""
    head = f"llmperf: not writing baseline file {path} (left untouched):"
    try:
        for key, value in facts.items():
            _sweep(value, key)
    except _Bad as exc:
        raise BaselineError(f"{head} {exc}") from None
    for r in results:
        for name, m in sorted(r.metrics.items()):
            fields = [("value", m.value), ("tolerance", m.tolerance)]
            fields += [(f"samples[{i}]", x) for i, x in enumerate(m.samples)]
            fields += [(f"normalized_samples[{i}]", x) for i, x in enumerate(m.normalized_samples)]
            for where, x in fields:
                if not (where == "tolerance" and x is None) and not _finite_float(x):
                    raise BaselineError(
                        f"{head} test {r.nodeid!r}, metric {name!r}: {where} is {_show(x)}, "
                        "not a finite number; a baseline holds only finite numbers (NaN and "
                        "Infinity hide any change, and strict JSON readers reject them)"
                    )
        try:
            _sweep(r.params, "params")
            _sweep(r.work, "work")
        except _Bad as exc:
            raise BaselineError(f"{head} test {r.nodeid!r}: {exc}") from None


def dumps(data: dict[str, Any]) -> str:
    """The file's text: sorted keys, fixed indentation; never ``NaN`` or ``Infinity``."""
    try:
        return json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    except ValueError as exc:  # a non-finite float the checks before did not see
        raise BaselineError(f"llmperf: not written as JSON: {exc}") from None
    except RecursionError:
        raise BaselineError("llmperf: not written as JSON: nested too deeply") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """An exclusive lock on the baseline directory, so concurrent writers merge one at a
    time; locking the directory itself leaves no lock file behind. Yields whether the
    lock is held (not on Windows, where rename is still atomic)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: rename is still atomic
        yield False
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _file_mode(path: Path) -> int:
    """Keep an existing file's mode; a new one gets what the umask allows."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _refuse_read_only(path: Path, target: Path) -> None:
    """A file the user made read-only stays as it is: the rename that replaces it would
    ignore the file's mode (only the directory's counts), so look at the mode here."""
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        return
    if mode & 0o222 == 0:
        why = f"is read-only (mode {mode:04o})"
    elif not os.access(target, os.W_OK):
        why = f"is not writable by this user (mode {mode:04o})"
    else:
        return
    if path.is_symlink():
        why = f"(a link to {target}) {why}"
    raise BaselineError(
        f"llmperf: baseline file {path} {why}, so it was not refreshed and was left untouched. "
        f"Make it writable (chmod u+w {path}) to refresh it, or leave out "
        "--llmperf-update-baselines."
    )


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temporaries(target: Path) -> None:
    """Remove what a killed write of this file left (as large as the file itself):
    ``.<name>.XXXXXXXX.tmp``, the name ``mkstemp`` gives ours, and nothing of any other name
    (another file's temporaries, a user's ``.<name>.notes.tmp``).

    Called only while holding the directory lock, which makes every match stale: a writer
    of ours creates its temporary after taking the lock and renames or removes it before
    letting go, so while we hold the lock no writer of ours is mid-write, and a match was
    left by one that died holding it (SIGKILL, power loss). That rests on every writer
    taking the same lock: the lock is on the directory that holds the file itself (a
    symlink is resolved first, so writers through a link and writers of the target lock
    the same directory; older versions wrote through a link into the link's directory,
    which is not cleaned), and ``flock`` holds across processes and, on Linux NFS, across
    hosts. Where ``flock`` does nothing (some FUSE or SMB mounts) concurrent merges are
    unsafe anyway. Without fcntl (Windows) nothing is removed; should mkstemp's names ever
    change, nothing matches: both fail safe, leaving files rather than removing them."""
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"[a-z0-9_]{8}\.tmp")
    with os.scandir(target.parent) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def write(
    path: Path,
    *,
    device: dict[str, Any],
    fingerprint: dict[str, Any],
    results: list[TestResult],
    pool: int = 1,
    stack: dict[str, Any] | None = None,
    project: Project | None = None,
) -> int:
    """Merge ``results`` into the file at ``path``; returns how many entries were written.

    Entries of tests that did not run are kept. ``stack`` (a work file's) is the
    dispatch context stamped on each entry written: the entry goes beside the test's
    entries of other contexts and replaces the one of the same context (and a version 1
    entry, whose context is unknown), so a refresh on an AVX512_VNNI CPU or under a new
    torch never relabels what another recorded. Raises
    BaselineError, leaving the file as it was, if the existing file is corrupt,
    belongs to another device or to another ``project``, or is read-only, or a result
    holds a non-finite number. The file records ``project``'s name (a file that named
    none is adopted); with ``project`` None the file's own stays as it was.
    A symlinked file is written through: its target is replaced, the link stays.
    """
    _check_writable(path, results, device=device, fingerprint=fingerprint, stack=stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A link to a shared file: the target is what must change (replacing the link with a
    # plain file would leave the shared target stale), and its directory is what to lock.
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target) as locked:
        existing = load(path, device.get("key"), project)
        _refuse_read_only(path, target)
        tests = dict(existing.tests) if existing else {}
        if stack is not None:
            from .measure.dispatch import context_id

            key = context_id(stack)
        for r in results:
            if stack is None:
                tests[r.nodeid] = test_entry(r, tests.get(r.nodeid), pool)
                continue
            contexts = dict(tests.get(r.nodeid, {}).get("contexts", {}))
            contexts[key] = {**test_entry(r, contexts.get(key), pool), "stack": stack}
            tests[r.nodeid] = {"contexts": contexts}
        data = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "device": device,
            "fingerprint": fingerprint,
            "tests": tests,
        }
        # A file of this project keeps its name as recorded (no churn in review); one that
        # named none is adopted.
        name = (existing.project if existing else None) or (project.name if project else None)
        if name is not None:
            data["project"] = name
        try:
            text = dumps(data)
        except BaselineError as exc:
            raise BaselineError(f"{exc} (baseline file {path}, left untouched)") from None
        if locked:
            _remove_stale_temporaries(target)
        mode = _file_mode(target)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return len(results)
