"""Baseline files: one JSON per device, validated on load, merged and written atomically.

Two kinds of file, one format. ``baselines/<machine>.json`` (the device model,
or ``--llmperf-machine``) holds what only that machine can reproduce: time,
throughput, memory, energy. ``baselines/work/<device type>.json`` holds the work
signatures, which every machine of the device type shares. Layout::

    {"schema": "pytest-llmperf-baseline", "schema_version": 1,
     "device": {"key": ..., "name": ...}, "fingerprint": {...},
     "tests": {"<nodeid>": {"status": "ok", "tier": "smoke", "group": ..., "params": {...},
                "metrics": {"time": {"value": ..., "unit": "s", "higher_is_better": false,
                                     "kind": "time", "tolerance": null, "gated": true,
                                     "summary": {...}, "runs": [{"samples": [...],
                                     "normalized_samples": [...]}]}},
                "work": {"<measurement>": {"ops": {"aten.mm": 24, ...}, "syncs": {...}}},
                "stack": {"torch": ..., "torchao": ...}}}}  # work file only

Keys are sorted and indentation fixed so a refresh diffs cleanly in review.
A write re-reads the file under a lock and merges, so pytest-xdist workers,
parallel jobs and partial refreshes (``-k``) never lose an entry; it goes to a
temporary file first and is renamed over the old one, so an interrupted write
leaves the old file intact. A corrupt or foreign file is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from .results import Metric, TestResult

SCHEMA = "pytest-llmperf-baseline"
SCHEMA_VERSION = 1
#: Significant digits kept for samples: enough for any gate, small diffs on refresh.
DIGITS = 6
#: Samples kept per run: a quantile sketch of the run's distribution.
SKETCH_SIZE = 64


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file."""


@dataclass
class BaselineFile:
    path: Path
    device: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def entry(self, nodeid: str, tier: str) -> dict[str, Any] | None:
        """The stored entry for this test at this tier; another tier's numbers don't count."""
        e = self.tests.get(nodeid)
        if e is None or (tier and e.get("tier", tier) != tier):
            return None
        return e


def _fail(path: Path, why: str) -> BaselineError:
    return BaselineError(
        f"llmperf: baseline file {path} {why}. It was left untouched; fix or delete it "
        f"(or point --llmperf-baselines elsewhere) and run again."
    )


def _validate(data: Any, path: Path, device_key: str | None) -> BaselineFile:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise _fail(path, f'is not a pytest-llmperf baseline (no "schema": "{SCHEMA}")')
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise _fail(
            path, f"has schema_version {version!r}; this plugin reads up to {SCHEMA_VERSION}"
        )
    device = data.get("device")
    tests = data.get("tests")
    if not isinstance(device, dict) or not isinstance(tests, dict):
        raise _fail(path, 'lacks a "device" object or a "tests" object')
    if device_key is not None and device.get("key") != device_key:
        raise _fail(
            path, f"belongs to device {device.get('key')!r}, not to this device {device_key!r}"
        )
    for nodeid, entry in tests.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics", {}), dict):
            raise _fail(path, f"has a malformed entry for {nodeid!r}")
        for name, m in entry.get("metrics", {}).items():
            if not isinstance(m, dict) or not isinstance(m.get("value"), (int, float)):
                raise _fail(path, f"has a malformed metric {name!r} in {nodeid!r}")
        if not isinstance(entry.get("stack", {}), dict):
            raise _fail(path, f"has a malformed stack in {nodeid!r}")
        work = entry.get("work", {})
        if not isinstance(work, dict) or not all(
            isinstance(counts, dict) and all(isinstance(v, dict) for v in counts.values())
            for counts in work.values()
        ):
            raise _fail(path, f"has a malformed work signature in {nodeid!r}")
    return BaselineFile(path, device, data.get("fingerprint") or {}, tests)


def load(path: Path, device_key: str | None = None) -> BaselineFile | None:
    """The baseline at ``path``, None if there is none; BaselineError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return _validate(data, path, device_key)


def sketch(samples: list[float], size: int = SKETCH_SIZE) -> list[float]:
    """At most ``size`` evenly spaced order statistics: keeps the distribution, bounds the file."""
    xs = sorted(samples)
    n = len(xs)
    if n <= size:
        return xs
    return [xs[round(i * (n - 1) / (size - 1))] for i in range(size)]


def summarize(samples: list[float]) -> dict[str, float]:
    """Robust summary of a sample, stored beside the sketch for readers of the file."""
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
    entry["summary"] = {
        k: _round(v) for k, v in summarize(metric.samples or [metric.value]).items()
    }
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


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the baseline directory, so concurrent writers merge one at a
    time; locking the directory itself leaves no lock file behind."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: rename is still atomic
        yield
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
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


def write(
    path: Path,
    *,
    device: dict[str, Any],
    fingerprint: dict[str, Any],
    results: list[TestResult],
    pool: int = 1,
    stack: dict[str, Any] | None = None,
) -> int:
    """Merge ``results`` into the file at ``path``; returns how many entries were written.

    Entries of tests that did not run are kept. ``stack`` is stamped on each entry
    written (the work file's torch version per entry: a ``-k`` refresh under a new
    torch must not relabel entries recorded under the old one). Raises
    BaselineError, leaving the file as it was, if the existing file is corrupt or
    belongs to another device.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        existing = load(path, device.get("key"))
        tests = dict(existing.tests) if existing else {}
        for r in results:
            tests[r.nodeid] = test_entry(r, tests.get(r.nodeid), pool)
            if stack is not None:
                tests[r.nodeid]["stack"] = stack
        data = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "device": device,
            "fingerprint": fingerprint,
            "tests": tests,
        }
        text = dumps(data)
        mode = _file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return len(results)
