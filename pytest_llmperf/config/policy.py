"""The per-test policy (``Policy``) and the ``llmperf`` marker that sets it.

The marker's keywords are the fields of ``Policy`` (each field carries its parser), so
the keyword list, its validation and its help text cannot disagree. Frozen so a policy
cannot drift while a test runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..metrics import Kind
from .limits import MAX_REMEASURE, MAX_ROUNDS, MAX_TIME_S, MAX_WARMUP
from .names import metric_keys, unknown_names
from .tolerances import DEFAULT_TOLERANCES, parse_tolerances
from .values import parse_count, parse_float, shown

# --------------------------------------------------------------------------- keyword parsers


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
    #: Zero a buffer larger than the L2 before each round, untimed (triton's ``do_bench``).
    flush_l2: bool = field(default=False, metadata=_keyword(_parse_bool))
    #: ``--llmperf-gate``: only metrics with these names or kinds decide (None: all).
    #: A run option, not a marker keyword: CI narrows what decides, a test cannot widen it.
    run_gate: tuple[str, ...] | None = None

    def tolerance_for(self, name: str, kind: str) -> float:
        """Per-metric override (its full name or a dotted tail of it), then per-kind, then
        the default for the kind."""
        for key in metric_keys(name, kind):
            if key in self.tolerances:
                return self.tolerances[key]
        return DEFAULT_TOLERANCES.get(kind, DEFAULT_TOLERANCES[Kind.OTHER])

    def gates(self, name: str, kind: str = "") -> bool:
        """Whether this metric decides the verdict: the marker's ``gate`` (names or kinds),
        within the run's ``--llmperf-gate``."""
        if self.run_gate is not None and not set(metric_keys(name, kind)) & set(self.run_gate):
            return False
        if isinstance(self.gate, bool):
            return self.gate
        return bool(set(metric_keys(name, kind)) & set(self.gate))

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


_FIELDS = {f.name: f for f in fields(Policy) if "parse" in f.metadata}
#: Keyword spellings that name another field.
_ALIASES = {"tolerance": "tolerances"}
#: The marker's keywords: every field of Policy, plus the aliases.
MARKER_KEYWORDS: tuple[str, ...] = (*_FIELDS, *_ALIASES)


def marker_help() -> str:
    """The marker's line in ``pytest --markers``, from the fields themselves."""
    keywords = ", ".join("tolerance" if name == "tolerances" else name for name in _FIELDS)
    return f"llmperf(**policy): a performance test; keywords {keywords}"


# --------------------------------------------------------------------------- marker names


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
