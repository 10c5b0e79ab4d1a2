"""Run options (CLI and ini) and per-test policies validated from the marker.

Frozen dataclasses so a policy cannot drift while a test runs; every bad value
raises ``ValueError`` with the option or keyword named, which the plugin turns
into a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

TIERS = ("smoke", "standard", "full")

#: Relative tolerance per metric kind: what a user would keep as a default gate.
#: Memory is near-deterministic, so it is tight; energy reads a coarse counter.
DEFAULT_TOLERANCES: dict[str, float] = {
    "time": 0.10,
    "throughput": 0.10,
    "memory": 0.05,
    "energy": 0.15,
    # An interleaved A/B ratio cancels machine drift, so it can gate tighter.
    "ratio": 0.05,
    "efficiency": 0.10,
    "other": 0.10,
}

#: Memory changes below this many bytes are never a regression (allocator slack).
MEMORY_ABS_SLACK = 4 * 2**20


def parse_tolerance(value: Any, where: str) -> float:
    """A tolerance as a fraction: 0.1, "10%" and "0.1" all mean 10%."""
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            tol = float(value.strip()[:-1]) / 100.0
        else:
            tol = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: tolerance {value!r} is not a number or a percentage") from None
    if not 0 <= tol < 100:
        raise ValueError(f"{where}: tolerance {value!r} must be >= 0")
    return tol


def parse_tolerances(value: Any, where: str) -> dict[str, float]:
    """Tolerances keyed by metric name or kind; a bare number applies to every kind.

    Accepts a number, ``"time=20%,memory=2%"`` or a dict.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): parse_tolerance(v, f"{where}[{k}]") for k, v in value.items()}
    if isinstance(value, str) and "=" in value:
        out = {}
        for part in value.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"{where}: expected NAME=TOL in {value!r}, got {part!r}")
            k, v = part.split("=", 1)
            out[k.strip()] = parse_tolerance(v, f"{where}[{k.strip()}]")
        return out
    tol = parse_tolerance(value, where)
    return {kind: tol for kind in DEFAULT_TOLERANCES}


def parse_count(value: Any, where: str, *, allow_auto: bool = True, minimum: int = 0) -> int | str:
    if allow_auto and value == "auto":
        return "auto"
    try:
        n = int(value)
        if isinstance(value, float) and value != n:
            raise ValueError
    except (TypeError, ValueError):
        expected = "an integer or 'auto'" if allow_auto else "an integer"
        raise ValueError(f"{where}: expected {expected}, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {n}")
    return n


def parse_float(value: Any, where: str, *, minimum: float = 0.0) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if x < minimum:
        raise ValueError(f"{where}: must be >= {minimum}, got {x}")
    return x


@dataclass(frozen=True)
class Policy:
    """How one test is measured and gated (marker > call arguments > run options)."""

    warmup: int | str = "auto"
    rounds: int | str = "auto"
    min_rounds: int = 5
    max_rounds: int = 1000
    max_time: float = 1.0
    tolerances: dict[str, float] = field(default_factory=dict)
    #: True gates every metric; False none; a tuple gates only those names.
    gate: bool | tuple[str, ...] = True
    items: float | None = None
    flops: float | None = None
    bytes: float | None = None
    group: str = ""
    strict: bool = False
    drift_correction: bool | None = None  # None: on for CPU, off for accelerators
    remeasure: int = 2

    def tolerance_for(self, name: str, kind: str) -> float:
        """Per-metric override, then per-kind, then the default for the kind."""
        base = name.rsplit(".", 1)[-1]
        for key in (name, base, kind):
            if key in self.tolerances:
                return self.tolerances[key]
        return DEFAULT_TOLERANCES.get(kind, DEFAULT_TOLERANCES["other"])

    def gates(self, name: str) -> bool:
        if isinstance(self.gate, bool):
            return self.gate
        base = name.rsplit(".", 1)[-1]
        return name in self.gate or base in self.gate

    def with_marker(self, kwargs: dict[str, Any], where: str) -> Policy:
        """Apply marker keywords; unknown ones are an error naming the test."""
        unknown = sorted(set(kwargs) - MARKER_KEYWORDS)
        if unknown:
            raise ValueError(
                f"{where}: @pytest.mark.llmperf got unknown keyword(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(MARKER_KEYWORDS))}"
            )
        return replace(self, **convert_keywords(kwargs, self, f"{where}: @pytest.mark.llmperf"))


def convert_keywords(kwargs: dict[str, Any], base: Policy, where: str) -> dict[str, Any]:
    """Policy fields from marker-style keywords (marker, call arguments or options),
    validated; ``where`` names the source in an error."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        w = f"{where}({key}=...)"
        if key in ("warmup", "rounds"):
            out[key] = parse_count(value, w, minimum=0 if key == "warmup" else 1)
        elif key in ("min_rounds", "max_rounds", "remeasure"):
            out[key] = parse_count(value, w, allow_auto=False, minimum=0)
        elif key == "max_time":
            out[key] = parse_float(value, w)
        elif key in ("tolerance", "tolerances"):
            out["tolerances"] = {**base.tolerances, **parse_tolerances(value, w)}
        elif key == "gate":
            if isinstance(value, bool):
                out[key] = value
            elif isinstance(value, str):
                out[key] = (value,)
            elif isinstance(value, (list, tuple, set)) and all(isinstance(v, str) for v in value):
                out[key] = tuple(value)
            else:
                raise ValueError(f"{w}: expected True, False or metric names, got {value!r}")
        elif key in ("items", "flops", "bytes"):
            out[key] = None if value is None else parse_float(value, w)
        elif key == "group":
            out[key] = str(value)
        elif key in ("strict", "drift_correction"):
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{w}: expected True or False, got {value!r}")
            out[key] = value
    return out


MARKER_KEYWORDS = frozenset(
    {
        "warmup",
        "rounds",
        "min_rounds",
        "max_rounds",
        "max_time",
        "tolerance",
        "tolerances",
        "gate",
        "items",
        "flops",
        "bytes",
        "group",
        "strict",
        "drift_correction",
        "remeasure",
    }
)


@dataclass(frozen=True)
class RunOptions:
    """The session's options, from the command line or their ``llmperf_*`` ini twins."""

    enabled: bool = False
    update: bool = False
    baselines_dir: str = "baselines"
    tier: str = "auto"
    report: str | None = None
    benchmark_json: str | None = None
    bmf: str | None = None
    strict: bool = False
    profile_on_failure: bool = False
    pool: int = 1
    threads: int | None = None
    policy: Policy = field(default_factory=Policy)
