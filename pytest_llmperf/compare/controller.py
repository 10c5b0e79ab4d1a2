"""The controller of ``--llmperf-compare``: two workers, driven pair by pair, one verdict.

It takes over the run of each performance test (``pytest_runtest_protocol``):
both workers start the test; at each measurement the controller warms each side
up in turn, then times batches of rounds in pairs, the order within a pair drawn
at random (A B, B A, ...), until the interval of the median ratio (candidate /
reference) clears the tolerance or the time budget is spent (``pairing``). The
candidate's result, with the paired decisions and the reference's result as the
side compared with, gets its verdict from the same ``Judge`` as a stored
baseline; the reports pytest prints are the candidate worker's own, with that
verdict (``reports``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..judge.outcome import Verdict
from ..judge.verdict import Judge, Reference, failure_text, strict_blind
from ..marks import is_perf_test, unmeasured_why
from ..measure.device import exclusive_device
from ..results import TestResult
from .arguments import Side, candidate_side, reference_side
from .channel import Channel, ChannelClosed
from .pairing import Pairs, WorkerSide, drive, paired_decisions
from .reports import apply_verdict, call_report, made, rebuilt
from .worker import ENV, error_line
from .worktree import TREE_ENV, Worktree

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pytest_llmperf.compare.worker import main; del sys.path[0]; sys.exit(main())"
)


@dataclass
class Refused:
    """A test with no worker report to show: the candidate's worker died or did not collect
    it, or the comparison was refused (``outcome`` "error"). Its reports are made here."""

    outcome: str
    longrepr: str


@dataclass
class Ran:
    """Both trees' run of one test: each side's last message ("done", with the candidate's
    reports), and the ratios of each paired measurement (by the names it reported) and of
    each per-round statistic of a generation (by metric name)."""

    policy: Any
    cand: dict[str, Any] = field(default_factory=dict)
    ref: dict[str, Any] | None = None
    pairs: dict[tuple[str, ...], tuple[list[float], bool]] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)

    def add(self, names: list[str], hib: bool, got: Pairs) -> None:
        """One paired measurement's ratios; its per-round statistics under its prefix."""
        self.pairs[tuple(names)] = (got.ratios, hib)
        prefix = names[0].rpartition(".")[0]
        for key, values in got.series.items():
            self.series[f"{prefix}.{key}" if prefix else key] = values


class Worker:
    """One tree's worker process and what it collected."""

    def __init__(
        self, role: str, label: str, own: Path, other: Path, side: Side, logs: Path
    ) -> None:
        self.role, self.label = role, label
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        paths = [str(own)] + ([str(own / "src")] if (own / "src").is_dir() else [])
        env = dict(os.environ)
        # Not an xdist worker itself: the device lock is the controller's to take.
        for key in [k for k in env if k.startswith("PYTEST_XDIST")] + [TREE_ENV]:
            env.pop(key, None)
        env[ENV] = json.dumps(
            {
                "fds": [down_r, up_w],
                "path": paths,
                "cwd": str(side.cwd),
                "args": side.args,
                "select": side.select,
                "own": str(own),
                "other": str(other),
                # The reference moves paths into the candidate's tree to its own copies.
                "redirect": role.startswith("reference"),
            }
        )
        self.log = logs / f"{role}.log"
        plugin_parent = str(Path(__file__).resolve().parents[2])
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, plugin_parent],
                cwd=logs,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(down_r, up_w),
            )
        os.close(down_r)
        os.close(up_w)
        self.channel = Channel(up_r, down_w)
        self.collected: set[str] = set()
        #: [collector node id, error] per module (or directory) this worker could not collect.
        self.errors: list[list[str]] = []
        #: Why this worker cannot be used any more ("" while it can).
        self.failure = ""
        #: Modules of the other tree this worker imported: name -> file (``provenance``).
        self.foreign: dict[str, str] = {}
        #: The worker's pytest rootdir, which its test ids are relative to.
        self.rootpath: Path | None = None

    def wait_collected(self) -> None:
        event = self.recv()
        if event["event"] == "collected":
            self.collected = set(event["nodeids"])
            self.errors = list(event["errors"])
            self.rootpath = Path(event["rootpath"])

    def send(self, **message: Any) -> None:
        if self.failure:
            return
        try:
            self.channel.send(**message)
        except ChannelClosed:
            self._died()

    def recv(self) -> dict[str, Any]:
        """The worker's next message; a worker that died answers "died", with its log."""
        if not self.failure:
            try:
                message = self.channel.recv()
            except ChannelClosed:
                self._died()
            else:
                self.foreign.update(message.get("foreign") or {})
                return message
        return {"event": "died", "outcome": "failed", "longrepr": self.failure, "result": None}

    def _died(self) -> None:
        code = self.proc.wait()
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        self.failure = (
            f"the {self.label} worker exited (code {code}); the end of its log ({self.log}):\n"
            f"{tail}"
        )

    def stop(self) -> None:
        self.send(cmd="quit")
        self.channel.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class EmptyWorker:
    """The reference side when the run named only test paths that REF lacks: every test is
    new, and no process is started to collect nothing."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.collected: set[str] = set()
        self.errors: list[list[str]] = []
        self.failure = ""
        self.foreign: dict[str, str] = {}
        self.rootpath = None

    def wait_collected(self) -> None:
        pass

    def stop(self) -> None:
        pass


class CompareController:
    """Registered as a plugin when ``--llmperf-compare`` is given; see the module docstring."""

    def __init__(self, config: pytest.Config, session: Any, tree: Worktree, owner: bool) -> None:
        self.config, self.session, self.tree = config, session, tree
        #: Whether this process created the worktree (and removes it).
        self.owner = owner
        self.workers: tuple[Any, Worker] | None = None
        #: Why no test can be compared in this run ("" when they can): the two workers'
        #: test ids would not match.
        self.broken = ""
        #: Test paths the run named that REF lacks (their tests are new).
        self.dropped: list[str] = []
        self.rng = random.Random()
        #: Performance tests only REF has, gathered from every process's reports.
        self.only_in_reference: set[str] = set()
        self.said_only = False

    # -- workers -------------------------------------------------------------------------
    def _start(self) -> tuple[Any, Worker]:
        if self.workers is None:
            args = list(self.config.invocation_params.args)
            here = Path(self.config.invocation_params.dir)
            named = [str(a) for a in self.config.option.file_or_dir or []]
            tree, logs = self.tree, self.tree.path.parent
            tag = os.environ.get("PYTEST_XDIST_WORKER", "main")
            side = reference_side(args, named, here, tree, logs / f"cache-reference-{tag}")
            self.dropped = side.dropped
            label = f"reference {tree.label}"
            ref: Any = EmptyWorker(label)
            if not side.empty:
                ref = Worker(f"reference-{tag}", label, tree.path, tree.top, side, logs)
            cand_side = candidate_side(args, here, logs / f"cache-candidate-{tag}")
            cand = Worker(f"candidate-{tag}", "candidate", tree.top, tree.path, cand_side, logs)
            for w in (ref, cand):
                w.wait_collected()
            self.workers = (ref, cand)
            self.broken = self._mismatched_roots(ref, cand)
        return self.workers

    def _mismatched_roots(self, ref: Any, cand: Worker) -> str:
        """The invariant behind matching test ids: the reference's rootdir is the candidate's,
        moved into the reference worktree."""
        if ref.failure or cand.failure or ref.rootpath is None or cand.rootpath is None:
            return ""
        expected = self.tree.mirror(cand.rootpath)
        if expected is None or Path(os.path.realpath(ref.rootpath)) == expected:
            return ""
        return (
            f"not compared: the reference worker's rootdir is {ref.rootpath}, where the "
            f"candidate's ({cand.rootpath}) is {expected} in the reference: their test ids "
            "cannot be matched (see -c, --rootdir and the ini file REF has)"
        )

    def _foreign(self) -> str:
        """What makes every comparison from now on meaningless: a worker that imported the
        other tree's project code ("" when neither did)."""
        ref, cand = self._start()
        lines = []
        for w, mine, theirs, whose in (
            (ref, self.tree.path, self.tree.top, "the working tree"),
            (cand, self.tree.top, self.tree.path, f"the reference {self.tree.label}"),
        ):
            if not w.foreign:
                continue
            lines.append(
                f"the {w.label} worker imported code of {whose}, so this comparison would "
                "measure one tree against itself:"
            )
            for name, file in sorted(w.foreign.items()):
                copy = Path(mine) / os.path.relpath(file, theirs)
                has = f"its own copy is {copy}" if copy.exists() else "it has no such file"
                lines.append(f"  {name}: from {file} ({has})")
        if lines:
            lines.append(
                "  a path or import hook that could not be moved to the worker's own tree "
                "(a module loaded by its absolute path?): import the project's code by name"
            )
        return "\n".join(lines)

    # -- the run of one test ---------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        if not is_perf_test(item):
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in self._reports(item, nextitem):
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _reports(self, item: pytest.Item, nextitem: pytest.Item | None) -> list[pytest.TestReport]:
        """The candidate's own reports with the comparison's verdict, or, where its worker
        made none, reports made here (``reports.made``)."""
        start = time.time()
        ran = self._compare(item, nextitem)
        if isinstance(ran, Refused):
            reports = made(item, ran.outcome, ran.longrepr, start)
        else:
            reports = rebuilt(self.config, ran.cand["reports"])
            self._conclude(item, reports, ran, start)
        ref = self.workers[0] if self.workers else None
        if ref is not None and not ref.failure and not self.said_only:
            self.said_only = True  # once per process: pytest_runtest_logreport gathers them
            only = sorted(ref.collected - self._selected())
            reports[0].llmperf_reference_only = only  # type: ignore[attr-defined]
        return reports

    def _compare(self, item: pytest.Item, nextitem: pytest.Item | None) -> Ran | Refused:
        """Both trees' run of the test, each measurement both make alike paired; Refused
        where there is nothing (or nothing trustworthy) to compare."""
        ref, cand = self._start()
        if cand.failure:
            return Refused("failed", cand.failure)
        why = self.broken or self._foreign()
        if why:
            return Refused("error", why)
        nodeid = item.nodeid
        sides = [w for w in (ref, cand) if not w.failure and nodeid in w.collected]
        if cand not in sides:
            return Refused("failed", f"the candidate's worker did not collect {nodeid}")
        ran = Ran(self.session.policy_for(item))
        events = self._measure(item, nextitem, sides, ran)
        why = self._foreign()  # imported while the test ran: the worker's reports measured
        if why:  # one tree against itself
            return Refused("error", why)
        ran.cand, ran.ref = events[cand], events.get(ref)
        if "reports" not in ran.cand:  # the candidate's worker died running it
            return Refused("failed", ran.cand["longrepr"])
        return ran

    def _measure(
        self, item: pytest.Item, nextitem: pytest.Item | None, sides: list[Any], ran: Ran
    ) -> dict[Any, dict[str, Any]]:
        """Run the test on each side; each measurement both make alike is paired, one only
        one side makes (or names otherwise) is measured alone. Each side's last message."""
        ref, cand = self._start()
        nxt = nextitem.nodeid if nextitem is not None else None
        for w in sides:
            w.send(cmd="run", nodeid=item.nodeid, next=nxt if nxt in w.collected else None)
        events = {w: w.recv() for w in sides}
        while any(e["event"] == "measure" for e in events.values()):
            measuring = [w for w in sides if events[w]["event"] == "measure"]
            if len(measuring) == 2 and events[ref]["names"] == events[cand]["names"]:
                self._pair(events, ran)
            else:
                for w in measuring:
                    w.send(cmd="solo")
                for w in measuring:
                    events[w] = w.recv()
        return events

    def _pair(self, events: dict[Any, dict[str, Any]], ran: Ran) -> None:
        """One measurement of both sides, paired (``pairing.drive``), then ended on each."""
        ref, cand = self._start()
        names, hib = events[cand]["names"], bool(events[cand]["higher_is_better"])
        device = self.session.device if os.environ.get("PYTEST_XDIST_WORKER") else None
        sides = (WorkerSide(ref), WorkerSide(cand))
        with exclusive_device(device) if device is not None else nullcontext():
            got = drive(*sides, names, hib, ran.policy, self.rng)
        ran.add(names, hib, got)
        for w, side in zip((ref, cand), sides, strict=True):
            if not side.failed:
                w.send(cmd="end")
            events[w] = w.recv()

    def _conclude(
        self, item: pytest.Item, reports: list[pytest.TestReport], ran: Ran, start: float
    ) -> None:
        """The verdict of a test the candidate ran, on its call report, as a run of one tree
        gives it (``LLMPerfSession.conclude``). A call that failed or skipped (an xfail too)
        keeps its own outcome and is not judged; one that measured nothing is said."""
        call = call_report(reports)
        if call is None:
            return
        data = call.__dict__.pop("llmperf", None)  # the worker's result, not yet judged
        if call.outcome != "passed":
            return
        if not data:
            self.session.measured_nothing(item, call, unmeasured_why(item))
            return
        result = TestResult.from_dict(data)
        result.duration_s = round(time.time() - start, 3)  # both trees' run, pairs included
        apply_verdict(reports, result, self._verdict(item.nodeid, ran, result))

    def _verdict(self, nodeid: str, ran: Ran, result: TestResult) -> str:
        """Judge the candidate's result against the reference's; the failure it makes ("" for
        none)."""
        result.verdict_lines = []
        why = self._no_reference(nodeid, ran.ref)
        if why:
            result.verdict = Verdict.NO_BASELINE
            result.verdict_lines = [why]
            result.note(why)  # said in the summary, where a missing baseline is only counted
        else:
            assert ran.ref is not None
            self._judge(result, TestResult.from_dict(ran.ref["result"]), ran)
        strict_blind(result, ran.policy.strict)
        if result.verdict is None or not result.verdict.fails(ran.policy.strict):
            return ""
        where = f"against the reference {self.tree.label}, on {self.session.device_info['name']}"
        return failure_text(result, where)

    def _no_reference(self, nodeid: str, event: dict[str, Any] | None) -> str:
        """Why the reference cannot be compared with ("" when it can)."""
        ref = self._start()[0]
        if ref.failure:
            return f"not compared: {ref.failure}"
        if nodeid not in ref.collected:
            errors = [
                f"{where}: {why}" if where else why
                for where, why in ref.errors
                if not where or nodeid.startswith((f"{where}::", f"{where.rstrip('/')}/"))
            ]
            if errors:
                return f"not compared: the {ref.label} did not collect it ({'; '.join(errors)})"
            return f"new: this test is not in the {ref.label}"
        assert event is not None
        if event["outcome"] != "passed":
            where = "" if event.get("when", "call") == "call" else f" in {event['when']}"
            why = error_line(event["longrepr"] or "")
            return f"not compared: the test {event['outcome']}{where} in the {ref.label}: {why}"
        if not event.get("result"):
            return f"not compared: the test measured nothing in the {ref.label}"
        return ""

    def _judge(self, result: TestResult, reference: TestResult, ran: Ran) -> None:
        """The stored-baseline judge, with the reference's result as the side compared with
        and the paired decisions for the timed metrics (a generation's token metrics too)."""
        label = f"reference {self.tree.label}"
        paired = paired_decisions(result, reference, ran.pairs, ran.series, label)
        stored = Reference.from_result(reference)
        Judge(
            stored,
            where=f"the {label}",
            work_entry=stored,
            work_where=f"the {label}",
            paired=paired,
        ).judge(result)

    def _selected(self) -> set[str]:
        items = getattr(self.config, "_llmperf_items", None) or []
        return {i.nodeid for i in items if is_perf_test(i)}

    # -- the run's end ---------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        only = getattr(report, "llmperf_reference_only", None)
        if only is not None:
            self.only_in_reference.update(only)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.config._llmperf_items = list(session.items)  # type: ignore[attr-defined]

    def summary_lines(self) -> list[str]:
        lines = []
        if self.dropped:
            lines.append(
                f"not in the reference {self.tree.label} (their tests are new): "
                + ", ".join(self.dropped)
            )
        plugin = Path(__file__).resolve().parents[1]
        if self.tree.mirror(plugin) is not None and self.tree.path not in plugin.parents:
            lines.append(
                f"the plugin itself ({plugin}) is in the working tree and measures both sides: "
                f"code of {plugin.name} that the tests run is the candidate's on both"
            )
        if self.only_in_reference:
            lines.append(
                f"{len(self.only_in_reference)} performance test(s) only in the reference "
                f"{self.tree.label}: " + ", ".join(sorted(self.only_in_reference))
            )
        return lines

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.workers is not None:
            for w in self.workers:
                w.stop()
        if self.owner:
            self.tree.remove()
