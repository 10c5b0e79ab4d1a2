"""``RunOptions``: the session's options, read and checked once when the run starts.

Each option is read by a step of its own (``_tier``, ``_run_policy``, ...) in a fixed
order, so when several are bad the first one named is always the same. A bad value
raises ``ValueError`` naming the flag or its ini twin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..extras import missing
from .limits import MAX_POOL, MAX_PROJECT
from .names import check_run_names
from .options import flag, read_option
from .policy import Policy
from .values import parse_count, parse_device, parse_threads, shown

TIERS = ("smoke", "standard", "full")
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
#: A project name: printable, not blank (it is shown in messages and stored in files).
_PROJECT = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_PROJECT}}}")


#: The recent runs the history gate looks at (``--llmperf-history-window``).
DEFAULT_HISTORY_WINDOW = 30


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
    device_from: str = flag("device")
    #: The machine file's key; None: the device's own (``measure.device.device_key``).
    machine: str | None = None
    #: ``--llmperf-compare``: the git ref to compare with, interleaved (None: baselines).
    compare: str | None = None
    #: ``--llmperf-project``: the project baseline files belong to (None: found in the
    #: rootdir, ``baselines.find_project``), and how to name the option in a message.
    project: str | None = None
    project_from: str = flag("project")
    #: ``--llmperf-history``: the history directory this run appends to (None: none).
    history: str | None = None
    #: ``--llmperf-history-gate`` and the runs it looks at (``--llmperf-history-window``).
    history_gate: bool = False
    history_window: int = DEFAULT_HISTORY_WINDOW
    policy: Policy = field(default_factory=Policy)

    @classmethod
    def from_pytest_config(cls, config: Any) -> RunOptions:
        """The options of this pytest run; a bad value raises ValueError naming the option."""

        def value(suffix: str) -> Any:
            return read_option(config, suffix)[0]

        update = bool(value("update-baselines"))
        compare, compare_from = read_option(config, "compare")
        enabled = bool(value("")) or update or compare is not None
        tier = _tier(config)
        report = _report(config)
        policy = _run_policy(config)
        machine = _machine(config)
        _check_compare(compare, compare_from, update)
        project, project_from = _project(config)
        benchmark_json = _benchmark_json(config)
        device, device_from = _device(config)
        history, history_gate, history_window = _history(config)
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
            pool=_pool(config),
            threads=parse_threads(*read_option(config, "threads"), measuring=enabled),
            device=device,
            device_from=device_from,
            machine=machine,
            project=project,
            project_from=project_from,
            history=history,
            history_gate=history_gate,
            history_window=history_window,
            policy=policy,
        )


def _tier(config: Any) -> str | None:
    """``--llmperf-tier``: one of ``TIERS`` or ``auto`` (None: not given)."""
    tier, name = read_option(config, "tier")
    if tier is not None and tier not in (*TIERS, "auto"):
        raise ValueError(f"{name}: unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    return tier


def _report(config: Any) -> str | None:
    """``--llmperf-report``: a path whose suffix says the format."""
    report, name = read_option(config, "report")
    if report and Path(report).suffix not in REPORT_SUFFIXES:
        raise ValueError(f"{name}: {report!r} must end in .md, .json or .html")
    return report


def _run_policy(config: Any) -> Policy:
    """The default policy of every test: the options that set a marker keyword, and the
    run's ``--llmperf-gate`` (whose names, like the tolerance's keys, must name a metric)."""
    policy = Policy()
    for suffix, keyword in _POLICY_OPTIONS.items():
        raw, name = read_option(config, suffix)
        if raw is not None:
            policy = policy.with_value(keyword, raw, name)
            if keyword == "tolerance":
                check_run_names(policy.tolerances, name)
    gate, name = read_option(config, "gate")
    if gate is not None:
        policy = replace(policy, run_gate=check_run_names(_parse_names(gate, name), name))
    return policy


def _parse_names(value: Any, where: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in str(value).split(",") if n.strip())
    if not names:
        raise ValueError(f"{where}: expected metric names or kinds, e.g. 'work', got {value!r}")
    return names


def _machine(config: Any) -> str | None:
    """``--llmperf-machine``: a name that is safe as a file name."""
    machine, name = read_option(config, "machine")
    if machine is not None and not _MACHINE.fullmatch(machine):
        raise ValueError(
            f"{name}: {machine!r} is not a usable baseline name "
            "(letters, digits, '.', '_' and '-', not starting with '.')"
        )
    return machine


def _check_compare(compare: Any, name: str, update: bool) -> None:
    """``--llmperf-compare``: a git ref, and no baseline update alongside it."""
    if compare is not None and update:
        raise ValueError(
            f"{name} compares with a git ref and writes no baseline: "
            f"drop {flag('update-baselines')} or the comparison"
        )
    if compare is not None and (not str(compare).strip() or str(compare).startswith("-")):
        raise ValueError(f"{name}: {compare!r} is not a git ref")


def _project(config: Any) -> tuple[str | None, str]:
    """``--llmperf-project`` and how to name it in a message (the flag when not given)."""
    project, project_from = read_option(config, "project")
    if project is None:
        project_from = flag("project")
    elif not _PROJECT.fullmatch(str(project)) or not str(project).strip():
        raise ValueError(
            f"{project_from}: {shown(project)} is not a project name (1 to 200 "
            "printable characters, not all blank)"
        )
    return project, project_from


def _benchmark_json(config: Any) -> str | None:
    """``--llmperf-benchmark-json``: refused unless pytest-benchmark is installed."""
    benchmark_json, name = read_option(config, "benchmark-json")
    why = benchmark_json and missing("pytest_benchmark", name)
    if why:
        raise ValueError(why)
    return benchmark_json


def _device(config: Any) -> tuple[str | None, str]:
    """``--llmperf-device`` (checked here without torch) and how to name it in a message."""
    device, device_from = read_option(config, "device")
    if device is None:
        return None, flag("device")
    return parse_device(device, device_from), device_from


def _history(config: Any) -> tuple[str | None, bool, int]:
    """``--llmperf-history``, its gate and window; the gate without a history is refused."""
    history, name = read_option(config, "history")
    gate, gate_name = read_option(config, "history-gate")
    raw, window_name = read_option(config, "history-window")
    if gate and not history:
        raise ValueError(f"{gate_name} judges against a history: give {flag('history')}=DIR")
    why = gate and missing("ruptures", gate_name)
    if why:
        raise ValueError(why)
    if history is not None and not str(history).strip():
        raise ValueError(f"{name}: expected a directory, got {history!r}")
    window = DEFAULT_HISTORY_WINDOW
    if raw:
        window = int(parse_count(raw, window_name, allow_auto=False, minimum=3, maximum=100_000))
    return history, bool(gate), window


def _pool(config: Any) -> int:
    """``--llmperf-pool``: runs pooled per baseline entry (1 when not given)."""
    raw, name = read_option(config, "pool")
    if not raw:
        return 1
    return int(parse_count(raw, name, allow_auto=False, minimum=1, maximum=MAX_POOL))
