"""pytest hooks: options, the marker, fixtures, verdicts as test failures, baseline writes.

Loaded through the ``pytest11`` entry point, so it must stay cheap to import:
nothing here imports torch, numpy or scipy at module level.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .baselines import BaselineError, BaselineFile
from .options import TIERS, Policy, RunOptions, convert_keywords, parse_count
from .results import STATUS_OK, STATUS_OOM, TestResult

SKIP_REASON = "performance test: run it with `pytest --llmperf`"
FAILING_VERDICTS = {"regression"}
STRICT_FAILING_VERDICTS = {"regression", "no-baseline", "inconclusive"}

# (option suffix, ini type, help, argparse extras)
_OPTIONS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("", "bool", "run performance tests (skipped without it)", {"action": "store_true"}),
    (
        "update-baselines",
        "bool",
        "measure and write results into the baseline files (merging)",
        {"action": "store_true"},
    ),
    (
        "baselines",
        "string",
        "directory of baseline files (default: baselines/ under the rootdir)",
        {"metavar": "DIR"},
    ),
    (
        "tier",
        "string",
        "size of the shipped scenarios: smoke, standard, full "
        "(default: smoke on CPU, standard on an accelerator)",
        {"metavar": "TIER"},
    ),
    ("report", "string", "write a report (.md, .json or .html)", {"metavar": "PATH"}),
    (
        "benchmark-json",
        "string",
        "write results in pytest-benchmark's JSON schema",
        {"metavar": "PATH"},
    ),
    ("bmf", "string", "write results in Bencher's metric format (BMF JSON)", {"metavar": "PATH"}),
    (
        "strict",
        "bool",
        "fail tests with no baseline or an inconclusive verdict",
        {"action": "store_true"},
    ),
    (
        "warmup",
        "string",
        "default warm-up: a count or 'auto' (until timings settle)",
        {"metavar": "N|auto"},
    ),
    (
        "rounds",
        "string",
        "default measured rounds: a count or 'auto' (adaptive)",
        {"metavar": "N|auto"},
    ),
    ("max-time", "string", "time budget in seconds for adaptive rounds per test", {"metavar": "S"}),
    (
        "tolerance",
        "string",
        "default tolerances, e.g. 10%% or time=20%%,memory=2%%",
        {"metavar": "SPEC"},
    ),
    (
        "pool",
        "string",
        "on update, pool this many runs per baseline entry (default 1)",
        {"metavar": "N"},
    ),
    (
        "profile-on-failure",
        "bool",
        "re-run a regressed test once under the profiler and name the trace in the failure",
        {"action": "store_true"},
    ),
    (
        "device",
        "string",
        "measure on this torch device (default: the accelerator, else cpu)",
        {"metavar": "DEV"},
    ),
    (
        "threads",
        "string",
        "torch intra-op threads when measuring on the CPU (default: torch's choice); "
        "1 keeps timings stable on shared runners",
        {"metavar": "N"},
    ),
]


def _dest(suffix: str) -> str:
    return "llmperf" + ("_" + suffix.replace("-", "_") if suffix else "")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmperf", "LLM performance regression testing (pytest-llmperf)")
    for suffix, ini_type, help_text, extra in _OPTIONS:
        flag = "--llmperf" + (f"-{suffix}" if suffix else "")
        group.addoption(flag, dest=_dest(suffix), default=None, help=help_text, **extra)
        parser.addini(_dest(suffix), help_text.replace("%%", "%"), type=ini_type, default=None)


def _get(config: pytest.Config, suffix: str) -> tuple[Any, str]:
    """An option's value and how to name it in an error: CLI first, then its ini twin."""
    dest = _dest(suffix)
    value = config.getoption(dest)
    if value not in (None, False):
        return value, "--llmperf" + (f"-{suffix}" if suffix else "")
    ini = config.getini(dest)
    return (ini if ini not in ("", None) else None), f"ini option {dest}"


def read_options(config: pytest.Config) -> RunOptions:
    """Options from CLI/ini; a bad value raises ValueError naming the option."""
    opts: dict[str, Any] = {}
    for suffix in ("", "update-baselines", "strict", "profile-on-failure"):
        value, _ = _get(config, suffix)
        opts[_dest(suffix).removeprefix("llmperf_") if suffix else "enabled"] = bool(value)
    opts["update"] = opts.pop("update_baselines")
    if opts["update"]:
        opts["enabled"] = True
    tier, name = _get(config, "tier")
    if tier is not None and tier not in (*TIERS, "auto"):
        raise ValueError(f"{name}: unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    opts["tier"] = tier or "auto"
    base, _ = _get(config, "baselines")
    opts["baselines_dir"] = base or "baselines"
    for suffix, key in (("report", "report"), ("benchmark-json", "benchmark_json"), ("bmf", "bmf")):
        opts[key] = _get(config, suffix)[0]
    report, name = _get(config, "report")
    if report and Path(report).suffix not in (".md", ".json", ".html"):
        raise ValueError(f"{name}: {report!r} must end in .md, .json or .html")
    pool, name = _get(config, "pool")
    opts["pool"] = int(parse_count(pool, name, allow_auto=False, minimum=1)) if pool else 1
    threads, name = _get(config, "threads")
    opts["threads"] = (
        int(parse_count(threads, name, allow_auto=False, minimum=1)) if threads else None
    )
    marker_like: dict[str, Any] = {}
    for suffix, key in (
        ("warmup", "warmup"),
        ("rounds", "rounds"),
        ("max-time", "max_time"),
        ("tolerance", "tolerance"),
    ):
        value, name = _get(config, suffix)
        if value is not None:
            marker_like[key] = value
            convert_keywords({key: value}, Policy(), name)  # validates, naming the option
    policy = replace(Policy(), **convert_keywords(marker_like, Policy(), "llmperf options"))
    opts["policy"] = policy
    return RunOptions(**opts)


class LLMPerfState:
    """Per-session state: options, the device, its baseline file and the collected results."""

    def __init__(self, config: pytest.Config, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.results: list[TestResult] = []
        self._device: Any = None
        self._baseline: BaselineFile | None = None
        self._baseline_loaded = False
        self.started = time.time()

    # Device and tier are resolved lazily: they import torch.
    @property
    def device(self) -> Any:
        if self._device is None:
            from .device import current_device

            dev_opt, _ = _get(self.config, "device")
            if dev_opt:
                os.environ["LLMPERF_DEVICE"] = dev_opt
            dev = current_device()
            self._device = _worker_device(dev)
            if dev.type == "cpu" and self.options.threads:
                import torch

                torch.set_num_threads(self.options.threads)
        return self._device

    @property
    def tier(self) -> str:
        if self.options.tier != "auto":
            return self.options.tier
        return "smoke" if self.device.type == "cpu" else "standard"

    @property
    def device_info(self) -> dict[str, Any]:
        from .device import device_key, device_name

        return {"key": device_key(self.device), "name": device_name(self.device)}

    @property
    def fingerprint(self) -> dict[str, Any]:
        from .device import fingerprint

        return fingerprint(self.device)

    @property
    def baseline_path(self) -> Path:
        root = Path(str(self.config.rootpath))
        directory = Path(self.options.baselines_dir)
        if not directory.is_absolute():
            directory = root / directory
        return directory / f"{self.device_info['key']}.json"

    @property
    def baseline(self) -> BaselineFile | None:
        if not self._baseline_loaded:
            from .baselines import load

            self._baseline = load(self.baseline_path, self.device_info["key"])
            self._baseline_loaded = True
        return self._baseline

    def policy_for(self, item: pytest.Item) -> Policy:
        policy = self.options.policy
        for marker in reversed(list(item.iter_markers("llmperf"))):
            if marker.args:
                raise ValueError(
                    f"{item.nodeid}: @pytest.mark.llmperf takes keywords only, got {marker.args!r}"
                )
            policy = policy.with_marker(marker.kwargs, item.nodeid)
        if self.options.strict:
            policy = replace(policy, strict=True)
        return policy

    def session_info(self) -> dict[str, Any]:
        return {
            "device": self.device_info,
            "fingerprint": self.fingerprint,
            "tier": self.tier,
            "baseline_file": _relative(self.baseline_path, Path(str(self.config.rootpath))),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "duration_s": round(time.time() - self.started, 3),
        }


def _relative(path: Path, root: Path) -> str:
    """A path as reports show it: relative to the rootdir when it lies inside."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _worker_device(dev: Any) -> Any:
    """Under pytest-xdist with several accelerators, worker N takes device N mod count."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if dev.type == "cpu" or not worker.startswith("gw") or os.environ.get("LLMPERF_DEVICE"):
        return dev
    import torch

    count = torch.accelerator.device_count()
    if count > 1:
        idx = int(worker[2:]) % count
        torch.accelerator.set_device_index(idx)
        return torch.device(dev.type, idx)
    return dev


STATE = pytest.StashKey[LLMPerfState]()
PERF = pytest.StashKey[Any]()
POLICY = pytest.StashKey[Policy]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llmperf(**policy): a performance test; keywords warmup, rounds, min_rounds, "
        "max_rounds, max_time, tolerance, gate, items, flops, bytes, group, strict, "
        "drift_correction, remeasure",
    )
    try:
        options = read_options(config)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE] = LLMPerfState(config, options)
    _ACTIVE.append(config)


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash[STATE]
    if not state.options.enabled:
        return
    try:
        state.baseline  # noqa: B018 - a corrupt file stops the run before any measuring
    except BaselineError as exc:
        raise pytest.UsageError(str(exc)) from None


def _is_perf_test(item: pytest.Item) -> bool:
    return (
        "llmperf" in getattr(item, "fixturenames", ())
        or item.get_closest_marker("llmperf") is not None
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[STATE]
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if not _is_perf_test(item):
            continue
        try:
            item.stash[POLICY] = state.policy_for(item)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        if not state.options.enabled:
            item.add_marker(skip)


@pytest.fixture
def llmperf(request: pytest.FixtureRequest) -> Any:
    """Measure a callable and gate its metrics against the device's baseline."""
    state = request.config.stash[STATE]
    if not state.options.enabled:
        pytest.skip(SKIP_REASON)
    from .fixture import LLMPerf

    node = request.node
    policy = node.stash.get(POLICY, None) or state.policy_for(node)
    result = TestResult(nodeid=node.nodeid, tier=state.tier, group=policy.group)
    perf = LLMPerf(result, policy, state.device, state.tier)
    perf.unclear = _unclear_against_baseline(state, result)
    node.stash[PERF] = perf
    return perf


def _unclear_against_baseline(state: LLMPerfState, result: TestResult) -> Any:
    """What the fixture asks right after a measurement, while the test's objects are
    alive: which of its metrics are unclear against the baseline, to re-measure."""
    from . import distributed

    baseline = state.baseline
    entry = baseline.entry(result.nodeid, result.tier) if baseline else None
    # Under torch.distributed a re-measurement is a collective: ranks that decided
    # differently would wait on each other, so none re-measures.
    if state.options.update or entry is None or distributed.active():
        return None
    from .verdict import unclear_metrics

    return lambda names: unclear_metrics(result, entry, names)


@pytest.fixture
def llmperf_tier(request: pytest.FixtureRequest) -> str:
    """The scenario size of this run: smoke, standard or full."""
    return request.config.stash[STATE].tier


@pytest.fixture
def llmperf_device(request: pytest.FixtureRequest) -> Any:
    """The torch device performance tests measure on."""
    return request.config.stash[STATE].device


@pytest.fixture
def device_timer(request: pytest.FixtureRequest) -> Any:
    """``with device_timer() as t: ...`` then ``t.elapsed``: device-synchronized seconds."""
    from .timing import BlockTimer

    device = request.config.stash[STATE].device
    return lambda: BlockTimer(device)


@pytest.fixture
def peak_memory(request: pytest.FixtureRequest) -> Any:
    """``with peak_memory() as pm: ...`` then ``pm.peak`` (bytes) for the block."""
    from .memory import BlockPeak

    device = request.config.stash[STATE].device
    return lambda: BlockPeak(device)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when != "call":
        return report
    perf = item.stash.get(PERF, None)
    if perf is None:
        return report
    try:
        _verdict_into_report(item, call, report, perf)
    finally:
        # Items live for the whole session: drop the measured callables (and the
        # models they hold) now, so the next test has the memory.
        perf.release()
        del item.stash[PERF]
    return report


def _verdict_into_report(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, perf: Any
) -> None:
    state = item.config.stash[STATE]
    result: TestResult = perf.result
    result.duration_s = round(call.duration, 3)
    if call.excinfo is not None:
        from .device import is_oom
        from .fixture import OutOfMemoryResult

        if not (call.excinfo.errisinstance(OutOfMemoryResult) or is_oom(call.excinfo.value)):
            return  # the test failed on its own: no verdict
        if result.status != STATUS_OOM:
            result.status = STATUS_OOM
            result.notes.append(f"out of memory: {str(call.excinfo.value).splitlines()[0][:200]}")
        report.outcome = "passed"
        report.longrepr = None
        # pytest keeps the last error in sys.last_*; its frames would keep the
        # model that did not fit alive into the next test.
        for name in ("last_exc", "last_type", "last_value", "last_traceback"):
            if hasattr(sys, name):
                setattr(sys, name, None)
    if report.outcome == "skipped" or (not result.metrics and result.status == STATUS_OK):
        return  # nothing was measured: nothing to judge or store
    _judge(state, perf, result)
    failing = STRICT_FAILING_VERDICTS if perf.policy.strict else FAILING_VERDICTS
    if result.verdict in failing and not state.options.update:
        lines = [f"llmperf: {result.verdict} in {result.nodeid} on {state.device_info['name']}"]
        lines += ["  " + line for line in result.verdict_lines]
        lines += ["  note: " + n for n in result.notes]
        if state.options.profile_on_failure:
            lines.append("  " + _profile(state, perf, result))
        report.outcome = "failed"
        report.longrepr = "\n".join(lines)
    # JSON-safe: xdist (execnet) cannot send params such as a torch.dtype to the controller.
    report.llmperf = json.loads(json.dumps(result.to_dict(), default=str))  # type: ignore[attr-defined]
    from .exporters import junit_properties

    # junitxml writes the properties of the teardown report, copied from the item.
    item.user_properties.extend(junit_properties(result))


def _judge(state: LLMPerfState, perf: Any, result: TestResult) -> None:
    from .verdict import judge

    if state.options.update:
        result.verdict = "recorded"
        result.verdict_lines = [f"recorded into {state.baseline_path}"]
        return
    baseline = state.baseline
    entry = baseline.entry(result.nodeid, result.tier) if baseline else None
    where = f"{state.baseline_path} (device {state.device_info['key']}, tier {result.tier})"
    judge(
        result,
        entry,
        where=where,
        baseline_fingerprint=baseline.fingerprint if baseline else None,
        current_fingerprint=state.fingerprint,
    )


def _profile(state: LLMPerfState, perf: Any, result: TestResult) -> str:
    memory = any(
        "memory" in line and line.startswith("REGRESSION") for line in result.verdict_lines
    )
    try:
        path = perf.profile(Path(str(state.config.rootpath)) / ".llmperf-traces", memory=memory)
    except Exception as exc:  # diagnosis must never hide the verdict
        return f"profiling failed: {exc}"
    kind = "memory snapshot" if path and path.suffix == ".pickle" else "profiler trace"
    return f"{kind}: {path}" if path else "nothing to profile (no measured callable)"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collects results here on the controller, also when they come from xdist workers."""
    data = getattr(report, "llmperf", None)
    if data and report.when == "call" and _ACTIVE:
        _ACTIVE[-1].stash[STATE].results.append(TestResult.from_dict(data))


#: The configs of the sessions running in this process (pytester nests them).
_ACTIVE: list[pytest.Config] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    if config in _ACTIVE:
        _ACTIVE.remove(config)


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def _is_rank_zero() -> bool:
    from . import distributed

    return distributed.rank() == 0


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash[STATE]
    if not state.options.enabled or not _is_controller(config) or not _is_rank_zero():
        return
    state.finish_messages = []  # type: ignore[attr-defined]
    msgs: list[str] = state.finish_messages  # type: ignore[attr-defined]
    if state.options.update:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            msgs.append(f"interrupted: {state.baseline_path} left unchanged")
        elif state.results:
            from .baselines import write

            try:
                n = write(
                    state.baseline_path,
                    device=state.device_info,
                    fingerprint=state.fingerprint,
                    results=[r for r in state.results if r.status in (STATUS_OK, STATUS_OOM)],
                    pool=state.options.pool,
                )
                msgs.append(f"wrote {n} entr{'y' if n == 1 else 'ies'} into {state.baseline_path}")
            except (BaselineError, OSError) as exc:
                msgs.append(f"ERROR: {exc}")
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
    if state.results:
        _write_outputs(state, msgs)


def _write_outputs(state: LLMPerfState, msgs: list[str]) -> None:
    from . import exporters
    from .report import write_report

    info = state.session_info()
    outputs = [
        (state.options.report, lambda p: write_report(p, state.results, info)),
        (
            state.options.benchmark_json,
            lambda p: exporters.write_benchmark_json(p, state.results, info),
        ),
        (state.options.bmf, lambda p: exporters.write_bmf(p, state.results)),
    ]
    for path, writer in outputs:
        if path:
            try:
                writer(path)
                msgs.append(f"wrote {path}")
            except (OSError, ValueError) as exc:
                msgs.append(f"ERROR: could not write {path}: {exc}")
    if exporters.append_github_step_summary(state.results, info):
        msgs.append("appended the verdicts to $GITHUB_STEP_SUMMARY")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.options.enabled or not _is_controller(config):
        return
    tr = terminalreporter
    results = state.results
    if not results and not getattr(state, "finish_messages", None):
        return
    tr.section("llmperf")
    if results:
        tr.line(
            f"device {state.device_info['name']} ({state.device_info['key']}), tier {state.tier}, "
            f"baselines {state.baseline_path}"
        )
        counts: dict[str, int] = {}
        for r in results:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
            if r.verdict not in ("pass", "recorded") or r.notes or r.fingerprint_diff:
                tr.line(f"{r.verdict.upper():13} {r.nodeid}")
                for line in r.verdict_lines + [f"note: {n}" for n in r.notes]:
                    tr.line(f"    {line}")
        tr.line(", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    for m in getattr(state, "finish_messages", []):
        tr.line(m, red=m.startswith("ERROR"))
