"""The run options: each command-line flag with its ``llmperf_*`` ini twin, and reading them.

``OPTIONS`` is the one list the plugin registers; ``flag`` spells an option for a
message, and ``read_option`` reads one, naming where a bad value came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from .limits import DEFAULT_CPU_THREADS


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
        "history",
        "string",
        "append this run (every test's metrics, verdict, commit, machine and versions) to "
        "the history in DIR: one new file per run, so runners append at once and DIR "
        "merges as a union; read it with `python -m pytest_llmperf history DIR`",
        {"metavar": "DIR"},
    ),
    Option(
        "history-gate",
        "bool",
        "with --llmperf-history, also fail a test whose gated metric stepped or crept "
        "past its tolerance over its recent runs in the history, until the change is "
        "acknowledged (`python -m pytest_llmperf history ack`)",
        _FLAG,
    ),
    Option(
        "history-window",
        "string",
        "how many recent runs of the history the history gate looks at (default 30)",
        {"metavar": "N"},
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


def flag(suffix: str) -> str:
    """The command-line spelling of a run option (``flag("report")`` is ``--llmperf-report``):
    every message and argument list names options through here, so a rename is one edit."""
    return _OPTION[suffix].flag


#: What pytest reads as an ini boolean (``_pytest.config._strtobool``), for the error message.
INI_BOOLEANS = "true/false, yes/no, on/off, 1/0, y/n, t/f (any case)"


def read_option(config: Any, suffix: str) -> tuple[Any, str]:
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
