"""Run options (command line and ini) and per-test policies (the marker), as frozen dataclasses.

Frozen so a policy cannot drift while a test runs. ``RunOptions.from_pytest_config``
reads the session's options; ``Policy.from_markers`` applies a test's markers. The
marker's keywords are the fields of ``Policy`` (each field carries its parser), so
the keyword list, its validation and its help text cannot disagree. Every bad
value raises ``ValueError`` naming the option or keyword. The plugin turns a bad
option into a usage error (it concerns the whole run) and a bad marker into an
error of that test alone (``plugin.pytest_runtest_setup``): one test's slip must
not stop the others.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pytest

from .extras import missing

TIERS = ("smoke", "standard", "full")

#: Upper bounds of what a marker, a call or an option may ask for. Beyond them a value
#: is a slip (``rounds=10**30`` would never end, 100000 threads crash torch), not a plan.
MAX_ROUNDS = 1_000_000  # rounds, min_rounds, max_rounds
MAX_WARMUP = 100_000
MAX_TIME_S = 86_400.0  # max_time: one day
MAX_REMEASURE = 100
#: A tolerance is a fraction: 100 is 10000%, past anything a gate could mean.
MAX_TOLERANCE = 100.0
#: ``--llmperf-threads``: a fixed cap (not the CPU count) so a setting means the same on
#: every runner; torch.set_num_threads(100000) crashes or exhausts memory.
MAX_THREADS = 1024
#: Intra-op threads on the CPU while measuring, unless ``--llmperf-threads`` says otherwise
#: (``auto``: torch's own choice). Every trust figure in the README was measured on one
#: thread; with torch's 2 threads on 2 shared cores a baseline was 5-10x too slow, its
#: samples spread 7x and the drift correction had to be refused (measure/drift.py).
DEFAULT_CPU_THREADS = 1
MAX_POOL = 1000

#: Relative tolerance per metric kind: what a user would keep as a default gate.
#: Memory is near-deterministic, so it is tight; energy reads a coarse counter.
DEFAULT_TOLERANCES: dict[str, float] = {
    "time": 0.10,
    "throughput": 0.10,
    "memory": 0.05,
    "energy": 0.15,
    # An interleaved A/B ratio cancels machine drift, so it can gate tighter.
    "ratio": 0.05,
    # A tail percentile (inter-token latency p99) of a few hundred intervals per generation
    # moves more than a median between identical runs; a stall of one step every 32 tokens
    # takes p99 / p50 from about 1.3 to 2.0 (scripts/evidence/generation_trials.py).
    "tail": 0.25,
    "efficiency": 0.10,
    "other": 0.10,
    # Counted, not timed: any growth is a regression (see measure/work.py).
    "work": 0.0,
}
#: Kinds a bare tolerance ("--llmperf-tolerance=10%") applies to: the measured ones.
#: Work stays exact unless a tolerance names it.
MEASURED_KINDS = tuple(k for k in DEFAULT_TOLERANCES if k != "work")

#: Memory changes below this many bytes are never a regression (allocator slack).
MEMORY_ABS_SLACK = 4 * 2**20


# --------------------------------------------------------------------------- value parsers


def shown(value: Any) -> str:
    """``value`` for an error message: its repr, shortened (an int of 5000 digits has none)."""
    try:
        text = repr(value)
    except ValueError:  # int too large to print
        return f"an integer of {value.bit_length()} bits"
    if len(text) <= 60:
        return text
    if isinstance(value, int):  # 10**400 cut to 57 digits would read as a smaller number
        return f"{text[:20]}... (an integer of {len(text.lstrip('-'))} digits)"
    return text[:57] + "..."


#: The largest finite float; an int past it has no float to become.
_FLOAT_MAX = int(sys.float_info.max)


def _too_large(value: Any) -> bool:
    """An int no float holds (``10**400``): checked before ``float()``, which would raise
    OverflowError, so the message can say the value is out of range, not "no number"."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > _FLOAT_MAX


#: ``where`` of a value parsed for argparse, which names the option itself.
_WHERE = "value"


def arg_type(parse: Callable[..., Any], name: str, **bounds: Any) -> Callable[[str], Any]:
    """An argparse ``type`` from ``parse(text, where, **bounds)``, a config-style parser
    raising ValueError: argparse itself would say only "invalid int value", or nothing at
    all for ``nan`` or ``-5``. ``name`` names the kind of number (``positive integer``)."""

    def convert(text: str) -> Any:
        try:
            return parse(text, _WHERE, **bounds)
        except ValueError as exc:  # argparse prefixes "argument --option: "
            import argparse

            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{_WHERE}: ")) from None

    convert.__name__ = name
    return convert


def parse_tolerance(value: Any, where: str) -> float:
    """A tolerance as a fraction: 0.1, "10%" and "0.1" all mean 10%."""
    out_of_range = ValueError(
        f"{where}: tolerance {shown(value)} must be >= 0 and <= {MAX_TOLERANCE:g} "
        f"({MAX_TOLERANCE:.0%}): a fraction (0.1) or a percentage ('10%')"
    )
    if _too_large(value):  # before float(), which would overflow
        raise out_of_range
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, str) and value.strip().endswith("%"):
            tol = float(value.strip()[:-1]) / 100.0
        else:
            tol = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"{where}: tolerance {shown(value)} is not a number or a percentage"
        ) from None
    if not 0 <= tol <= MAX_TOLERANCE:  # NaN fails this too
        raise out_of_range
    return tol


def parse_tolerances(value: Any, where: str) -> dict[str, float]:
    """Tolerances keyed by metric name or kind; a bare number applies to every kind.

    Accepts a number, ``"time=20%,memory=2%"`` or a dict. A bare number leaves the
    exact work gate alone (``work=5%`` loosens it by name).
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k.strip():
                raise ValueError(
                    f"{where}: a tolerance key must be a metric name or kind, got {k!r}"
                )
            out[k.strip()] = parse_tolerance(v, f"{where}[{k}]")
        return out
    if isinstance(value, str) and "=" in value:
        out = {}
        for part in value.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"{where}: expected NAME=TOL in {value!r}, got {part!r}")
            k, v = part.split("=", 1)
            if not k.strip():
                raise ValueError(f"{where}: expected NAME=TOL in {value!r}, got {part!r}")
            out[k.strip()] = parse_tolerance(v, f"{where}[{k.strip()}]")
        return out
    tol = parse_tolerance(value, where)
    return {kind: tol for kind in MEASURED_KINDS}


def parse_count(
    value: Any,
    where: str,
    *,
    allow_auto: bool = True,
    minimum: int = 0,
    maximum: int = MAX_ROUNDS,
) -> int | str:
    """A whole count (``"auto"`` too where allowed) from ``minimum`` to ``maximum``.

    True is not 1 here: a bool where a count belongs is a slip.
    """
    if allow_auto and value == "auto":
        return "auto"
    expected = "an integer or 'auto'" if allow_auto else "an integer"
    try:
        if isinstance(value, bool):
            raise TypeError
        n = int(value)
        if isinstance(value, float) and value != n:
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise ValueError(f"{where}: expected {expected}, got {shown(value)}") from None
    if n < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {n}")
    if n > maximum:
        raise ValueError(f"{where}: must be <= {maximum}, got {shown(n)}")
    return n


def parse_float(
    value: Any, where: str, *, minimum: float = 0.0, maximum: float = math.inf
) -> float:
    """A finite number from ``minimum`` to ``maximum``; NaN, infinity and bools are slips.

    An int is range-checked as an int before it becomes a float: ``10**400`` is "must be
    <= 86400" (or, with no bound, too large for a float), not an OverflowError."""
    if _too_large(value):
        if value < minimum:
            raise ValueError(f"{where}: must be >= {minimum}, got {shown(value)}")
        if value > maximum:
            raise ValueError(f"{where}: must be <= {maximum:g}, got {shown(value)}")
        raise ValueError(
            f"{where}: {shown(value)} is too large for a float (at most {sys.float_info.max:g})"
        )
    try:
        if isinstance(value, bool):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: expected a number, got {shown(value)}") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: expected a finite number, got {shown(value)}")
    if x < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {x}")
    if x > maximum:
        raise ValueError(f"{where}: must be <= {maximum:g}, got {shown(value)}")
    return x


def _parse_gate(value: Any, where: str) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{where}: expected True, False or metric names, got {shown(value)}")


def _parse_flag(value: Any, where: str) -> bool | None:
    return None if value is None else _parse_bool(value, where)


def _parse_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected True or False, got {shown(value)}")
    return value


def _optional_float(value: Any, where: str) -> float | None:
    return None if value is None else parse_float(value, where)


def _parse_group(value: Any, where: str) -> str:
    """A group name: a string, or what prints as one (``group=3``)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:  # an int too long to print
        raise ValueError(f"{where}: expected a name, got {shown(value)}") from None


def _max_time(value: Any, where: str) -> float:
    return parse_float(value, where, maximum=MAX_TIME_S)


def _count(minimum: int, allow_auto: bool, maximum: int) -> Callable[[Any, str], int | str]:
    return lambda v, w: parse_count(v, w, allow_auto=allow_auto, minimum=minimum, maximum=maximum)


def _keyword(parse: Callable[[Any, str], Any]) -> dict[str, Any]:
    """Field metadata that makes a ``Policy`` field a marker keyword, with its parser."""
    return {"parse": parse}


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Policy:
    """How one test is measured and gated (marker > call arguments > run options)."""

    warmup: int | str = field(default="auto", metadata=_keyword(_count(0, True, MAX_WARMUP)))
    rounds: int | str = field(default="auto", metadata=_keyword(_count(1, True, MAX_ROUNDS)))
    min_rounds: int = field(default=5, metadata=_keyword(_count(0, False, MAX_ROUNDS)))
    max_rounds: int = field(default=1000, metadata=_keyword(_count(1, False, MAX_ROUNDS)))
    max_time: float = field(default=1.0, metadata=_keyword(_max_time))
    tolerances: dict[str, float] = field(
        default_factory=dict,
        metadata=_keyword(parse_tolerances),
    )
    #: True gates every metric; False none; a tuple gates only those names.
    gate: bool | tuple[str, ...] = field(default=True, metadata=_keyword(_parse_gate))
    items: float | None = field(default=None, metadata=_keyword(_optional_float))
    flops: float | None = field(default=None, metadata=_keyword(_optional_float))
    bytes: float | None = field(default=None, metadata=_keyword(_optional_float))
    group: str = field(default="", metadata=_keyword(_parse_group))
    strict: bool = field(default=False, metadata=_keyword(_parse_flag))
    #: None: on for CPU, off for accelerators.
    drift_correction: bool | None = field(default=None, metadata=_keyword(_parse_flag))
    remeasure: int = field(default=2, metadata=_keyword(_count(0, False, MAX_REMEASURE)))
    #: Take the work signature (a pass of its own, outside the timed rounds).
    work: bool = field(default=True, metadata=_keyword(_parse_bool))
    #: ``--llmperf-gate``: only metrics with these names or kinds decide (None: all).
    #: A run option, not a marker keyword: CI narrows what decides, a test cannot widen it.
    run_gate: tuple[str, ...] | None = None

    def tolerance_for(self, name: str, kind: str) -> float:
        """Per-metric override (its full name or a dotted tail of it), then per-kind, then
        the default for the kind."""
        for key in _keys(name, kind):
            if key in self.tolerances:
                return self.tolerances[key]
        return DEFAULT_TOLERANCES.get(kind, DEFAULT_TOLERANCES["other"])

    def gates(self, name: str, kind: str = "") -> bool:
        """Whether this metric decides the verdict: the marker's ``gate`` (names or kinds),
        within the run's ``--llmperf-gate``."""
        if self.run_gate is not None and not set(_keys(name, kind)) & set(self.run_gate):
            return False
        if isinstance(self.gate, bool):
            return self.gate
        return bool(set(_keys(name, kind)) & set(self.gate))

    def with_keywords(self, kwargs: dict[str, Any], where: str) -> Policy:
        """This policy with validated keyword overrides (marker, call arguments, options).

        ``where`` names the source in an error; an unknown keyword is an error too.
        """
        return self._with_keywords(kwargs, where).checked(where)

    def _with_keywords(self, kwargs: dict[str, Any], where: str) -> Policy:
        unknown = sorted(set(kwargs) - set(MARKER_KEYWORDS))
        if unknown:
            given = ", ".join(f"{k!r} (given {shown(kwargs[k])})" for k in unknown)
            raise ValueError(
                f"{where}: unknown keyword{'s' if len(unknown) > 1 else ''} {given}; "
                f"known: {', '.join(sorted(MARKER_KEYWORDS))}"
            )
        policy = self
        for key, value in kwargs.items():
            policy = policy.with_value(key, value, f"{where}({key}=...)")
        return policy

    def checked(self, where: str) -> Policy:
        """This policy, if its keywords agree with each other (checked once all are applied:
        a module's marker and a function's may each set one side)."""
        if self.min_rounds > self.max_rounds:
            raise ValueError(
                f"{where}: min_rounds ({self.min_rounds}) must be <= max_rounds "
                f"({self.max_rounds}); the default min_rounds is {Policy.min_rounds}"
            )
        return self

    def with_value(self, key: str, value: Any, where: str) -> Policy:
        """This policy with one keyword set, parsed by its field; tolerances merge."""
        name = _ALIASES.get(key, key)
        parsed = _FIELDS[name].metadata["parse"](value, where)
        if name == "tolerances":  # a marker adds to the run's tolerances, not replaces them
            parsed = {**self.tolerances, **parsed}
        return replace(self, **{name: parsed})

    @classmethod
    def from_markers(cls, markers: Iterable[Any], *, defaults: Policy, where: str) -> Policy:
        """The policy of a test: ``defaults`` (the run's options) with its ``llmperf`` markers
        applied from the farthest (module, class) to the closest (the function)."""
        policy = defaults
        for marker in markers:
            if marker.args:
                raise ValueError(
                    f"{where}: @pytest.mark.llmperf takes keywords only, got {marker.args!r}"
                )
            policy = policy._with_keywords(marker.kwargs, f"{where}: @pytest.mark.llmperf")
        return policy.checked(f"{where}: @pytest.mark.llmperf")


def _keys(name: str, kind: str) -> list[str]:
    """What a tolerance or gate may name a metric by: ``decode.work.ops``, ``work.ops``,
    ``ops``, then its kind."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))] + ([kind] if kind else [])


#: Metrics the plugin takes only on some devices or stacks (the allocator's reserved peak on
#: accelerators, RSS on the CPU, NVML energy, MFU/MBU where a peak is known, compile and
#: kernel counts): naming one in a marker is no typo on a machine that lacks it.
OPTIONAL_METRICS = (
    "peak_memory_reserved",
    "peak_rss",
    "energy",
    "mfu",
    "mbu",
    "work.graphs",
    "work.graph_breaks",
    "work.recompiles",
    "work.kernels",
)


#: Every metric the plugin itself takes, name -> kind, on any device: with the kinds, what
#: a run-level name (``--llmperf-gate``, ``--llmperf-tolerance`` keys) may name. A metric
#: may carry a measurement's prefix (``decode.throughput``, ``ab.speedup``,
#: ``ab.reference.time``). Kept true by tests/unit/test_run_options.py, which checks every
#: metric that real runs yield (and the work signature's totals) against it.
PLUGIN_METRICS: dict[str, str] = {
    # a measured call (measure/sequence.py)
    "time": "time",
    "throughput": "throughput",
    "peak_memory": "memory",
    "peak_rss": "memory",
    "peak_memory_reserved": "memory",
    "energy": "energy",
    "mfu": "efficiency",
    "mbu": "efficiency",
    # the work signature (measure/work.py, WorkSignature.totals)
    "work.ops": "work",
    "work.flops": "work",
    "work.bytes": "work",
    "work.syncs": "work",
    "work.copies": "work",
    "work.tensor_peak": "work",
    "work.graphs": "work",
    "work.graph_breaks": "work",
    "work.recompiles": "work",
    "work.kernels": "work",
    # a generation (measure/generation.py)
    "ttft": "time",
    "prefill_throughput": "throughput",
    "tpot": "time",
    "decode_throughput": "throughput",
    "itl_p50": "time",
    "itl_p90": "time",
    "itl_p99": "tail",
    "itl_tail": "tail",
    "itl_max": "tail",
    "e2e_latency": "time",
    "output_tokens": "other",
    # an A/B (llmperf.ab: NAME.speedup, and for generations the paired token ratios)
    "speedup": "ratio",
    "ttft_speedup": "ratio",
    "itl_speedup": "ratio",
    "itl_p99_speedup": "tail",
}


def marker_names(markers: Iterable[Any]) -> list[str]:
    """The metric names a test's ``llmperf`` markers give: ``gate`` names and ``tolerance``
    keys (a bare tolerance names the kinds). The run options' names are not among them:
    they apply to every test, whatever it measures."""
    names: list[str] = []
    for marker in markers:
        for key, value in marker.kwargs.items():
            if key == "gate":
                gate = _parse_gate(value, key)
                found = [] if isinstance(gate, bool) else list(gate)
            elif _ALIASES.get(key, key) == "tolerances":
                found = list(parse_tolerances(value, key))
            else:
                continue
            names += [n for n in found if n not in names]
    return names


def unknown_names(names: Iterable[str], metrics: Mapping[str, str]) -> list[str]:
    """Those of ``names`` that match none of ``metrics`` (name -> kind) by full name, dotted
    tail or kind, and are neither a known kind nor an optional metric (``OPTIONAL_METRICS``,
    bare or behind a prefix this test's metrics use)."""
    known = set(DEFAULT_TOLERANCES)
    prefixes = {""}
    for name, kind in metrics.items():
        known.update(_keys(name, kind))
        parts = name.split(".")
        prefixes.update(".".join(parts[:i]) + "." for i in range(1, len(parts)))
    for optional in OPTIONAL_METRICS:
        known.update(_keys(optional, ""))
        known.update(prefix + optional for prefix in prefixes)
    return [n for n in names if n not in known]


def unmatched_marker_names(nodeid: str, markers: Iterable[Any], metrics: Mapping[str, str]) -> str:
    """The failure text of a test whose markers name metrics (``gate``, ``tolerance`` keys)
    that match none of its ``metrics`` (name -> kind); "" when all match. Asked once the
    test has measured: only then are its metrics known."""
    names = marker_names(markers)
    unknown = unknown_names(names, metrics) if names else []
    if not unknown:
        return ""
    return (
        f"llmperf: {nodeid}: @pytest.mark.llmperf names {', '.join(map(repr, unknown))} "
        f"in gate= or tolerance=, which matches none of this test's metrics: "
        f"{', '.join(sorted(metrics)) or '(none)'}. A metric may be named in full, by a "
        f"dotted tail ('time' for 'decode.time') or by a kind: {', '.join(DEFAULT_TOLERANCES)}"
    )


def unknown_run_names(names: Iterable[str]) -> list[str]:
    """Those of ``names`` that no test's metric could match: neither a kind nor a metric of
    ``PLUGIN_METRICS`` in full, by a dotted tail (``ops``) or behind a measurement's prefix
    (``decode.work.ops``). Run-level names apply to every test, so whether a test has the
    metric is not asked here (the marker's names are checked per test)."""
    tails = {key for metric in PLUGIN_METRICS for key in _keys(metric, "")}
    unknown = []
    for name in names:
        parts = name.split(".")
        known = name in DEFAULT_TOLERANCES or name in tails
        if not known and all(parts):
            known = any(".".join(parts[i:]) in PLUGIN_METRICS for i in range(1, len(parts)))
        if not known:
            unknown.append(name)
    return unknown


def check_run_names(names: Iterable[str], where: str) -> tuple[str, ...]:
    """``names`` (a gate's, or a tolerance's keys) if each can name a metric; otherwise a
    ValueError naming the option, the bad names and the valid ones."""
    names = tuple(names)
    bad = unknown_run_names(names)
    if not bad:
        return names
    plural = "s" if len(bad) > 1 else ""
    raise ValueError(
        f"{where}: unknown metric name{plural} or kind{plural} "
        f"{', '.join(map(repr, bad))}. Valid: a kind ({', '.join(DEFAULT_TOLERANCES)}) or "
        f"a metric the plugin takes ({', '.join(PLUGIN_METRICS)}), in full, by a dotted "
        "tail (ops for work.ops) or behind a measurement's name (decode.throughput, "
        "ab.speedup). A metric a test records itself (llmperf.record('weights', ...)) is "
        "named at run level by its kind, or per test with @pytest.mark.llmperf(gate=..., "
        "tolerance=...)"
    )


_FIELDS = {f.name: f for f in fields(Policy) if "parse" in f.metadata}
#: Keyword spellings that name another field.
_ALIASES = {"tolerance": "tolerances"}
#: The marker's keywords: every field of Policy, plus the aliases.
MARKER_KEYWORDS: tuple[str, ...] = (*_FIELDS, *_ALIASES)


def marker_help() -> str:
    """The marker's line in ``pytest --markers``, from the fields themselves."""
    keywords = ", ".join("tolerance" if name == "tolerances" else name for name in _FIELDS)
    return f"llmperf(**policy): a performance test; keywords {keywords}"


# --------------------------------------------------------------------------- run options


@dataclass(frozen=True)
class Option:
    """One command-line option and its ``llmperf_*`` ini twin."""

    suffix: str  # "" for --llmperf itself
    ini_type: str
    help: str
    argparse: dict[str, Any] = field(default_factory=dict)

    @property
    def flag(self) -> str:
        return "--llmperf" + (f"-{self.suffix}" if self.suffix else "")

    @property
    def dest(self) -> str:
        return "llmperf" + ("_" + self.suffix.replace("-", "_") if self.suffix else "")


_FLAG = {"action": "store_true"}
OPTIONS: tuple[Option, ...] = (
    Option(
        "",
        "bool",
        "measure and gate performance tests (without it each runs its body once, unmeasured)",
        _FLAG,
    ),
    Option(
        "skip",
        "bool",
        "without --llmperf, skip performance tests instead of running each once, "
        "unmeasured (ignored with --llmperf)",
        _FLAG,
    ),
    Option("update-baselines", "bool", "measure and write results into the baseline files", _FLAG),
    Option(
        "baselines",
        "string",
        "directory of baseline files (default: baselines/ under the rootdir)",
        {"metavar": "DIR"},
    ),
    Option(
        "tier",
        "string",
        "size of the shipped scenarios: smoke, standard, full "
        "(default: smoke on CPU, standard on an accelerator)",
        {"metavar": "TIER"},
    ),
    Option("report", "string", "write a report (.md, .json or .html)", {"metavar": "PATH"}),
    Option(
        "benchmark-json",
        "string",
        "write results in pytest-benchmark's JSON schema",
        {"metavar": "PATH"},
    ),
    Option(
        "bmf", "string", "write results in Bencher's metric format (BMF JSON)", {"metavar": "PATH"}
    ),
    Option("strict", "bool", "fail tests with no baseline or an inconclusive verdict", _FLAG),
    Option(
        "warmup",
        "string",
        "default warm-up: a count or 'auto' (until timings settle)",
        {"metavar": "N|auto"},
    ),
    Option(
        "rounds",
        "string",
        "default measured rounds: a count or 'auto' (adaptive)",
        {"metavar": "N|auto"},
    ),
    Option(
        "max-time",
        "string",
        "time budget in seconds for adaptive rounds per test",
        {"metavar": "S"},
    ),
    Option(
        "tolerance",
        "string",
        "default tolerances, e.g. 10%% or time=20%%,memory=2%%",
        {"metavar": "SPEC"},
    ),
    Option(
        "pool",
        "string",
        "on update, pool this many runs per baseline entry (default 1)",
        {"metavar": "N"},
    ),
    Option(
        "profile-on-failure",
        "bool",
        "re-run a regressed test once under the profiler and name the trace in the failure",
        _FLAG,
    ),
    Option(
        "device",
        "string",
        "measure on this torch device (default: the accelerator, else cpu)",
        {"metavar": "DEV"},
    ),
    Option(
        "machine",
        "string",
        "name the baseline file for time, memory and energy (a runner pool, say) instead "
        "of the CPU or GPU model; the work baseline is shared by the device type anyway",
        {"metavar": "NAME"},
    ),
    Option(
        "project",
        "string",
        "the project its baseline files belong to (default: the name in the rootdir's "
        "pyproject.toml or setup.cfg, else the rootdir's name); a file another project "
        "wrote is refused, never read or written over",
        {"metavar": "NAME"},
    ),
    Option(
        "gate",
        "string",
        "only these metric names or kinds decide verdicts, e.g. 'work' on a shared CPU "
        "runner; the others are reported (default: all gated metrics)",
        {"metavar": "NAMES"},
    ),
    Option(
        "compare",
        "string",
        "compare with this git ref (branch, tag, commit): run every performance test in "
        "both trees, interleaved, and fail a test slower than the ref's; no baseline is "
        "read or written",
        {"metavar": "REF"},
    ),
    Option(
        "threads",
        "string",
        f"torch intra-op threads when measuring on the CPU: a count, or 'auto' for torch's "
        f"own choice (default: {DEFAULT_CPU_THREADS}, which keeps timings stable and the "
        "drift correction usable on shared runners)",
        {"metavar": "N|auto"},
    ),
)
_OPTION = {o.suffix: o for o in OPTIONS}
REPORT_SUFFIXES = (".md", ".json", ".html")
#: Run options that set the default policy, by option suffix -> Policy keyword.
_POLICY_OPTIONS = {
    "warmup": "warmup",
    "rounds": "rounds",
    "max-time": "max_time",
    "tolerance": "tolerance",
}


#: A machine name becomes a file name: nothing that could leave the baselines directory.
_MACHINE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


#: Longest project name a file or ``--llmperf-project`` may give.
MAX_PROJECT = 200
#: A project name: printable, not blank (it is shown in messages and stored in files).
_PROJECT = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_PROJECT}}}")


def _parse_names(value: Any, where: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in str(value).split(",") if n.strip())
    if not names:
        raise ValueError(f"{where}: expected metric names or kinds, e.g. 'work', got {value!r}")
    return names


#: What pytest reads as an ini boolean (``_pytest.config._strtobool``), for the error message.
INI_BOOLEANS = "true/false, yes/no, on/off, 1/0, y/n, t/f (any case)"

#: Device types a run can measure on, for ``--llmperf-device`` (checked without torch; what
#: this machine has is checked when the device is first needed: measure.device.check_device).
DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "mtia", "hpu", "npu", "maia", "privateuseone")
_DEVICE = re.compile(r"([a-z][a-z0-9_]*)(?::(\d{1,4}))?")


def parse_device(value: Any, where: str) -> str:
    """A torch device string, ``TYPE`` or ``TYPE:INDEX``, of a type a run can measure on."""
    text = str(value).strip()
    match = _DEVICE.fullmatch(text)
    if match is None or match.group(1) not in DEVICE_TYPES:
        raise ValueError(
            f"{where}: {shown(value)} is not a device to measure on; expected one of "
            f"{', '.join(DEVICE_TYPES)}, optionally with an index (cuda:0)"
        )
    return text


def parse_threads(value: Any, where: str, *, measuring: bool) -> int | None:
    """``--llmperf-threads``: a count, or ``auto`` (None: torch's own choice, left alone).

    Unset, a run that measures gets ``DEFAULT_CPU_THREADS``; one that does not (a plain
    ``pytest``) leaves torch alone.
    """
    if value is None:
        return DEFAULT_CPU_THREADS if measuring else None
    if isinstance(value, str):
        value = value.strip()
    n = parse_count(value, where, allow_auto=True, minimum=1, maximum=MAX_THREADS)
    return None if n == "auto" else int(n)


def _lookup(config: Any, suffix: str) -> tuple[Any, str]:
    """An option's value and how to name it in an error: the command line first, then the ini."""
    option = _OPTION[suffix]
    value = config.getoption(option.dest)
    if value not in (None, False):
        return value, option.flag
    where = f"ini option {option.dest}"
    try:
        ini = config.getini(option.dest)
    except (pytest.UsageError, ValueError, TypeError) as exc:
        # pytest's own message ("invalid truth value 'banana'") does not name the option.
        accepted = f"; expected {INI_BOOLEANS}" if option.ini_type == "bool" else ""
        raise ValueError(f"{where}: {exc}{accepted}") from None
    return (ini if ini not in ("", None) else None), where


@dataclass(frozen=True)
class RunOptions:
    """The session's options, from the command line or their ``llmperf_*`` ini twins."""

    enabled: bool = False
    #: Without ``--llmperf``: skip performance tests (True) or run each body once (False).
    skip: bool = False
    update: bool = False
    baselines_dir: str = "baselines"
    tier: str = "auto"
    report: str | None = None
    benchmark_json: str | None = None
    bmf: str | None = None
    strict: bool = False
    profile_on_failure: bool = False
    pool: int = 1
    #: torch's intra-op threads while measuring on the CPU; None: torch's count is left
    #: alone (``--llmperf-threads=auto``, or a run that does not measure).
    threads: int | None = None
    device: str | None = None
    #: How to name the device option in an error: the flag or its ini twin.
    device_from: str = "--llmperf-device"
    #: The machine file's key; None: the device's own (``measure.device.device_key``).
    machine: str | None = None
    #: ``--llmperf-compare``: the git ref to compare with, interleaved (None: baselines).
    compare: str | None = None
    #: ``--llmperf-project``: the project baseline files belong to (None: found in the
    #: rootdir, ``baselines.find_project``), and how to name the option in a message.
    project: str | None = None
    project_from: str = "--llmperf-project"
    policy: Policy = field(default_factory=Policy)

    @classmethod
    def from_pytest_config(cls, config: Any) -> RunOptions:
        """The options of this pytest run; a bad value raises ValueError naming the option."""

        def value(suffix: str) -> Any:
            return _lookup(config, suffix)[0]

        def count(suffix: str, maximum: int) -> int | None:
            raw, name = _lookup(config, suffix)
            if not raw:
                return None
            return int(parse_count(raw, name, allow_auto=False, minimum=1, maximum=maximum))

        update = bool(value("update-baselines"))
        compare, compare_from = _lookup(config, "compare")
        enabled = bool(value("")) or update or compare is not None
        tier, name = _lookup(config, "tier")
        if tier is not None and tier not in (*TIERS, "auto"):
            raise ValueError(f"{name}: unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
        report, name = _lookup(config, "report")
        if report and Path(report).suffix not in REPORT_SUFFIXES:
            raise ValueError(f"{name}: {report!r} must end in .md, .json or .html")
        policy = Policy()
        for suffix, keyword in _POLICY_OPTIONS.items():
            raw, name = _lookup(config, suffix)
            if raw is not None:
                policy = policy.with_value(keyword, raw, name)
                if keyword == "tolerance":
                    check_run_names(policy.tolerances, name)
        gate, name = _lookup(config, "gate")
        if gate is not None:
            policy = replace(policy, run_gate=check_run_names(_parse_names(gate, name), name))
        machine, name = _lookup(config, "machine")
        if machine is not None and not _MACHINE.fullmatch(machine):
            raise ValueError(
                f"{name}: {machine!r} is not a usable baseline name "
                "(letters, digits, '.', '_' and '-', not starting with '.')"
            )
        name = compare_from
        if compare is not None and update:
            raise ValueError(
                f"{name} compares with a git ref and writes no baseline: "
                "drop --llmperf-update-baselines or the comparison"
            )
        if compare is not None and (not str(compare).strip() or str(compare).startswith("-")):
            raise ValueError(f"{name}: {compare!r} is not a git ref")
        project, project_from = _lookup(config, "project")
        if project is None:
            project_from = "--llmperf-project"
        elif not _PROJECT.fullmatch(str(project)) or not str(project).strip():
            raise ValueError(
                f"{project_from}: {shown(project)} is not a project name (1 to 200 "
                "printable characters, not all blank)"
            )
        benchmark_json, name = _lookup(config, "benchmark-json")
        why = benchmark_json and missing("pytest_benchmark", name)
        if why:
            raise ValueError(why)
        device, device_from = _lookup(config, "device")
        if device is None:
            device_from = "--llmperf-device"
        else:
            device = parse_device(device, device_from)
        return cls(
            enabled=enabled,
            skip=bool(value("skip")),
            compare=compare,
            update=update,
            baselines_dir=value("baselines") or "baselines",
            tier=tier or "auto",
            report=report,
            benchmark_json=benchmark_json,
            bmf=value("bmf"),
            strict=bool(value("strict")),
            profile_on_failure=bool(value("profile-on-failure")),
            pool=count("pool", MAX_POOL) or 1,
            threads=parse_threads(*_lookup(config, "threads"), measuring=enabled),
            device=device,
            device_from=device_from,
            machine=machine,
            project=project,
            project_from=project_from,
            policy=policy,
        )


def without_options(
    args: Iterable[str], with_value: Iterable[str] = (), flags: Iterable[str] = ()
) -> list[str]:
    """Command-line ``args`` without the options named: those in ``with_value`` together
    with their value (``--opt=V`` or ``--opt V``), those in ``flags`` alone."""
    with_value, flags = set(with_value), set(flags)
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            continue
        if name in with_value:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
