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

Loading validates every field the plugin reads (``checks._check_entry``): a wrong type,
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

Modules: :mod:`.schema` (the format's constants, BaselineFile), :mod:`.project` (whose
file it is), :mod:`.checks` and :mod:`.reading` (validating and loading),
:mod:`.entries` (sketches, summaries, pooled runs), :mod:`.writing` (merge and atomic
write). Everything is imported from here.
"""

from __future__ import annotations

from .entries import metric_entry, metric_samples, run_spread, sketch, summarize, test_entry
from .project import Project, find_project, normalize_project, other_project_error
from .reading import load
from .schema import (
    DIGITS,
    MAX_DEPTH,
    SCHEMA,
    SCHEMA_VERSION,
    SKETCH_SIZE,
    SUMMARY_ABOVE,
    BaselineError,
    BaselineFile,
)
from .writing import dumps, write

__all__ = [
    "DIGITS",
    "MAX_DEPTH",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SKETCH_SIZE",
    "SUMMARY_ABOVE",
    "BaselineError",
    "BaselineFile",
    "Project",
    "dumps",
    "find_project",
    "load",
    "metric_entry",
    "metric_samples",
    "normalize_project",
    "other_project_error",
    "run_spread",
    "sketch",
    "summarize",
    "test_entry",
    "write",
]
