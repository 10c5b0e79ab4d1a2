"""One multi-process test inside an ordinary pytest session: ``llmperf.torchrun(n)``.

A test that needs several ranks (tensor parallel over N devices; N gloo
processes on a CPU) calls ``llmperf.torchrun(n)`` first. In the session that
collected it, the call launches ``torchrun --nproc-per-node n -m pytest <this
test> --llmperf`` (one process per device), waits for it within a timeout, and
takes rank 0's result as this test's own: its metrics, work signature and notes
are then judged against this session's baseline and written by this session,
exactly like any other test's. Inside a rank the call returns False and the test
goes on to measure (``measure/distributed.py`` lines the ranks up and keeps the
slowest rank's time).

Ranks report where they are (``distributed.report_state``) and what each test's
outcome was, and dump their stacks on SIGUSR1, so a failure is told per rank: a
rank that died (torchrun's exit summary, or no "finished" state), a rank that
hung past the timeout (its stack, as opposed to the ranks waiting in a
collective for it), or a test that failed in a rank (that rank's message).
Nothing the ranks measured reaches a baseline unless rank 0's result is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from .measure.distributed import STATE_DIR_ENV, dump_stack_on_signal, report_state

#: Seconds the launcher waits for all ranks of one test (``llmperf.torchrun(timeout=)``).
DEFAULT_TIMEOUT_S = 600.0
#: Seconds given to the ranks to write their stacks after SIGUSR1.
STACK_WAIT_S = 2.0
#: Lines of a rank's message or stack kept in a failure.
KEPT_LINES = 30
#: Environment of the launching session that a rank must not inherit.
_NOT_INHERITED = (
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_TESTRUNUID",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_ADDOPTS",  # e.g. -n 4: the ranks are the processes
)


class RankFailure(Exception):
    """The ranks did not produce rank 0's result; the message names the rank(s)."""


def in_ranks() -> bool:
    """Whether this process is one of torchrun's ranks (then the test measures itself)."""
    from .measure import distributed

    return distributed.active() or "TORCHELASTIC_RUN_ID" in os.environ


# --------------------------------------------------------------------------- in a rank


class RankReporter:
    """Registered in each rank that ``llmperf.torchrun`` launched: tells the launcher each
    test's outcome, and that the rank finished."""

    def __init__(self) -> None:
        self.outcomes: dict[str, list[str]] = {}
        dump_stack_on_signal()
        report_state("started")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome == "failed":
            text = "" if report.passed else _tail(str(report.longrepr or ""), KEPT_LINES)
            previous = self.outcomes.get(report.nodeid)
            if previous is None or previous[0] != "failed":
                self.outcomes[report.nodeid] = [report.outcome, text]
            report_state("tested", report.nodeid, outcomes=self.outcomes)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        report_state("finished", outcomes=self.outcomes, exitstatus=int(exitstatus))


def register_in_rank(config: pytest.Config) -> None:
    """In a rank the launcher started (its state directory set): report to it."""
    if os.environ.get(STATE_DIR_ENV):
        config.pluginmanager.register(RankReporter(), "llmperf-rank-reporter")


# --------------------------------------------------------------------------- launcher


def _tail(text: str, lines: int) -> str:
    kept = text.strip().splitlines()
    return "\n".join(kept[-lines:])


def _states(directory: Path, nproc: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for r in range(nproc):
        with contextlib.suppress(OSError, ValueError):
            out[r] = json.loads((directory / f"rank{r}.json").read_text(encoding="utf-8"))
    return out


def _stack(directory: Path, r: int) -> str:
    try:
        return (directory / f"rank{r}.stack").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _waits_in_collective(stack: str) -> bool:
    """Whether a faulthandler dump shows the rank blocked in torch.distributed (waiting
    for the others) rather than in its own code."""
    frames = [ln for ln in stack.splitlines() if ln.strip().startswith("File ")]
    current = frames[:3]  # faulthandler lists the innermost frame first
    return any("torch/distributed" in f.replace("\\", "/") for f in current)


def _innermost_own_frame(stack: str) -> str:
    for line in stack.splitlines():
        text = line.strip()
        if text.startswith("File ") and "site-packages" not in text and "/torch/" not in text:
            return text
    return ""


def _hang_message(nodeid: str, nproc: int, directory: Path, timeout: float) -> str:
    """Which ranks hung and which waited for them, from their states and stacks."""
    states = _states(directory, nproc)
    stacks = {r: _stack(directory, r) for r in range(nproc)}
    hung, waiting = [], []
    for r, stack in stacks.items():
        state = states.get(r, {}).get("state", "not started")
        if stack and _waits_in_collective(stack):
            waiting.append(r)
        elif state != "finished":
            where = _innermost_own_frame(stack)
            hung.append(f"rank {r} ({state}{'; ' + where if where else ''})")
    lines = [
        f"llmperf.torchrun: {nodeid}: {nproc} ranks did not finish within {timeout:g} s; "
        + (f"hung: {', '.join(hung)}" if hung else "no rank outside a collective")
        + (
            f"; waiting for it in a collective: rank {', '.join(map(str, waiting))}"
            if waiting
            else ""
        )
    ]
    for r, stack in stacks.items():
        if stack and r not in waiting:
            head = "\n".join(stack.strip().splitlines()[:KEPT_LINES])
            lines.append(f"--- rank {r} stack (innermost first) ---\n{head}")
    return "\n".join(lines)


def _failed_in_collective(text: str) -> bool:
    """A failure raised inside torch.distributed (a peer closed the connection, a
    collective timed out): a consequence of another rank's failure, listed after it."""
    return "distributed_c10d" in text or "Connection closed by peer" in text


def _root_cause_rank(log: str) -> int | None:
    """torchrun's own summary names the first rank that failed ("Root Cause ... rank: 1")."""
    head = log.split("Root Cause", 1)
    if len(head) < 2:
        return None
    found = re.search(r"rank\s*:\s*(\d+)", head[1])
    return int(found.group(1)) if found else None


def _exit_message(nodeid: str, nproc: int, directory: Path, code: int, log: str) -> str:
    """Why the ranks gave no result: the failed test per rank, or the rank that died."""
    states = _states(directory, nproc)
    own, waiting = [], []  # failed in their own code / in a collective, after another rank
    for r in range(nproc):
        outcome, text = (states.get(r, {}).get("outcomes") or {}).get(nodeid, ["", ""])
        if outcome == "failed":
            if _failed_in_collective(text):
                waiting.append(f"rank {r} failed in a collective (another rank was gone):\n{text}")
            else:
                own.append(f"rank {r} failed:\n{text}")
    parts = own + waiting
    died = [r for r in range(nproc) if states.get(r, {}).get("state") != "finished"]
    root = _root_cause_rank(log)  # torchrun's first failure leads, when it is a death
    if root is not None and (root in died or not parts):
        died = [root, *(r for r in died if r != root)]
    head = f"llmperf.torchrun: {nodeid}: the ranks exited with {code}"
    if died:
        state = states.get(died[0], {}).get("state", "not started")
        head += f"; rank {died[0]} died ({state})"
        if len(died) > 1:
            head += f", then rank {', '.join(map(str, died[1:]))} stopped"
    if not parts:
        parts.append("torchrun said:\n" + _tail(log, KEPT_LINES))
    return "\n".join([head, *parts])


def launch(
    config: pytest.Config, nodeid: str, nproc: int, tier: str, timeout: float
) -> dict[str, Any]:
    """Run ``nodeid`` under torchrun with ``nproc`` ranks; rank 0's result as a dict.

    Raises ``RankFailure`` naming the rank when a rank fails, dies or hangs."""
    workdir = Path(tempfile.mkdtemp(prefix="llmperf-ranks-"))
    try:
        return _launch(config, nodeid, nproc, tier, timeout, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _command(config: pytest.Config, nodeid: str, nproc: int, tier: str, work: Path) -> list[str]:
    threads = config.getoption("llmperf_threads", None)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--monitor-interval=0.1",
        "-m",
        "pytest",
        nodeid,
        f"--rootdir={config.rootpath}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:xdist",
        "-q",
        "--llmperf",
        f"--llmperf-tier={tier}",
        f"--llmperf-baselines={work / 'baselines'}",
        f"--llmperf-report={work / 'rank0.json'}",
        *([f"--llmperf-threads={threads}"] if threads else []),
    ]


def _launch(
    config: pytest.Config, nodeid: str, nproc: int, tier: str, timeout: float, work: Path
) -> dict[str, Any]:
    state_dir = work / "state"
    state_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env[STATE_DIR_ENV] = str(state_dir)
    log_path = work / "torchrun.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _command(config, nodeid, nproc, tier, work),
            cwd=config.rootpath,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the whole tree can be stopped at once
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _dump_stacks(state_dir, nproc)
            message = _hang_message(nodeid, nproc, state_dir, timeout)
            _kill_tree(proc, state_dir, nproc)
            raise RankFailure(message) from None
        except BaseException:  # interrupted: no rank outlives the session
            _kill_tree(proc, state_dir, nproc)
            raise
    text = log_path.read_text(encoding="utf-8", errors="replace")
    result = _rank0_result(work / "rank0.json", nodeid)
    states = _states(state_dir, nproc)
    failed = any(
        (s.get("outcomes") or {}).get(nodeid, [""])[0] == "failed" for s in states.values()
    )
    if code != 0 or result is None or failed:
        raise RankFailure(_exit_message(nodeid, nproc, state_dir, code, text))
    return result


def _rank0_result(path: Path, nodeid: str) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for r in report.get("results") or ():
        if r.get("nodeid") == nodeid:
            return r
    return None


def _dump_stacks(state_dir: Path, nproc: int) -> None:
    """SIGUSR1 to every rank that said its pid; wait (at most ``STACK_WAIT_S``) until
    each of them has written its stack."""
    signalled = []
    for r, state in _states(state_dir, nproc).items():
        try:
            os.kill(int(state["pid"]), signal.SIGUSR1)
            signalled.append(r)
        except (KeyError, TypeError, ValueError, OSError, AttributeError):
            pass
    deadline = time.monotonic() + STACK_WAIT_S
    while signalled and time.monotonic() < deadline:
        if all(_stack(state_dir, r) for r in signalled):
            time.sleep(0.1)  # faulthandler writes a frame per line: let it finish
            return
        time.sleep(0.05)


def _kill_tree(proc: subprocess.Popen[bytes], state_dir: Path, nproc: int) -> None:
    """Kill torchrun and every rank: torchrun starts each rank in a session of its own,
    so the ranks (known by the pids they reported) are killed by their own groups."""
    pids = [proc.pid]
    for state in _states(state_dir, nproc).values():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            pids.append(int(state["pid"]))
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (OSError, AttributeError):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
