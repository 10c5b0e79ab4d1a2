"""pytest hooks and fixtures: where pytest meets pytest-llmperf.

Loaded through the ``pytest11`` entry point, so it must stay cheap to import:
nothing here imports torch, numpy or scipy at module level. The run's state is
one ``LLMPerfSession`` (``session.py``), registered as a plugin in
``pytest_configure``; the per-test work is the ``llmperf`` fixture
(``fixture.py``) and the verdict turned into the test's outcome in
``pytest_runtest_makereport``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .config import OPTIONS, Policy, RunOptions, flag, marker_help
from .marks import MARKER_ERROR, is_perf_test, marker_error, unmeasured_why
from .measure.distributed import STATE_DIR_ENV as RANK_STATE_DIR_ENV
from .results import Status, TestResult
from .session import LLMPerfSession

SKIP_REASON = (
    f"performance test, skipped by {flag('skip')} (llmperf_skip): measure it with "
    f"`pytest {flag('')}`, or drop the option to run its body once"
)

SESSION = pytest.StashKey[LLMPerfSession]()
PERF = pytest.StashKey[Any]()
POLICY = pytest.StashKey[Policy]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmperf", "LLM performance regression testing (pytest-llmperf)")
    for option in OPTIONS:
        group.addoption(
            option.flag, dest=option.dest, default=None, help=option.help, **option.argparse
        )
        parser.addini(
            option.dest, option.help.replace("%%", "%"), type=option.ini_type, default=None
        )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", marker_help())
    try:
        options = RunOptions.from_pytest_config(config)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    session = LLMPerfSession(config, options)
    config.stash[SESSION] = session
    config.pluginmanager.register(session, "llmperf-session")
    if os.environ.get(RANK_STATE_DIR_ENV):  # a rank that llmperf.torchrun launched
        from .torchrun import register_in_rank

        register_in_rank(config)
    if options.compare:
        _start_comparing(config, session)
    if options.history:
        _start_history(config, session)


def _start_history(config: pytest.Config, session: LLMPerfSession) -> None:
    """The run appended to ``--llmperf-history`` (a relative DIR is under the rootdir), and
    its gate (``history.recorder``)."""
    from pathlib import Path

    from .history.recorder import HistoryRecorder

    options = session.options
    directory = Path(options.history)
    if not directory.is_absolute():
        directory = session.rootdir / directory
    recorder = HistoryRecorder(session, directory, options.history_gate, options.history_window)
    session.history = recorder
    config.pluginmanager.register(recorder, "llmperf-history")


def _start_comparing(config: pytest.Config, session: LLMPerfSession) -> None:
    """The reference worktree (made once: xdist workers get it from the environment) and
    the controller that runs each performance test in both trees."""
    from . import compare
    from .compare.controller import CompareController
    from .compare.worktree import TREE_ENV, CompareError, check_out, from_environment

    if compare.in_worker:
        return
    try:
        # An xdist worker uses its controller's; any other process makes its own (a value
        # left in the environment by another run is not this run's).
        tree = from_environment() if os.environ.get("PYTEST_XDIST_WORKER") else None
        owner = tree is None
        if tree is None:
            tree = check_out(session.options.compare, config.rootpath)
    except CompareError as exc:
        raise pytest.UsageError(str(exc)) from None
    os.environ[TREE_ENV] = tree.to_environment()
    session.compare = CompareController(config, session, tree, owner)
    config.pluginmanager.register(session.compare, "llmperf-compare")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each performance test's policy, read once; without ``--llmperf`` and with
    ``--llmperf-skip`` they are skipped (without either, each runs once, unmeasured).

    A bad marker is that test's error (raised in ``pytest_runtest_setup``), not a usage
    error: pytest treats a test's own mistakes that way, and one typo must not stop the
    other tests. Such a test is not skipped without ``--llmperf`` either, so the mistake
    is seen on every run, not first in the CI job that measures."""
    session = config.stash[SESSION]
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if not is_perf_test(item):
            continue
        try:
            item.stash[POLICY] = session.policy_for(item)
        except Exception as exc:  # OverflowError, TypeError...: a value's, not the run's
            item.stash[MARKER_ERROR] = marker_error(item, exc)
            continue
        if not session.options.enabled and session.options.skip:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Under pytest-xdist a measured performance test holds its device's lock from set-up
    to teardown: another worker's model build or compile on the same device would run
    during its timed rounds (``measure.device.exclusive_device``)."""
    session = item.config.stash[SESSION]
    if not (os.environ.get("PYTEST_XDIST_WORKER") and session.options.enabled):
        return (yield)
    if not is_perf_test(item):
        return (yield)
    from .measure.device import exclusive_device

    with exclusive_device(session.device):
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test whose marker cannot be used errors here, before its fixtures are set up."""
    error = item.stash.get(MARKER_ERROR, None)
    if error is not None:
        pytest.fail(error, pytrace=False)


@pytest.fixture
def llmperf(request: pytest.FixtureRequest) -> Any:
    """Measure a callable and gate its metrics against the device's baseline."""
    session = request.config.stash[SESSION]
    if not session.options.enabled and session.options.skip:
        pytest.skip(SKIP_REASON)
    from .fixture import LLMPerf

    node = request.node
    policy = node.stash.get(POLICY, None)
    if policy is None:  # requested with getfixturevalue: not seen at collection
        try:
            policy = session.policy_for(node)
        except Exception as exc:
            pytest.fail(marker_error(node, exc), pytrace=False)
    result = TestResult(nodeid=node.nodeid, tier=session.tier, group=policy.group)
    if not session.options.enabled:
        # No --llmperf: the body runs once, unmeasured, so the test still checks the code
        # it measures; nothing is judged, written or reported for it.
        session.ran_once.append(node.nodeid)
        return LLMPerf(result, policy, session.device, session.tier, once=True)
    perf = LLMPerf(result, policy, session.device, session.tier, session.judge_for(result))
    perf.config = request.config
    node.stash[PERF] = perf
    return perf


@pytest.fixture
def llmperf_tier(request: pytest.FixtureRequest) -> str:
    """The scenario size of this run: smoke, standard or full."""
    return request.config.stash[SESSION].tier


@pytest.fixture
def llmperf_device(request: pytest.FixtureRequest) -> Any:
    """The torch device performance tests measure on."""
    return request.config.stash[SESSION].device


@pytest.fixture
def device_timer(request: pytest.FixtureRequest) -> Any:
    """``with device_timer() as t: ...`` then ``t.elapsed``: device-synchronized seconds."""
    from .measure.timing import BlockTimer

    device = request.config.stash[SESSION].device
    return lambda: BlockTimer(device)


@pytest.fixture
def peak_memory(request: pytest.FixtureRequest) -> Any:
    """``with peak_memory() as pm: ...`` then ``pm.peak`` (bytes) for the block."""
    from .measure.memory import BlockPeak

    device = request.config.stash[SESSION].device
    return lambda: BlockPeak(device)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when != "call" or not is_perf_test(item):
        return report
    session = item.config.stash[SESSION]
    perf = item.stash.get(PERF, None)
    if perf is None:
        if session.options.enabled:
            session.measured_nothing(item, report, unmeasured_why(item))
        return report
    try:
        if call.excinfo is not None or perf.result.metrics or perf.result.status is not Status.OK:
            session.conclude(item, call, report, perf)
        else:
            session.measured_nothing(item, report, unmeasured_why(item))
    finally:
        # Items live for the whole session: drop the measured callables (and the
        # models they hold) now, so the next test has the memory.
        perf.release()
        del item.stash[PERF]
    return report
