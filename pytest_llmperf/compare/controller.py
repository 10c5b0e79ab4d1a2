"""The controller of ``--llmperf-compare``: two workers, driven pair by pair, one verdict.

It takes over the run of each performance test (``pytest_runtest_protocol``):
both workers start the test; at each measurement the controller warms each side
up in turn, then times batches of rounds in pairs, the order within a pair drawn
at random (A B, B A, ...), until the interval of the median ratio (candidate /
reference) clears the tolerance or the time budget is spent. The candidate's
result, with the paired decisions and the reference's memory and work signature
as its baseline, gets its verdict from the same ``Judge`` as a stored baseline;
the report pytest prints is built here from what the workers said.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from .arguments import Side, candidate_side, reference_side
from .channel import Channel, ChannelClosed
from .worker import ENV, error_line
from .worktree import TREE_ENV, Worktree

#: Pairs before the interval can be tight enough; the cap; a batch's share of max_time.
MIN_PAIRS = 7
MAX_PAIRS = 60
BATCH_SHARE = 1 / 20

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pytest_llmperf.compare.worker import main; del sys.path[0]; sys.exit(main())"
)


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
        from ..plugin import is_perf_test, unmeasured_why

        if not is_perf_test(item):
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        start = time.time()
        outcome, longrepr, result = self._compare(item, nextitem)
        if result is not None:  # both trees' run of the test, pairs included
            result.duration_s = round(time.time() - start, 3)
        for report in self._reports(item, outcome, longrepr, result, start):
            if report.when == "call" and result is None and outcome == "passed":
                self.session.measured_nothing(item, report, unmeasured_why(item))
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _compare(self, item: pytest.Item, nextitem: pytest.Item | None) -> tuple[str, Any, Any]:
        from ..measure.device import exclusive_device

        ref, cand = self._start()
        if cand.failure:
            return "failed", cand.failure, None
        why = self.broken or self._foreign()
        if why:
            return "error", why, None
        nodeid = item.nodeid
        sides = [w for w in (ref, cand) if not w.failure and nodeid in w.collected]
        if cand not in sides:
            return "failed", f"the candidate's worker did not collect {nodeid}", None
        policy = self.session.policy_for(item)
        for w in sides:
            nxt = nextitem.nodeid if nextitem is not None else None
            w.send(cmd="run", nodeid=nodeid, next=nxt if nxt in w.collected else None)
        events = {w: w.recv() for w in sides}
        pairs: dict[tuple[str, ...], tuple[list[float], bool]] = {}
        #: A generation's per-round statistics (TTFT, TPOT, ITL), paired by the same batches.
        series: dict[str, list[float]] = {}
        while any(e["event"] == "measure" for e in events.values()):
            measuring = [w for w in sides if events[w]["event"] == "measure"]
            if len(measuring) == 2 and events[ref]["names"] == events[cand]["names"]:
                first = events[cand]
                device = self.session.device if os.environ.get("PYTEST_XDIST_WORKER") else None
                with exclusive_device(device) if device is not None else nullcontext():
                    ratios, failed, by_name = self._drive(ref, cand, first, policy)
                pairs[tuple(first["names"])] = (ratios, first["higher_is_better"])
                prefix = first["names"][0].rpartition(".")[0]
                for key, values in by_name.items():
                    series[f"{prefix}.{key}" if prefix else key] = values
                for w in (ref, cand):
                    if w not in failed:
                        w.send(cmd="end")
                    events[w] = w.recv()
            else:
                for w in measuring:
                    w.send(cmd="solo")
                for w in measuring:
                    events[w] = w.recv()
        why = self._foreign()  # imported while the test ran
        if why:
            return "error", why, None
        return self._verdict(item, policy, events.get(ref), events[cand], pairs, series)

    def _drive(
        self, ref: Worker, cand: Worker, event: dict[str, Any], policy: Any
    ) -> tuple[list[float], set[Worker], dict[str, list[float]]]:
        """Warm-up of each side in turn, then pairs of batches until the decision is settled:
        the per-pair ratios (candidate / reference of the batch medians), and for a
        generation the same ratios of each per-round statistic both sides reported."""
        from ..judge.decision import paired_settled

        hib = bool(event["higher_is_better"])
        names = event["names"]
        tolerance = policy.tolerance_for(names[-1], "ratio" if hib else "time")
        order = [ref, cand]
        self.rng.shuffle(order)

        def ask(w: Worker, **cmd: Any) -> dict[str, Any] | None:
            w.send(**cmd)
            reply = w.recv()
            if reply["event"] != "ok":
                failed.add(w)
                return None
            return reply

        failed: set[Worker] = set()
        by_name: dict[str, list[float]] = {}
        for w in order:
            if ask(w, cmd="warmup") is None:
                return [], failed, by_name
        per_value = []
        for w in order:  # one round each, not kept: how long a round takes now
            reply = ask(w, cmd="rounds", n=1, keep=False)
            if reply is None:
                return [], failed, by_name
            per_value.append(reply["seconds"])
        batch = max(1, min(1000, round(policy.max_time * BATCH_SHARE / max(max(per_value), 1e-9))))
        budget = 4 * policy.max_time
        ratios: list[float] = []
        start = time.perf_counter()
        while True:
            self.rng.shuffle(order)
            values: dict[Worker, float] = {}
            replies: dict[Worker, dict[str, Any]] = {}
            for w in order:
                reply = ask(w, cmd="rounds", n=batch)
                if reply is None:
                    return ratios, failed, by_name
                values[w] = median(reply["values"])
                replies[w] = reply
            ratios.append(values[cand] / values[ref] if values[ref] > 0 else math.inf)
            _pair_series(by_name, replies[ref].get("series"), replies[cand].get("series"))
            spent = len(ratios) >= MAX_PAIRS or time.perf_counter() - start > budget
            if spent and len(ratios) >= MIN_PAIRS:
                break
            if paired_settled(ratios, tolerance, hib):
                break
        return ratios, failed, by_name

    def _verdict(
        self,
        item: pytest.Item,
        policy: Any,
        ref_event: dict[str, Any] | None,
        cand_event: dict[str, Any],
        pairs: dict[tuple[str, ...], tuple[list[float], bool]],
        series: dict[str, list[float]],
    ) -> tuple[str, Any, Any]:
        from ..judge.outcome import Verdict
        from ..results import TestResult

        if cand_event["outcome"] != "passed":
            outcome = "skipped" if cand_event["outcome"] == "skipped" else "failed"
            return outcome, cand_event["longrepr"], None
        if not cand_event.get("result"):
            return "passed", None, None
        result = TestResult.from_dict(cand_event["result"])
        result.verdict_lines = []
        why = self._no_reference(item.nodeid, ref_event)
        if why:
            result.verdict = Verdict.NO_BASELINE
            result.verdict_lines = [why]
            result.note(why)  # said in the summary, where a missing baseline is only counted
        else:
            assert ref_event is not None
            self._judge(result, TestResult.from_dict(ref_event["result"]), pairs, series)
        from ..judge.verdict import strict_blind

        strict_blind(result, policy.strict)
        if result.verdict is not None and result.verdict.fails(policy.strict):
            return "failed", self._failure_text(result), result
        return "passed", None, result

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

    def _judge(
        self,
        result: Any,
        reference: Any,
        pairs: dict[tuple[str, ...], Any],
        series: dict[str, list[float]],
    ) -> None:
        """The stored-baseline judge, with the reference's result as the baseline entry and
        the paired decisions for the timed metrics (a generation's token metrics too)."""
        from ..baselines import test_entry
        from ..judge.verdict import Judge

        label = f"reference {self.tree.label}"
        paired = {}

        def pair(name: str, ratios: list[float], hib: bool) -> None:
            metric = result.metrics.get(name)
            if metric is None or not metric.gated or name not in reference.metrics or not ratios:
                return
            paired[name] = _paired_decision(metric, reference.metrics[name], ratios, hib, label)

        for names, (ratios, hib) in pairs.items():
            name = next((n for n in names if n in result.metrics and result.metrics[n].gated), None)
            if name is not None:
                pair(name, ratios, hib)
        from ..measure.generation import RATES

        for name, ratios in series.items():
            pair(name, ratios, False)  # seconds: lower is better
            # Prefill and decode throughput are TTFT's and TPOT's inverses, pair by pair.
            prefix, _, key = name.rpartition(".")
            if key in RATES:
                pair(f"{prefix}.{RATES[key]}" if prefix else RATES[key], ratios, False)
        entry = test_entry(reference, None, 1)
        Judge(
            entry,
            where=f"the {label}",
            work_entry=entry,
            work_where=f"the {label}",
            paired=paired,
        ).judge(result)

    def _failure_text(self, result: Any) -> str:
        lines = [
            f"llmperf: {result.verdict} in {result.nodeid} against the reference "
            f"{self.tree.label}, on {self.session.device_info['name']}"
        ]
        lines += ["  " + line for line in result.verdict_lines]
        lines += ["  note: " + n for n in result.notes]
        return "\n".join(lines)

    def _reports(
        self, item: pytest.Item, outcome: str, longrepr: Any, result: Any, start: float
    ) -> list[pytest.TestReport]:
        """setup, call and teardown reports as pytest would have made them."""
        from ..output.exporters import junit_properties

        stop = time.time()
        when_failed = "call"
        if outcome == "skipped":
            longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {longrepr}")
            when_failed = "setup"
        elif outcome == "error":  # pytest's ERROR: the comparison itself cannot be trusted
            outcome, when_failed = "failed", "setup"
        extra: dict[str, Any] = {}
        if result is not None:
            item.user_properties.extend(junit_properties(result))
            extra["llmperf"] = json.loads(json.dumps(result.to_dict(), default=str))
        ref = self.workers[0] if self.workers else None
        if ref is not None and not ref.failure and not self.said_only:
            self.said_only = True
            extra["llmperf_reference_only"] = sorted(ref.collected - self._selected())
        reports = []
        for when in ("setup", "call", "teardown"):
            if when_failed == "setup" and when == "call":
                continue
            this = outcome if when == when_failed else "passed"
            reports.append(
                pytest.TestReport(
                    item.nodeid,
                    item.location,
                    {k: 1 for k in item.keywords},
                    this,
                    longrepr if when == when_failed else None,
                    when,
                    duration=stop - start if when == "call" else 0.0,
                    start=start,
                    stop=stop,
                    user_properties=list(item.user_properties),
                    **(
                        extra
                        if when == "call" or (when_failed == "setup" and when == "setup")
                        else {}
                    ),
                )
            )
        return reports

    def _selected(self) -> set[str]:
        from ..plugin import is_perf_test

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


def _pair_series(
    by_name: dict[str, list[float]],
    ref: dict[str, list[float]] | None,
    cand: dict[str, list[float]] | None,
) -> None:
    """One pair's ratio (candidate / reference of the batch medians) of each per-round
    statistic both sides reported."""
    for key in sorted(set(ref or {}) & set(cand or {})):
        r, c = median(ref[key]), median(cand[key])  # type: ignore[index]
        if r > 0:
            by_name.setdefault(key, []).append(c / r)


def _paired_decision(
    metric: Any, reference: Any, ratios: list[float], hib: bool, label: str
) -> Any:
    """The paired decision of one metric from ratios of values of direction ``hib`` (seconds,
    or an A/B speedup); a throughput is their inverse."""
    from ..judge.decision import decide_paired

    oriented = [1 / r if metric.higher_is_better != hib else r for r in ratios if r > 0]
    return decide_paired(
        metric.name,
        ratios=oriented,
        reference=reference.value,
        current=metric.value,
        tolerance=metric.tolerance if metric.tolerance is not None else 0.1,
        higher_is_better=metric.higher_is_better,
        unit=metric.unit,
        reference_name=label,
    )
