"""Run options (command line and ini) and per-test policies (the marker), as frozen dataclasses.

Frozen so a policy cannot drift while a test runs. ``RunOptions.from_pytest_config``
reads the session's options; ``Policy.from_markers`` applies a test's markers. The
marker's keywords are the fields of ``Policy`` (each field carries its parser), so
the keyword list, its validation and its help text cannot disagree. Every bad
value raises ``ValueError`` naming the option or keyword. The plugin turns a bad
option into a usage error (it concerns the whole run) and a bad marker into an
error of that test alone (``plugin.pytest_runtest_setup``): one test's slip must
not stop the others.

The modules: ``limits`` (bounds and defaults), ``values`` (number, device and thread
parsers), ``tolerances`` (defaults per kind and their parsing), ``names`` (which metric
names a gate or tolerance may give), ``policy`` (``Policy`` and the marker), ``options``
(the flags and their ini twins) and ``run`` (``RunOptions``). Everything is re-exported
here: import from ``pytest_llmperf.config``.
"""

from __future__ import annotations

from .limits import (
    DEFAULT_CPU_THREADS,
    MAX_POOL,
    MAX_PROJECT,
    MAX_REMEASURE,
    MAX_ROUNDS,
    MAX_THREADS,
    MAX_TIME_S,
    MAX_TOLERANCE,
    MAX_WARMUP,
)
from .names import (
    OPTIONAL_METRICS,
    PLUGIN_METRICS,
    check_run_names,
    metric_keys,
    ungated_names,
    unknown_names,
    unknown_run_names,
)
from .options import INI_BOOLEANS, OPTIONS, Option, flag, read_option, without_options
from .policy import MARKER_KEYWORDS, Policy, marker_help, marker_names, unmatched_marker_names
from .run import REPORT_SUFFIXES, TIERS, RunOptions
from .tolerances import (
    DEFAULT_TOLERANCES,
    MEASURED_KINDS,
    MEMORY_ABS_SLACK,
    parse_tolerance,
    parse_tolerances,
)
from .values import (
    DEVICE_TYPES,
    arg_type,
    parse_count,
    parse_device,
    parse_float,
    parse_threads,
    shown,
)

__all__ = [
    "DEFAULT_CPU_THREADS",
    "DEFAULT_TOLERANCES",
    "DEVICE_TYPES",
    "INI_BOOLEANS",
    "MARKER_KEYWORDS",
    "MAX_POOL",
    "MAX_PROJECT",
    "MAX_REMEASURE",
    "MAX_ROUNDS",
    "MAX_THREADS",
    "MAX_TIME_S",
    "MAX_TOLERANCE",
    "MAX_WARMUP",
    "MEASURED_KINDS",
    "MEMORY_ABS_SLACK",
    "OPTIONAL_METRICS",
    "OPTIONS",
    "PLUGIN_METRICS",
    "REPORT_SUFFIXES",
    "TIERS",
    "Option",
    "Policy",
    "RunOptions",
    "arg_type",
    "check_run_names",
    "flag",
    "marker_help",
    "marker_names",
    "metric_keys",
    "parse_count",
    "parse_device",
    "parse_float",
    "parse_threads",
    "parse_tolerance",
    "parse_tolerances",
    "read_option",
    "shown",
    "ungated_names",
    "unknown_names",
    "unknown_run_names",
    "unmatched_marker_names",
    "without_options",
]
