"""One tree's side of ``--llmperf-compare``: a pytest process that runs tests on command.

Started by the controller with the tree's root (and ``src/``) first on
``sys.path``; the reference worker also moves every path and import that leads
into the candidate's tree to its own copy, and both check where their project
modules came from (``provenance``). The plugin itself is imported before that,
from the environment the controller runs in, so both trees are measured by the
same plugin. It collects the run's selection, says which
performance tests it has, then runs one test per command. Inside a test, each
measurement asks the controller what to do (``Remote.measure``): warm up, time
a batch of rounds, end; the controller alternates the two workers batch by
batch, so a pair's two batches see the same machine. When the test is done,
it sends its reports (``reports.serialized``): the controller shows the
candidate's as they are, with its verdict.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from .. import compare
from ..marks import is_perf_test
from ..measure import sequence
from ..measure.timing import Rounds
from .channel import Channel, ChannelClosed
from .provenance import Provenance, Trees, install_redirect, moved_paths
from .reports import serialized

#: The environment variable that carries the worker's spec (JSON) from the controller.
ENV = "LLMPERF_COMPARE_WORKER"


class Remote:
    """The controller's side of each measurement, as ``measure.sequence`` sees it."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def measure(
        self, names: list[str], sampler: Any, warm: Callable[[], None], higher_is_better: bool
    ) -> Any:
        """Warm up and time batches as the controller says; the rounds it timed, or None
        when the controller says to measure alone (the other tree lacks this measurement)."""
        self.channel.send(event="measure", names=names, higher_is_better=higher_is_better)
        rounds = Rounds()
        try:
            while True:
                cmd = self.channel.recv()
                start = time.perf_counter()
                if cmd["cmd"] == "warmup":
                    warm()
                    self.channel.send(event="ok", seconds=time.perf_counter() - start)
                elif cmd["cmd"] == "rounds":
                    values = sampler.sample(int(cmd["n"]))
                    seconds = time.perf_counter() - start
                    if cmd.get("keep", True):
                        rounds.values += values
                        rounds.batch_sizes.append(len(values))
                    elif hasattr(sampler, "forget"):  # a generation's log keeps kept rounds only
                        sampler.forget(len(values))
                    # A generation's rounds also carry TTFT, TPOT and ITL per round: paired too.
                    series = getattr(sampler, "series", None) or {}
                    self.channel.send(event="ok", values=values, seconds=seconds, series=series)
                else:  # "end" or "solo"
                    return rounds if rounds.values else None
        except BaseException as exc:
            # An out-of-memory error (or any other) ends this measurement: say so, so the
            # controller stops pairing, then let the test handle it as it would alone.
            self.channel.send(event="error", error=f"{type(exc).__name__}: {exc}")
            raise


def error_line(text: str) -> str:
    """The line of a failure that says what went wrong: pytest's first ``E`` line."""
    lines = [x for x in text.splitlines() if x.strip()]
    why = next((x for x in lines if x.startswith("E ")), lines[-1] if lines else "")
    return why.removeprefix("E ").strip()


def _text(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2])
    return str(longrepr or "")


class WorkerPlugin:
    """Collects, reports the performance tests found, then runs tests on command."""

    def __init__(
        self,
        channel: Channel,
        provenance: Provenance,
        select: list[list[str]] | None = None,
        redirect: bool = False,
    ) -> None:
        self.channel = channel
        self.provenance = provenance
        #: [path, "Class::test[id]" or ""] per test path the run named (None: no filter)
        self.select = select
        #: Whether this worker moves paths into the other tree to its own (the reference).
        self.redirect = redirect
        self.items: dict[str, pytest.Item] = {}
        self.errors: list[list[str]] = []
        self.reports: list[pytest.TestReport] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        # The ini's ``pythonpath`` (absolute entries lead into the candidate) is in now.
        if self.redirect:
            sys.path[:] = moved_paths(sys.path, self.provenance.trees)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors.append([report.nodeid, error_line(report.longreprtext)])

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """The tests the run named by node id (``file.py::test``), given to this worker as
        their files: a node id this tree lacks is then simply not here, not a usage error."""
        if self.select is None:
            return
        kept = [item for item in items if _selected(item, self.select)]
        if len(kept) != len(items):
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = kept

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.items = {item.nodeid: item for item in session.items}
        perf = [item.nodeid for item in session.items if is_perf_test(item)]
        self.channel.send(
            event="collected",
            nodeids=perf,
            errors=self.errors,
            rootpath=str(session.config.rootpath),
            foreign=self.provenance.check(),
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        while True:
            try:
                cmd = self.channel.recv()
            except ChannelClosed:
                break
            if cmd["cmd"] != "run":
                break
            self._run(cmd["nodeid"], cmd.get("next"))
        return True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)

    def _run(self, nodeid: str, next_id: str | None) -> None:
        item = self.items.get(nodeid)
        if item is None:  # no reports: the controller makes the test's
            self.channel.send(event="done", outcome="missing", longrepr="", result=None)
            return
        self.reports = []
        nextitem = self.items.get(next_id) if next_id else None
        item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        failed = next((r for r in self.reports if r.failed), None)
        skipped = next((r for r in self.reports if r.skipped), None)
        call = next((r for r in self.reports if r.when == "call"), None)
        shown = failed or skipped
        self.channel.send(
            event="done",
            # What the controller says of the reference's run ...
            outcome=shown.outcome if shown else "passed",
            when=shown.when if shown else "call",
            longrepr=_text(shown.longrepr) if shown else "",
            result=getattr(call, "llmperf", None),
            # ... and the candidate's reports, which it shows as pytest made them here.
            reports=[serialized(item.config, r) for r in self.reports],
            foreign=self.provenance.check(),
        )


def _selected(item: pytest.Item, select: list[list[str]]) -> bool:
    """Whether the run named ``item``: its file (or a directory above it), with the node
    id's rest naming it, a class or function above it, or all of its parametrizations."""
    path = os.path.realpath(item.path)
    suffix = item.nodeid.partition("::")[2]
    for where, rest in select:
        if path != where and not path.startswith(where.rstrip(os.sep) + os.sep):
            continue
        if not rest or suffix == rest or suffix.startswith((f"{rest}::", f"{rest}[")):
            return True
    return False


def main() -> int:
    """The worker process: the spec from the environment, this tree first, then pytest."""

    spec = json.loads(os.environ.pop(ENV))
    channel = Channel(*spec["fds"])
    # Only the tree's paths lead: not the directory the process started in.
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    sys.path[:0] = spec["path"]
    trees = Trees(spec["own"], spec["other"])
    if spec["redirect"]:
        install_redirect(trees)
    os.chdir(spec["cwd"])
    compare.in_worker = True
    sequence.remote = Remote(channel)
    provenance = Provenance(trees)
    provenance.watch()
    plugin = WorkerPlugin(channel, provenance, spec.get("select"), spec["redirect"])
    return int(pytest.main(spec["args"], plugins=[plugin]))
