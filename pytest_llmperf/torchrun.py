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
exited with status 0 before reporting (torchrun counts that a success and waits
for the others, which wait for it: told within seconds, not at the timeout), a
rank that hung past the timeout (its stack, as opposed to the ranks waiting in a
collective for it), or a test that failed in a rank (that rank's message).
Nothing the ranks measured reaches a baseline unless rank 0's result is taken.

Before anything starts, a call is checked (``checked_in_ranks``): once per test,
and at most one rank per accelerator (else a skip) or ``MAX_CPU_RANKS`` on the
CPU. Each launch keeps everything it writes (torchrun's per-rank logs included,
``--log-dir``: without it torchrun leaves a ``torchelastic_*`` directory in the
temp dir per launch) in one directory of its own, removed when it returns.
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
import weakref
from pathlib import Path
from typing import Any

import pytest

from .config import shown
from .measure import distributed
from .measure.distributed import STATE_DIR_ENV, dump_stack_on_signal, report_state

#: Seconds the launcher waits for all ranks of one test (``llmperf.torchrun(timeout=)``).
DEFAULT_TIMEOUT_S = 600.0
#: Seconds given to the ranks to write their stacks after SIGUSR1.
STACK_WAIT_S = 2.0
#: Lines of a rank's message or stack kept in a failure.
KEPT_LINES = 30
#: Most ranks ``llmperf.torchrun(n)`` starts on the CPU. On the CPU a rank is not
#: hardware but a process (Python, torch, pytest and the plugin: about 0.25 GB and a
#: second or two of a core before the test builds anything), so nothing else bounds n:
#: ``10**20`` once took the launcher to 22 GB and the OOM killer. 32 is 4x the 8 ranks of
#: the largest node a CPU test usually stands in for, and 32 ranks (~8 GB) still start
#: on a CI runner. A constant, not a multiple of ``os.cpu_count()``: a test's n must be
#: valid on a 2-core runner and a 64-core workstation alike (ranks time-share cores).
MAX_CPU_RANKS = 32
#: Seconds between two looks at the ranks while torchrun runs.
POLL_S = 0.2
#: Seconds torchrun gets, once a rank's process is gone without reporting, to act on a
#: failure: it stops the other ranks at once (SIGTERM), logs it and exits. Other ranks
#: still alive after that, and no failure in its log: the rank exited with status 0,
#: which torchrun takes for success, waiting on (as do the ranks waiting for that one).
GONE_GRACE_S = 1.0
#: What torchrun logs when it sees a rank exit with a failure (then it stops the others).
_TORCHRUN_SAW_FAILURE = "failed (exitcode:"
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
    return distributed.active() or "TORCHELASTIC_RUN_ID" in os.environ


#: The first ``nproc`` of each test's ``llmperf`` that called ``llmperf.torchrun``.
_CALLED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def checked_in_ranks(llmperf: Any, nproc: int, where: str) -> bool:
    """Check one ``llmperf.torchrun(nproc)`` call of a test before anything starts, then
    say whether this process is one of the ranks (True: the test measures itself).

    A second call in one test is an error in the session and in each rank alike: it would
    launch the ranks again (or, in a rank, be ignored and let rank 0's result stand for a
    test that asked for something else). ``nproc`` is bounded in the launching session
    only (``check_nproc``): a rank runs whatever its launcher started."""
    first = _CALLED.get(llmperf)
    if first is not None:
        raise RuntimeError(
            f"{where}({shown(nproc)}): called twice in this test (first as "
            f"llmperf.torchrun({shown(first)})); call it once, first, and return when it "
            "returns True"
        )
    _CALLED[llmperf] = nproc
    if in_ranks():
        return True
    check_nproc(nproc, getattr(llmperf, "device", None), where)
    return False


def check_nproc(nproc: Any, device: Any, where: str) -> None:
    """Refuse an ``nproc`` no launch should start, before any process exists: not an int
    >= 1 (an error), more ranks than accelerators (a skip: the test needs hardware this
    machine lacks) or more than ``MAX_CPU_RANKS`` on the CPU (an error: see there)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"{where}: nproc must be an int >= 1, got {shown(nproc)}")
    kind = getattr(device, "type", "cpu")
    if kind == "cpu":
        if nproc > MAX_CPU_RANKS:
            raise ValueError(
                f"{where}: nproc={shown(nproc)} is more ranks than the {MAX_CPU_RANKS} "
                "launched on the CPU (each rank is a process of its own: about 0.25 GB before "
                "the test builds anything); ask for fewer"
            )
        return
    import torch

    present = torch.accelerator.device_count()
    if nproc > present:
        pytest.skip(f"{where}: needs {shown(nproc)} {kind} devices; this machine has {present}")


def rank_devices(device: Any, nproc: int) -> list[Any]:
    """The devices ``nproc`` ranks measure on: rank r the accelerator of its ``LOCAL_RANK``
    (``measure.device.current_device``), every rank the CPU on the CPU."""
    if device.type == "cpu":
        return [device]
    import torch

    count = max(1, torch.accelerator.device_count())
    return [torch.device(device.type, r % count) for r in range(nproc)]


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


def _state(directory: Path, r: int) -> dict[str, Any] | None:
    """Rank ``r``'s last reported state; None before its first."""
    try:
        return json.loads((directory / f"rank{r}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _states(directory: Path, nproc: int) -> dict[int, dict[str, Any]]:
    return {r: s for r in range(nproc) if (s := _state(directory, r)) is not None}


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


def _rank_log(logs: Path, r: int) -> str:
    """The end of what rank ``r`` wrote (torchrun's ``--log-dir``, one rank per node here
    so the local rank is the rank); empty when it wrote nothing."""
    parts = []
    for stream in ("stdout", "stderr"):
        for path in sorted(logs.glob(f"*/attempt_*/{r}/{stream}.log")):
            with contextlib.suppress(OSError):
                text = _tail(path.read_text(encoding="utf-8", errors="replace"), KEPT_LINES)
                if text:
                    parts.append(f"--- rank {r} {stream} (end) ---\n{text}")
    return "\n".join(parts)


def _gone_message(
    nodeid: str, nproc: int, directory: Path, gone: list[int], logs: Path, stopped: bool
) -> str:
    """Ranks whose process ended without reporting their result (``os._exit(0)``, say):
    no failure to torchrun, which waits on for the others (``stopped``: so did they, for
    the gone rank, and the launcher stopped them)."""
    states = _states(directory, nproc)
    named = "; ".join(
        f"rank {r} exited before reporting ({states.get(r, {}).get('state', 'not started')})"
        for r in gone
    )
    why = "no result, and no failure to torchrun (exit status 0)"
    if stopped:
        why += "; the other ranks waited for it, so all were stopped"
    head = f"llmperf.torchrun: {nodeid}: {named}: {why}"
    return "\n".join([head, *(text for r in gone if (text := _rank_log(logs, r)))])


def _exit_message(nodeid: str, nproc: int, directory: Path, code: int, log: str, logs: Path) -> str:
    """Why the ranks gave no result: the failed test per rank, the rank that died, or
    (torchrun exited 0) the rank that exited before reporting."""
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
    if died and code == 0:  # every rank exited 0: the unfinished ones left early
        return "\n".join([_gone_message(nodeid, nproc, directory, died, logs, False), *parts])
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

    Raises ``RankFailure`` naming the rank when a rank fails, dies, hangs or exits before
    reporting."""
    workdir = Path(tempfile.mkdtemp(prefix="llmperf-ranks-"))  # all of this launch's files
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
        # Each rank's output in a file as well (tee: still in torchrun's own log), under
        # the launch's directory: torchrun's default is a torchelastic_* temp directory
        # that nobody removes.
        f"--log-dir={work / 'logs'}",
        "--tee=3",
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
            code = _wait(proc, nodeid, nproc, state_dir, timeout, work)
        except BaseException:  # failed, hung or interrupted: no rank outlives the session
            _kill_tree(proc, state_dir, nproc)
            raise
    text = log_path.read_text(encoding="utf-8", errors="replace")
    result = _rank0_result(work / "rank0.json", nodeid)
    states = _states(state_dir, nproc)
    failed = any(
        (s.get("outcomes") or {}).get(nodeid, [""])[0] == "failed" for s in states.values()
    )
    unfinished = any(states.get(r, {}).get("state") != "finished" for r in range(nproc))
    if code != 0 or result is None or failed or unfinished:
        raise RankFailure(_exit_message(nodeid, nproc, state_dir, code, text, work / "logs"))
    return result


def _wait(
    proc: subprocess.Popen[bytes],
    nodeid: str,
    nproc: int,
    state_dir: Path,
    timeout: float,
    work: Path,
) -> int:
    """torchrun's exit status once it exits; ``RankFailure`` (the caller stops the ranks)
    at the timeout, or as soon as a rank is gone without reporting while torchrun waits
    on: a rank that exits 0 early is no failure to torchrun, and the others wait for it
    in a collective, so without this the test would end only at the timeout."""
    deadline = time.monotonic() + timeout
    gone_since: dict[int, float] = {}
    while True:
        try:
            return proc.wait(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now >= deadline:
            _dump_stacks(state_dir, nproc)
            raise RankFailure(_hang_message(nodeid, nproc, state_dir, timeout)) from None
        states = _states(state_dir, nproc)
        for r in _gone_unreported(state_dir, states):
            gone_since.setdefault(r, now)
        gone = sorted(r for r, since in gone_since.items() if now - since >= GONE_GRACE_S)
        alive = [r for r, s in states.items() if r not in gone_since and _alive(s.get("pid"))]
        if gone and alive and not _torchrun_saw_failure(work / "torchrun.log"):
            raise RankFailure(
                _gone_message(nodeid, nproc, state_dir, gone, work / "logs", stopped=True)
            )


def _gone_unreported(state_dir: Path, states: dict[int, dict[str, Any]]) -> list[int]:
    """Ranks whose process (the pid each reported) no longer exists and that never said
    "finished". A rank writes "finished" before it exits, so its state, read again once
    its process is gone, is its last one."""
    gone = []
    for r, state in states.items():
        if state.get("state") == "finished" or _alive(state.get("pid")):
            continue
        if (_state(state_dir, r) or {}).get("state") != "finished":
            gone.append(r)
    return gone


def _alive(pid: Any) -> bool:
    """Whether process ``pid`` exists (torchrun reaps a rank that exited within its
    monitor interval, so a rank's pid is gone soon after it exits)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, TypeError, ValueError, OverflowError):
        return True  # another user's process (pid reused), or no pid: not known gone
    return True


def _torchrun_saw_failure(log_path: Path) -> bool:
    """Whether torchrun logged a rank's failure: then it stops the ranks and exits itself,
    with its summary naming the rank (``_exit_message``)."""
    try:
        return _TORCHRUN_SAW_FAILURE in log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


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
