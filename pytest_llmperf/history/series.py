"""A run as a history record, and the records as series: one per test, metric and place.

A timed metric's series is kept per machine key (``--llmperf-machine`` or the device's
model) and tier: an H100's times never meet a CPU's. A work metric's is kept per dispatch
context (``measure.dispatch.context_id``) and tier: counts are the same on every machine
of one context, and another context's counts may differ without any change of code.

No torch import here.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..baselines.entries import summarize
from ..judge.verdict import tolerance_of
from ..measure.dispatch import context_id
from ..metrics import Kind, Metric
from ..results import TestResult
from .store import SCHEMA, SCHEMA_VERSION

#: Where a commit comes from when the rootdir is not a git checkout (a CI's own variable).
COMMIT_ENV = ("LLMPERF_COMMIT", "GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT")


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(root: Path) -> dict[str, Any]:
    """The commit this run measured, whether tracked files differed from it, its branch.

    The commit is git's ``HEAD`` in the rootdir, else a CI's variable (``COMMIT_ENV``);
    ``dirty`` is None when it cannot be known. Untracked files are not "dirty": the
    history directory itself is often one."""
    commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    if commit is None:
        found = next((os.environ[v] for v in COMMIT_ENV if os.environ.get(v)), None)
        return {"commit": found, "dirty": None, "branch": None}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "branch": None if branch in (None, "HEAD") else branch,
    }


def metric_summary(m: Metric) -> dict[str, Any]:
    """What the history keeps of a metric: its value, direction, tolerance and the summary
    of its samples (``baselines.entries.summarize``; not the samples: a history of thousands
    of runs stays small)."""
    xs = [float(x) for x in m.samples if isinstance(x, (int, float)) and math.isfinite(x)]
    return {
        "value": float(m.value) if math.isfinite(m.value) else None,
        "unit": m.unit,
        "kind": Kind(m.kind).value,
        "higher_is_better": bool(m.higher_is_better),
        "tolerance": tolerance_of(m),
        "gated": bool(m.gated),
        "n": 0,
        **summarize(xs),
    }


def run_record(
    results: Iterable[TestResult],
    *,
    git: dict[str, Any],
    machine: str,
    device: str,
    dispatch: dict[str, Any],
    fingerprint: dict[str, Any],
    tier: str,
    gate: Iterable[str] | None = None,
    epoch: float | None = None,
) -> dict[str, Any]:
    """One run's record: where and what it measured (``git``: ``git_state``'s facts), and
    every test's metrics and verdict."""
    epoch = time.time() if epoch is None else epoch
    run = {
        "epoch": epoch,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
        **git,
        "machine": machine,
        "device": device,
        "context": context_id(dispatch),
        "dispatch": dispatch,
        "versions": {**fingerprint, "pytest_llmperf": __version__},
        "tier": tier,
        "host": platform.node(),
        "gate": None if gate is None else list(gate),
    }
    tests = {
        r.nodeid: {
            "status": str(r.status),
            "verdict": None if r.verdict is None else str(r.verdict),
            "tier": r.tier,
            "metrics": {name: metric_summary(m) for name, m in r.metrics.items()},
        }
        for r in results
    }
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run": run, "tests": tests}


def short_sha(commit: str | None, digits: int = 8) -> str:
    """A commit as people read it: its first ``digits`` hex digits (``?`` when unknown)."""
    return (commit or "?")[:digits]


@dataclass
class Point:
    """One run's value of a series."""

    epoch: float
    commit: str | None
    dirty: bool | None
    value: float
    std: float = 0.0

    @property
    def short(self) -> str:
        """The commit as people read it (its first 8 hex digits), marked when dirty."""
        sha = short_sha(self.commit)
        return sha + "+dirty" if self.dirty else sha


@dataclass
class Series:
    """One test's metric at one place (machine or dispatch context) and tier, over runs."""

    test: str
    metric: str
    where: str
    tier: str
    unit: str = ""
    kind: str = Kind.OTHER.value
    higher_is_better: bool = False
    tolerance: float = 0.1
    gated: bool = True
    points: list[Point] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.test, self.metric, self.where, self.tier)

    @property
    def exact(self) -> bool:
        """Counted work: every change of value is a change of the program."""
        return self.kind == Kind.WORK.value

    @property
    def basis(self) -> str:
        """What each point is: a run's best round (time, throughput) or its value."""
        end = BEST_ROUND.get(self.kind)
        return f"best round ({end})" if end else "value"

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]


def place(run: dict[str, Any], kind: str) -> str:
    """Where a metric's series lives: the dispatch context for work, else the machine."""
    if kind == Kind.WORK.value:
        return f"work {run.get('context')}"
    return str(run.get("machine"))


#: The kinds whose series is each run's best round (``best``), and which end of the samples
#: that is: the least time, the most throughput.
BEST_ROUND = {Kind.TIME.value: "min", Kind.THROUGHPUT.value: "max"}


def best(m: dict[str, Any]) -> float:
    """A run's value in its series. For time and throughput, the run's best round: another
    tenant's load only ever adds time, so on a shared runner the fastest round of a run is
    the one it touched least (a whole test inside a spell of load still moves it, and is
    left to the Hampel filter, ``changes.hampel``). For the other kinds, the run's value."""
    end = BEST_ROUND.get(m.get("kind") or "")
    got = m.get(end) if end else None
    return float(got) if isinstance(got, (int, float)) else float(m["value"])


def collect(runs: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, str], Series]:
    """Every series of the runs, each in the order of the runs (oldest first). A metric's
    latest run says its unit, direction, tolerance and whether it is gated."""
    out: dict[tuple[str, str, str, str], Series] = {}
    for record in runs:
        run = record["run"]
        for test, entry in record["tests"].items():
            for name, m in (entry.get("metrics") or {}).items():
                if m.get("value") is None:
                    continue
                kind = m.get("kind") or Kind.OTHER.value
                key = (test, name, place(run, kind), entry.get("tier") or run.get("tier") or "")
                s = out.get(key) or out.setdefault(key, Series(*key))
                s.unit, s.kind, s.gated = m.get("unit", ""), kind, bool(m.get("gated", True))
                s.higher_is_better = bool(m.get("higher_is_better"))
                s.tolerance = float(m.get("tolerance") or 0.0)
                s.points.append(
                    Point(
                        float(run["epoch"]),
                        run.get("commit"),
                        run.get("dirty"),
                        best(m),
                        float(m.get("std") or 0.0),
                    )
                )
    return out
