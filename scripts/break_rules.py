"""Break each decision rule on purpose, one at a time, and show which unit test catches it.

A test that cannot fail guards nothing. For every rule below this script applies
one small edit that breaks the rule to a scratch copy of the package and the unit
tests, runs only the tests the rule names there (``-x -q -p no:cacheprovider``,
with a timeout), and reports the first test that failed. Honest by construction:

- an edit must match its file exactly once; one that matches nothing (the code
  moved on) or several times is an ERROR for that rule, and the others still run;
- what failed is read from pytest's own reports (a plugin in the run), never from
  its printed summary: a parametrized id with spaces once read as NOT CAUGHT;
- the code under test is the scratch copy's: the forked pytest and every Python it
  starts (``PYTHONPATH`` and a ``sitecustomize`` in the copy) log each plugin file
  they read, and one read from anywhere else (the editable install's checkout)
  makes the rule an ERROR, never a NOT CAUGHT or a catch;
- a catching test must pass on the unbroken copy (a control run per test file at
  the end), or it would "catch" anything: if not, the rule is an ERROR;
- every process a rule's run leaves behind (a hung rank in its own session) is
  killed before the next run, and rules that share a test file never run at once.

Each rule's pytest is forked from this process after torch, numpy and scipy are
imported (never ``pytest_llmperf``), so a rule costs its tests, not a torch import;
``--jobs`` rules run at once, each on its own copy. Exit status 0 only when every
rule was caught.

    python scripts/break_rules.py                 # every rule, about 4 minutes on 2 shared cores
    python scripts/break_rules.py pooling         # the rules whose name contains "pooling"
    python scripts/break_rules.py --list          # each rule and the tests guarding it
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Copied into the scratch directory; nothing else of the repository is used.
COPIED = ("pytest_llmperf", "tests", "baselines", "docs", "pyproject.toml")
#: Imported once here, before forking (what ``tests/unit/conftest.py`` imports).
PRELOAD = ("numpy", "scipy.stats", "torch", "torch._dynamo", "pytest")
#: ``-m ""``: a rule names its catching tests, the multiprocess ones too (addopts leave them out).
PYTEST_ARGS = ("-q", "-p", "no:cacheprovider", "-m", "")
ENV_SCRATCH = "BREAK_RULES_SCRATCH"
IMPORTS_LOG = ".imports.log"

#: Any Python started with ``PYTHONPATH=<scratch>`` runs this first (and the forked pytest
#: runs it too): an audit hook logs each process's first plugin file read from the scratch
#: copy and every one read from anywhere else, whichever finder or path led there, at the
#: read, so a process that is killed or ``os._exit``\s is logged too.
SITECUSTOMIZE = """
import os
import sys

_SCRATCH = os.environ.get("BREAK_RULES_SCRATCH", "")
_seen = []


def _log(line):
    with open(os.path.join(_SCRATCH, ".imports.log"), "a") as f:
        f.write(f"{os.getpid()} {line}\\n")


def _hook(event, args):
    if event != "open" or _seen[:1] == [None] or not isinstance(args[0], str):
        return
    if "pytest_llmperf" not in args[0] or not args[0].endswith((".py", ".pyc")):
        return
    path = os.path.realpath(args[0])
    inside = path.startswith(_SCRATCH + os.sep)
    if inside and _seen:
        return
    _seen.insert(0, None)  # the log's own open is not a plugin file: no recursion
    try:
        _log(path)
    finally:
        _seen.pop(0)
    if inside:
        _seen.append(path)


if _SCRATCH:
    sys.addaudithook(_hook)
"""


@dataclass(frozen=True)
class Break:
    rule: str
    path: str
    old: str
    new: str
    #: The test files (or node ids) that must catch the break.
    tests: tuple[str, ...]


BREAKS = [
    Break(
        "raw and drift-corrected must agree (corrected ignored)",
        "pytest_llmperf/judge/decision.py",
        "    raw.drift_corrected_change = corrected.drift_corrected_change\n",
        "    return raw\n",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "tolerance before significance (significance alone decides)",
        "pytest_llmperf/judge/decision.py",
        "    if ratio > factor:\n        if not use_samples:",
        "    if ratio > 1.0:\n        if not use_samples:",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "unclear past the tolerance is inconclusive, not a pass",
        "pytest_llmperf/judge/decision.py",
        "d.outcome = Verdict.REGRESSION if d.p_value < ALPHA else Verdict.INCONCLUSIVE",
        "d.outcome = Verdict.REGRESSION if d.p_value < ALPHA else Verdict.PASS",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "too few rounds are never failed on values",
        "pytest_llmperf/judge/decision.py",
        "too_few = not use_samples and (len(bs) > 1 or len(cs) > 1)",
        "too_few = False",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "memory slack (changes under 4 MiB never regress)",
        "pytest_llmperf/judge/verdict.py",
        '"abs_slack": MEMORY_ABS_SLACK if metric.kind is Kind.MEMORY',
        '"abs_slack": 0.0 if metric.kind is Kind.MEMORY',
        ("tests/unit/test_verdict.py",),
    ),
    Break(
        "pooled runs' spread widens the tolerance",
        "pytest_llmperf/judge/decision.py",
        "    if noise_floor > tolerance:\n",
        "    if False:\n",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "status ok -> oom is a regression",
        "pytest_llmperf/judge/verdict.py",
        'return Verdict.REGRESSION, [f"status: baseline {base}, current {result.status}"]',
        'return Verdict.PASS, [f"status: baseline {base}, current {result.status}"]',
        ("tests/unit/test_verdict.py",),
    ),
    Break(
        "the worst metric decides the verdict",
        "pytest_llmperf/judge/verdict.py",
        "_WORST_FIRST = (Verdict.REGRESSION, Verdict.INCONCLUSIVE, Verdict.IMPROVED)",
        "_WORST_FIRST = (Verdict.IMPROVED, Verdict.REGRESSION, Verdict.INCONCLUSIVE)",
        ("tests/unit/test_verdict.py",),
    ),
    Break(
        "unclear metrics are re-measured while the test runs",
        "pytest_llmperf/fixture.py",
        "        for _ in range(policy.remeasure):\n",
        "        for _ in range(0):\n",
        ("tests/unit/test_verdict.py",),
    ),
    Break(
        "strict fails no-baseline and inconclusive",
        "pytest_llmperf/judge/outcome.py",
        "strict and self in (Verdict.NO_BASELINE, Verdict.INCONCLUSIVE)",
        "strict and self in (Verdict.NO_BASELINE,)",
        ("tests/unit/test_verdict.py",),
    ),
    Break(
        "baseline pooling (--llmperf-pool)",
        "pytest_llmperf/baselines/entries.py",
        "    if previous is not None and pool > 1:\n",
        "    if False:\n",
        ("tests/unit/test_baselines.py",),
    ),
    Break(
        "pooling never mixes tiers",
        "pytest_llmperf/baselines/entries.py",
        'same = previous is not None and previous.get("tier") == result.tier',
        "same = previous is not None",
        ("tests/unit/test_baselines.py",),
    ),
    Break(
        "a refresh of a subset keeps the other entries",
        "pytest_llmperf/baselines/writing.py",
        "        tests = dict(existing.tests) if existing else {}\n",
        "        tests = {}\n",
        ("tests/unit/test_baselines.py",),
    ),
    Break(
        "another tier's entry does not count",
        "pytest_llmperf/baselines/schema.py",
        'if e is None or (tier and e.get("tier", tier) != tier):',
        "if e is None:",
        ("tests/unit/test_baselines.py",),
    ),
    Break(
        "a foreign device's file is refused",
        "pytest_llmperf/baselines/reading.py",
        'if device_key is not None and device.get("key") != device_key:',
        "if False:",
        ("tests/unit/test_baselines.py",),
    ),
    Break(
        "malformed metrics are refused on load",
        "pytest_llmperf/baselines/checks.py",
        '    if not _is_number(m.get("value")):\n',
        "    if False:\n",
        ("tests/unit/test_baselines.py",),
    ),
    Break(
        "unknown marker keywords are an error",
        "pytest_llmperf/config/policy.py",
        "        if unknown:\n",
        "        if False:\n",
        ("tests/unit/test_config.py",),
    ),
    Break(
        "rounds must be at least 1",
        "pytest_llmperf/config/policy.py",
        "_keyword(_count(1, True, MAX_ROUNDS))",
        "_keyword(_count(0, True, MAX_ROUNDS))",
        ("tests/unit/test_config.py",),
    ),
    Break(
        "a marker's tolerances merge with the run's",
        "pytest_llmperf/config/policy.py",
        "            parsed = {**self.tolerances, **parsed}\n",
        "            pass\n",
        ("tests/unit/test_config.py",),
    ),
    Break(
        "adaptive rounds never stop before MIN_STOP_ROUNDS",
        "pytest_llmperf/measure/timing.py",
        "precise = n >= max(min_rounds, MIN_STOP_ROUNDS) and (",
        "precise = n >= min_rounds and (",
        ("tests/unit/test_rounds.py",),
    ),
    Break(
        "adaptive rounds never pass max_rounds",
        "pytest_llmperf/measure/timing.py",
        "min(max(batch, n // 2, 1), max_rounds - n,",
        "min(max(batch, n // 2, 1),",
        ("tests/unit/test_rounds.py",),
    ),
    Break(
        "adaptive rounds stop at the time budget",
        "pytest_llmperf/measure/timing.py",
        "if n >= max_rounds or elapsed >= max_time or precise:",
        "if n >= max_rounds or precise:",
        ("tests/unit/test_rounds.py",),
    ),
    Break(
        "work is exact (a bare tolerance loosens it)",
        "pytest_llmperf/config/tolerances.py",
        "return {kind: tol for kind in MEASURED_KINDS}",
        "return {kind: tol for kind in DEFAULT_TOLERANCES}",
        ("tests/unit/test_config.py",),
    ),
    Break(
        "a count is decided on its value, not on pooled samples",
        "pytest_llmperf/judge/verdict.py",
        "    if metric.kind is Kind.WORK:  # a count is exact: its value decides, not samples\n"
        "        return decide(metric.name, **common)\n",
        "",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "syncs through tensor methods are counted (.tolist() on the CPU)",
        "pytest_llmperf/measure/counters.py",
        '            sig.syncs[f"Tensor.{name}"] += 1\n',
        "",
        ("tests/unit/test_work.py",),
    ),
    Break(
        "an in-place write is not an allocation",
        "pytest_llmperf/measure/counters.py",
        "if key[1] not in seen:",
        "if True:",
        ("tests/unit/test_work.py",),
    ),
    Break(
        "views move no data",
        "pytest_llmperf/measure/counters.py",
        "if func.is_view or name in _ALIASING:",
        "if False:",
        ("tests/unit/test_work.py",),
    ),
    Break(
        "another torch reports work changes, never fails on them",
        "pytest_llmperf/judge/verdict.py",
        "                d.outcome = Verdict.PASS\n",
        "                pass\n",
        ("tests/unit/test_work.py",),
    ),
    Break(
        "a paired regression needs its interval past the tolerance, not only its median",
        "pytest_llmperf/judge/decision.py",
        "d.outcome = Verdict.REGRESSION if lo > factor else Verdict.INCONCLUSIVE",
        "d.outcome = Verdict.REGRESSION",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "the median's interval is the sign test's order statistics at ALPHA",
        "pytest_llmperf/judge/decision.py",
        "while k < n and binom.cdf(k, n, 0.5) <= alpha:",
        "while k < n and binom.cdf(k, n, 0.5) <= 0.5:",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "a paired throughput ratio is shown in its own terms",
        "pytest_llmperf/judge/decision.py",
        "d.ratio, d.ci = (1 / mid, (1 / hi, 1 / lo)) if higher_is_better else (mid, (lo, hi))",
        "d.ratio, d.ci = mid, (lo, hi)",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "pooled single-value metrics (memory) are decided on values, not as rounds",
        "pytest_llmperf/judge/verdict.py",
        "    if not metric.samples:\n",
        "    if False:\n",
        ("tests/unit/test_verdict.py",),
    ),
    Break(
        "a gate blind to its tolerance fails under strict",
        "pytest_llmperf/judge/verdict.py",
        "    if strict:\n        result.verdict = Verdict.INCONCLUSIVE",
        "    if False:\n        result.verdict = Verdict.INCONCLUSIVE",
        ("tests/unit/test_verdict.py",),
    ),
    Break(
        "the detectable change is floored by the baseline's run spread",
        "pytest_llmperf/judge/detectable.py",
        "    return max(_Z * se, run_spread)",
        "    return _Z * se",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "a compare worker that ran the other tree's code makes the test an error",
        "pytest_llmperf/compare/provenance.py",
        "        if not self.trees.foreign(file):\n            return False\n",
        "        if True:\n            return False\n",
        (
            "tests/unit/test_compare_invariants.py",
            "tests/unit/test_compare_layouts.py::"
            "test_a_module_loaded_from_the_working_tree_by_the_reference_is_an_error",
        ),
    ),
    Break(
        "the compare reference moves import paths and hooks into its own tree",
        "pytest_llmperf/compare/provenance.py",
        "    sys.meta_path.insert(0, redirect)\n",
        "",
        ("tests/unit/test_compare_invariants.py",),
    ),
    Break(
        "the compare reference checks submodules out at REF's commits",
        "pytest_llmperf/compare/worktree.py",
        "        _check_out_submodules(top, tree.path, sha, tree.subs)\n",
        "        pass\n",
        ("tests/unit/test_compare_layouts.py::test_each_layout_measures_refs_own_code",),
    ),
    Break(
        "the compare reference gets the run's paths moved into its worktree",
        "pytest_llmperf/compare/arguments.py",
        "        out.append(_moved_value(token, here, tree, relative))\n",
        "        out.append(token)\n",
        ("tests/unit/test_compare_invariants.py",),
    ),
    Break(
        "compare workers keep their own pytest cache (--lf sees the run's failures)",
        "pytest_llmperf/compare/arguments.py",
        '    return args if _cache_off(args) else [*args, "-o", f"cache_dir={cache}"]\n',
        "    return args\n",
        (
            "tests/unit/test_compare_layouts.py::test_the_last_failed_cache_records_the_runs_failures",
        ),
    ),
    Break(
        "compare pairs each candidate batch with its own pair's reference batch",
        "pytest_llmperf/compare/pairing.py",
        "self.ratios.append(c / r if r > 0 else math.inf)",
        'self.ratios.append(c / self.__dict__.setdefault("_first", r))',
        ("tests/unit/test_compare_pairing.py",),
    ),
    Break(
        "compare takes the minimum pairs even when the time budget is spent",
        "pytest_llmperf/compare/pairing.py",
        "        if spent and len(pairs.ratios) >= MIN_PAIRS:",
        "        if spent:",
        ("tests/unit/test_compare_pairing.py",),
    ),
    Break(
        "a compare run removes the worktrees killed runs left behind",
        "pytest_llmperf/compare/worktree.py",
        "    prune_left_behind(top)\n    parent",
        "    parent",
        ("tests/unit/test_compare_invariants.py",),
    ),
    Break(
        "the run's --llmperf-gate narrows what decides",
        "pytest_llmperf/config/policy.py",
        "if self.run_gate is not None and not set(metric_keys(name, kind)) & set(self.run_gate):",
        "if False:",
        ("tests/unit/test_work.py",),
    ),
    Break(
        "a non-finite number in a baseline is refused",
        "pytest_llmperf/baselines/checks.py",
        "        return math.isfinite(x)\n    except OverflowError:",
        "        return True\n    except OverflowError:",
        ("tests/unit/test_baseline_files.py",),
    ),
    Break(
        "a refresh writes through a symlinked baseline",
        "pytest_llmperf/baselines/writing.py",
        "    target = Path(os.path.realpath(path))\n",
        "    target = path\n",
        ("tests/unit/test_baseline_files.py",),
    ),
    Break(
        "a read-only baseline is left untouched",
        "pytest_llmperf/baselines/writing.py",
        "        _refuse_read_only(path, target)\n",
        "",
        ("tests/unit/test_baseline_files.py",),
    ),
    Break(
        "a killed write's temporary is removed by the next write",
        "pytest_llmperf/baselines/writing.py",
        "            _remove_stale_temporaries(target)\n",
        "            pass\n",
        ("tests/unit/test_baseline_files.py",),
    ),
    Break(
        "a report that cannot be written fails the run",
        "pytest_llmperf/session.py",
        '{failure_reason(exc)}")\n                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR',
        '{failure_reason(exc)}")',
        ("tests/unit/test_output_faults.py",),
    ),
    Break(
        "markup in test ids is escaped in Markdown",
        "pytest_llmperf/output/markdown.py",
        '"<": "&lt;", ">": "&gt;"',
        '"<": "<", ">": ">"',
        ("tests/unit/test_output_faults.py",),
    ),
    Break(
        "trace names are unique per test id",
        "pytest_llmperf/measure/profile.py",
        '    return f"{safe}-{digest}" if safe else digest',
        "    return safe",
        ("tests/unit/test_output_faults.py",),
    ),
    Break(
        "marker counts have an upper bound",
        "pytest_llmperf/config/values.py",
        "    if n > maximum:",
        "    if False:",
        ("tests/unit/test_bad_input.py",),
    ),
    Break(
        "record() refuses a name the test already has",
        "pytest_llmperf/fixture.py",
        "            if metric.name in self.result.metrics and (",
        "            if False and (",
        ("tests/unit/test_bad_input.py",),
    ),
    Break(
        "a marker's gate or tolerance name must match a metric",
        "pytest_llmperf/session.py",
        "    if typo:  # a typo in gate= or a tolerance key",
        "    if False:  # a typo in gate= or a tolerance key",
        ("tests/unit/test_bad_input.py",),
    ),
    Break(
        "a bare MemoryError() is status oom, not an internal error",
        "pytest_llmperf/measure/oom.py",
        "    return text.splitlines()[0][:200] if text else type(exc).__name__",
        "    return str(exc).splitlines()[0][:200]",
        ("tests/unit/test_faults.py",),
    ),
    Break(
        "a performance test that measures nothing is said, and strict fails it",
        "pytest_llmperf/session.py",
        '        if report.outcome != "passed" or compare.in_worker:\n            return\n'
        "        report.llmperf_unmeasured",
        "        if True:\n            return\n        report.llmperf_unmeasured",
        ("tests/unit/test_faults.py",),
    ),
    Break(
        "a baseline with too few rounds is not judged, not re-measured",
        "pytest_llmperf/judge/decision.py",
        "    if too_few and len(bs) < MIN_SAMPLES:",
        "    if False:",
        ("tests/unit/test_faults.py", "tests/unit/test_decision.py", "tests/unit/test_verdict.py"),
    ),
    Break(
        "ranks run rank 0's count of calls (no broadcast)",
        "pytest_llmperf/measure/distributed.py",
        "    dist.broadcast(t, src=0)\n",
        "",
        ("tests/unit/test_torchrun_launch.py::test_ranks_launched_from_an_ordinary_session",),
    ),
    Break(
        "a hung rank is told from the ranks waiting for it",
        "pytest_llmperf/torchrun.py",
        '    return any("torch/distributed" in f.replace("\\\\", "/") for f in current)',
        "    return False",
        ("tests/unit/test_torchrun_launch.py::test_ranks_launched_from_an_ordinary_session",),
    ),
    Break(
        "no rank outlives a hung test (each rank's group killed)",
        "pytest_llmperf/torchrun.py",
        '            pids.append(int(state["pid"]))\n',
        "            pass\n",
        ("tests/unit/test_torchrun_launch.py::test_ranks_launched_from_an_ordinary_session",),
    ),
    Break(
        "--llmperf-threads undone when the run ends",
        "pytest_llmperf/session.py",
        "            torch.set_num_threads(self._threads_before)\n",
        "            pass\n",
        ("tests/unit/test_plugin.py::test_threads_option_is_undone_when_the_run_ends",),
    ),
    Break(
        "ring all-reduce moves 2(N-1)/N of the bytes",
        "pytest_llmperf/roofline/interconnect.py",
        "    steps = 2 * (devices - 1)\n",
        "    steps = devices - 1\n",
        ("tests/unit/test_parallel_estimate.py",),
    ),
    Break(
        "row-parallel bias added once, after the all-reduce",
        "pytest_llmperf/models/tensor_parallel.py",
        "        dist.all_reduce(y, group=self.group)  # also at world 1: the backend's path is run\n"
        "        return y + self.bias\n",
        "        y = y + self.bias\n"
        "        dist.all_reduce(y, group=self.group)\n"
        "        return y\n",
        ("tests/unit/test_tp_model.py::test_two_ranks_match_the_single_device_model",),
    ),
    Break(
        "ITL percentiles pooled over generations",
        "pytest_llmperf/measure/generation.py",
        'add(f"itl_{label}", percentile(pooled, q), series[f"itl_{label}"], kind=kind)',
        'add(f"itl_{label}", median(series[f"itl_{label}"]), series[f"itl_{label}"], kind=kind)',
        ("tests/unit/test_generation.py",),
    ),
    Break(
        "a generation that marks no token is an error",
        "pytest_llmperf/measure/generation.py",
        "        if len(marks) < 2:\n",
        "        if False:\n",
        ("tests/unit/test_generation.py",),
    ),
    Break(
        "the OOM note keeps the token count",
        "pytest_llmperf/measure/generation.py",
        'failure = f"{oom_message(exc)} (after {len(marks) - 1} token(s) of a generation)"',
        "failure = oom_message(exc)",
        ("tests/unit/test_generation.py",),
    ),
    Break(
        "drift-normalized token samples scale with the round",
        "pytest_llmperf/measure/generation.py",
        "corrected = [s / f if hib else s * f for s, f in zip(samples, factors, strict=True)]",
        "corrected = [s * f if hib else s / f for s, f in zip(samples, factors, strict=True)]",
        ("tests/unit/test_generation.py",),
    ),
    Break(
        "--llmperf-compare pairs a generation's token statistics",
        "pytest_llmperf/compare/pairing.py",
        "        self._add_series(ref.series, cand.series)\n",
        "",
        (
            "tests/unit/test_compare.py::test_a_stalling_generation_fails_on_its_paired_token_latency",
        ),
    ),
    Break(
        "the token record keeps the intervals in token order (an outlier stays at its token)",
        "pytest_llmperf/measure/generation.py",
        "for x in histogram_intervals(log)]",
        "for x in sorted(histogram_intervals(log))]",
        ("tests/unit/test_generation_compile.py",),
    ),
    Break(
        "a work entry is judged against its own dispatch context (CPU features ignored)",
        "pytest_llmperf/measure/dispatch.py",
        'if now - then and "cpu_features" in stored:',
        "if False:",
        ("tests/unit/test_dispatch.py",),
    ),
    Break(
        "a refresh under another dispatch context keeps the others' entries",
        "pytest_llmperf/baselines/writing.py",
        'contexts = dict(tests.get(r.nodeid, {}).get("contexts", {}))',
        "contexts = {}",
        ("tests/unit/test_dispatch.py",),
    ),
    Break(
        "other work under another dispatch context informs, never fails",
        "pytest_llmperf/judge/verdict.py",
        "            for d in decisions:\n                d.outcome = Verdict.PASS\n",
        "",
        ("tests/unit/test_dispatch.py",),
    ),
    Break(
        "equal counts under another dispatch context are counted as gated",
        "pytest_llmperf/judge/outcome.py",
        "return cls.INFORMED if moved else cls.EQUAL",
        "return cls.INFORMED",
        ("tests/unit/test_dispatch.py",),
    ),
    Break(
        "a plain run calls each body once",
        "pytest_llmperf/measure/sequence.py",
        "        m.times += sampler.sample(1)\n",
        "        m.times += sampler.sample(2)\n",
        ("tests/unit/test_run_once.py",),
    ),
    Break(
        "--llmperf-skip skips performance tests at collection",
        "pytest_llmperf/plugin.py",
        "        if not session.options.enabled and session.options.skip:\n            item.add_marker(skip)",
        "        if False:\n            item.add_marker(skip)",
        ("tests/unit/test_run_once.py",),
    ),
    Break(
        "iterations: a round's time is divided back to one call's",
        "pytest_llmperf/measure/sequence.py",
        "times = [t / m.iterations for t in distributed.slowest(rounds.values, device)]",
        "times = distributed.slowest(rounds.values, device)",
        ("tests/unit/test_run_once.py",),
    ),
    Break(
        "a setup's (args, kwargs) reach the call",
        "pytest_llmperf/fixture_inputs.py",
        "        call_args, call_kwargs = given[0]",
        "        call_args, call_kwargs = args, kwargs",
        ("tests/unit/test_run_once.py",),
    ),
    Break(
        "an option whose extra is missing names the extra",
        "pytest_llmperf/config/run.py",
        'why = benchmark_json and missing("pytest_benchmark", name)',
        "why = None",
        ("tests/unit/test_extras.py",),
    ),
    # -- issue 27: the six rules a reviewer broke that no test caught, and more of their kinds
    Break(
        "work is exact by default (no default tolerance)",
        "pytest_llmperf/metrics.py",
        'WORK = ("work", False, "counts", 0.0)',
        'WORK = ("work", False, "counts", 0.01)',
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "a higher-is-better baseline is moved toward worse by the tolerance",
        "pytest_llmperf/judge/decision.py",
        "shifted = [b / factor for b in baseline]",
        "shifted = [b * factor for b in baseline]",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "a gate is blind as soon as it cannot see its tolerance (not past twice it)",
        "pytest_llmperf/judge/verdict.py",
        "        if mdc > tolerance\n",
        "        if mdc > 2 * tolerance\n",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "the words of a blind gate follow the same rule",
        "pytest_llmperf/judge/detectable.py",
        'verdict = "" if mdc <= tolerance else',
        'verdict = "" if mdc <= 2 * tolerance else',
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "an out-of-memory result reaches the work file",
        "pytest_llmperf/session.py",
        "if counted or not r.metrics:",
        "if counted:",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "the message shows the numbers that decided (samples' medians, not a pooled value)",
        "pytest_llmperf/judge/decision.py",
        "            d.baseline, d.current, d.change = mb, mc, relative_change(mb, mc)\n",
        "            pass\n",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "a metric's direction cannot contradict its kind's",
        "pytest_llmperf/metrics.py",
        "        elif bool(self.higher_is_better) is not own:",
        "        elif False:",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "a kind whose direction depends on the metric must be told it",
        "pytest_llmperf/metrics.py",
        "            if self.higher_is_better is None:\n                raise ValueError(",
        "            if False:\n                raise ValueError(",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "record() takes the direction of its kind",
        "pytest_llmperf/fixture.py",
        "        if higher_is_better is None and Kind(kind).higher_is_better is None:",
        "        if higher_is_better is None:",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "memory's default tolerance is tight (and documented)",
        "pytest_llmperf/metrics.py",
        'MEMORY = ("memory", False, "bytes", 0.05)',
        'MEMORY = ("memory", False, "bytes", 0.10)',
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "a tail's default tolerance is wide (and documented)",
        "pytest_llmperf/metrics.py",
        'TAIL = ("tail", None, "seconds or ratio", 0.25)',
        'TAIL = ("tail", None, "seconds or ratio", 0.10)',
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "an improvement needs its samples to show it",
        "pytest_llmperf/judge/decision.py",
        "d.outcome = Verdict.IMPROVED if d.p_value < ALPHA else Verdict.PASS",
        "d.outcome = Verdict.IMPROVED",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "percentiles interpolate linearly (numpy's default)",
        "pytest_llmperf/metrics.py",
        "    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)\n",
        "    return xs[lo]\n",
        ("tests/unit/test_generation.py",),
    ),
    Break(
        "ITL p99 is a tail (its wider tolerance)",
        "pytest_llmperf/metrics.py",
        '("p99", 99.0, Kind.TAIL)',
        '("p99", 99.0, Kind.TIME)',
        ("tests/unit/test_generation.py",),
    ),
    Break(
        "MIN_SAMPLES is the fewest rounds a side that can reach ALPHA",
        "pytest_llmperf/judge/thresholds.py",
        "MIN_SAMPLES = 5\n",
        "MIN_SAMPLES = 4\n",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "MIN_PAIRS is the fewest pairs whose interval can reach ALPHA",
        "pytest_llmperf/judge/thresholds.py",
        "MIN_PAIRS = 7\n",
        "MIN_PAIRS = 5\n",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "significance is the documented p < 0.01",
        "pytest_llmperf/judge/thresholds.py",
        "ALPHA = 0.01\n",
        "ALPHA = 0.05\n",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "a throughput's worse ratio is baseline over current",
        "pytest_llmperf/judge/decision.py",
        "        return baseline / current\n",
        "        return current / baseline\n",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "a paired improvement needs its interval past the tolerance",
        "pytest_llmperf/judge/decision.py",
        "d.outcome = Verdict.IMPROVED if hi < 1.0 / factor else Verdict.PASS",
        "d.outcome = Verdict.IMPROVED",
        ("tests/unit/test_rules_guarded.py",),
    ),
    Break(
        "pairing goes on while the interval straddles the tolerance",
        "pytest_llmperf/judge/decision.py",
        "    return lo > 1.0 + tolerance or hi < 1.0 + tolerance\n",
        "    return True\n",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "raw improved and corrected pass (or the reverse) is a pass",
        "pytest_llmperf/judge/decision.py",
        "    else:  # one says improved, the other pass\n        raw.outcome = Verdict.PASS\n",
        "    else:  # one says improved, the other pass\n        raw.outcome = Verdict.IMPROVED\n",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "a paired gate below MIN_PAIRS sees nothing (infinite MDC)",
        "pytest_llmperf/judge/detectable.py",
        "    if len(logs) < MIN_PAIRS:\n",
        "    if len(logs) < 2:\n",
        ("tests/unit/test_decision.py", "tests/unit/test_doctor.py"),
    ),
    Break(
        "the stored gate's MDC needs MIN_SAMPLES a side",
        "pytest_llmperf/judge/detectable.py",
        "    if len(current) < MIN_SAMPLES or len(base) < MIN_SAMPLES:\n",
        "    if len(current) < 2 or len(base) < 2:\n",
        ("tests/unit/test_decision.py",),
    ),
    Break(
        "a blind gate never turns a regression into inconclusive",
        "pytest_llmperf/judge/verdict.py",
        "result.verdict not in (Verdict.PASS, Verdict.IMPROVED)",
        "result.verdict is None",
        ("tests/unit/test_verdict.py", "tests/unit/test_rules_guarded.py"),
    ),
    Break(
        "a kind's default tolerance is its own, not other's",
        "pytest_llmperf/config/policy.py",
        "        return DEFAULT_TOLERANCES.get(kind, DEFAULT_TOLERANCES[Kind.OTHER])\n",
        "        return DEFAULT_TOLERANCES[Kind.OTHER]\n",
        ("tests/unit/test_config.py", "tests/unit/test_rules_guarded.py"),
    ),
    Break(
        "compare orients each ratio to the metric's direction",
        "pytest_llmperf/compare/pairing.py",
        "oriented = [1 / r if metric.higher_is_better != hib else r for r in ratios if r > 0]",
        "oriented = [r for r in ratios if r > 0]",
        ("tests/unit/test_compare_pairing.py",),
    ),
    Break(
        "compare stops at MAX_PAIRS",
        "pytest_llmperf/compare/pairing.py",
        "spent = len(pairs.ratios) >= MAX_PAIRS or clock() - start > budget",
        "spent = clock() - start > budget",
        ("tests/unit/test_compare_pairing.py",),
    ),
    Break(
        "a metric without a tolerance of its own takes its kind's",
        "pytest_llmperf/judge/verdict.py",
        "else Kind(metric.kind).tolerance",
        "else 0.1",
        ("tests/unit/test_compare_pairing.py",),
    ),
    Break(
        "compare reports are the candidate worker's own, with the verdict applied",
        "pytest_llmperf/compare/controller.py",
        'reports = rebuilt(self.config, ran.cand["reports"])',
        'reports = made(item, "passed", None, start)',
        (
            "tests/unit/test_compare.py::test_the_candidates_own_reports_come_through_with_the_verdict",
        ),
    ),
    Break(
        "a tensor the call keeps alive after it returns is retained",
        "pytest_llmperf/measure/work.py",
        "sig.retained, sig.retained_by = (watch.held or [0])[0], watch.by_operator",
        "sig.retained, sig.retained_by = 0, watch.by_operator",
        ("tests/unit/test_retained.py",),
    ),
    Break(
        "a buffer handed to a collective leaves the count (gloo's thread holds it)",
        "pytest_llmperf/measure/counters.py",
        '        if name.startswith("c10d."):\n',
        "        if False:\n",
        ("tests/unit/test_retained.py",),
    ),
    Break(
        "a leak grows after every watched call, not after some",
        "pytest_llmperf/measure/work.py",
        "if steps and all(x > 0 for x in steps) else 0",
        "if steps and any(x > 0 for x in steps) else 0",
        ("tests/unit/test_retained.py",),
    ),
    Break(
        "growth is watched only where a call retains (or on an accelerator)",
        "pytest_llmperf/measure/work.py",
        "wanted = sig.complete and (sig.retained > 0 or accelerated)",
        "wanted = sig.complete",
        ("tests/unit/test_retained.py",),
    ),
    Break(
        "an accelerator's allocator is read around the watched calls",
        "pytest_llmperf/measure/work.py",
        "        sig.allocator_growth = _leak(watch.allocated)\n",
        "        sig.allocator_growth = 0\n",
        ("tests/unit/test_retained.py",),
    ),
    Break(
        "the retained bytes name the operator that made them",
        "pytest_llmperf/judge/workdiff.py",
        'return ", ".join(f"{n} +{units.quantity(k, unit)}" for n, k in grown[:3])',
        "return ''",
        ("tests/unit/test_retained.py",),
    ),
    Break(
        "the work table shows retained and leak columns where a test has them",
        "pytest_llmperf/output/work_table.py",
        "key in counts and (key not in _WHEN_NONZERO or counts[key].value)",
        "key in counts",
        ("tests/unit/test_retained.py",),
    ),
    Break(
        "llmperf.streamer() skips the prompt transformers puts first",
        "pytest_llmperf/measure/generation.py",
        "if self.skip_prompt and clock.ticking and self._prompted != clock.generations:",
        "if False:",
        ("tests/unit/test_token_marks.py",),
    ),
    Break(
        "llmperf.tick_after marks a token when its function returns",
        "pytest_llmperf/fixture.py",
        "            out = fn(*args, **kwargs)\n            tick()\n",
        "            out = fn(*args, **kwargs)\n",
        ("tests/unit/test_token_marks.py",),
    ),
    Break(
        "a first mark before the prefill's work is said",
        "pytest_llmperf/measure/mark_checks.py",
        "    if first < _EARLY_MARK * later:",
        "    if False:",
        ("tests/unit/test_token_marks.py",),
    ),
    Break(
        "an unmarked prefill is one whose first mark ends in a decode step (not a chunked one)",
        "pytest_llmperf/measure/mark_checks.py",
        "if first > _UNMARKED_PREFILL * later and _ends_in_a_step(*segments[:3]):",
        "if first > _UNMARKED_PREFILL * later:",
        ("tests/unit/test_token_marks.py",),
    ),
    Break(
        "a gate name that gates nothing on this device is said",
        "pytest_llmperf/config/names.py",
        "if any(m.gated for m in asked) or (matched and not asked):",
        "if True:",
        ("tests/unit/test_gate_names.py",),
    ),
    Break(
        "a metric the other gate level leaves out is not this name's to gate",
        "pytest_llmperf/config/names.py",
        "asked = [m for m in matched if asks is None or asks(m.name, m.kind)]",
        "asked = matched",
        ("tests/unit/test_gate_names.py",),
    ),
    Break(
        "a timing event records on the measured device's stream, not the current device's",
        "pytest_llmperf/measure/timing.py",
        "    event.record(torch.accelerator.current_stream(device))\n",
        "    event.record()\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "the rounds' events record on the measured device's stream",
        "pytest_llmperf/measure/timing.py",
        "        stream = torch.accelerator.current_stream(device)\n",
        "        stream = None\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "the device measured on is made current",
        "pytest_llmperf/measure/device.py",
        "        torch.accelerator.set_device_index(device.index)\n",
        "        pass\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "a torchrun rank measures on its LOCAL_RANK's device, whatever LLMPERF_DEVICE names",
        "pytest_llmperf/measure/device.py",
        '    if device is not None and device.type == "cpu":\n        return device\n',
        "    if device is not None:\n        return device\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "the allocator's cache is not emptied between warm-up and the rounds",
        "pytest_llmperf/measure/sequence.py",
        "    mem = PeakMemory(device, empty_cache=False)",
        "    mem = PeakMemory(device)",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "the allocator's cache is emptied before the warm-up",
        "pytest_llmperf/measure/sequence.py",
        "        if first:\n            fresh_cache(device)\n        rounds_setup",
        "        rounds_setup",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "the device lock is named by the GPU's PCI bus id",
        "pytest_llmperf/measure/device.py",
        "    bus = pci_bus_id(device)\n",
        "    bus = None\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "a performance test holds the device lock from set-up to teardown under xdist",
        "pytest_llmperf/plugin.py",
        "    with exclusive_device(session.device):\n        return (yield)\n",
        "    return (yield)\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "a torchrun launch holds the lock of every rank's device",
        "pytest_llmperf/fixture.py",
        "with exclusive_device(*torchrun.rank_devices(self.device, nproc)):",
        "with exclusive_device(self.device):",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "the device lock lets go only of what no block holds any more",
        "pytest_llmperf/measure/device.py",
        "            if depth == 0:\n",
        "            if True:\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "work.kernels leaves out the runtime's memcpy and memset",
        "pytest_llmperf/measure/work.py",
        " and not e.name.startswith(NOT_KERNELS)",
        "",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "a token mark on another stream than its decode's is said",
        "pytest_llmperf/measure/mark_checks.py",
        "if ran and mark_streams[i] not in ran:",
        "if False:",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "each traced operator's stream is read on an accelerator",
        "pytest_llmperf/measure/counters.py",
        "                self.streams.append(stream_key(self.device))\n",
        "                pass\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "flush_l2 zeroes the cache buffer before each round",
        "pytest_llmperf/measure/timing.py",
        "        buffer.zero_()\n",
        "        pass\n",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "flush_l2 applies to the warm-up and the rounds",
        "pytest_llmperf/measure/sequence.py",
        "rounds_setup = l2_flushing(setup, device) if policy.flush_l2 else setup",
        "rounds_setup = setup",
        ("tests/unit/test_gpu_fakes.py",),
    ),
    Break(
        "energy: the counter is read once up front; NotSupported/NoPermission/FunctionNotFound mean no energy, said in the header",
        "pytest_llmperf/measure/energy.py",
        "pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)",
        "pass",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "energy: a failed counter read in start() leaves that window without energy, never an exception",
        "pytest_llmperf/measure/energy.py",
        "with contextlib.suppress(Exception):  # this window has no energy, never 0 J",
        "if True:",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "energy: a GPU is found by index only where torch's indices are NVML's",
        "pytest_llmperf/measure/energy.py",
        '        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:\n            return None\n',
        "",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "doctor: clock event reasons fall back to the throttle-reasons name on NVMLError_FunctionNotFound",
        "pytest_llmperf/doctor/gpu.py",
        "    except _function_not_found(nvml):",
        "    except AttributeError:",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "doctor: application clocks of the SM are read as NVML_CLOCK_GRAPHICS",
        "pytest_llmperf/doctor/gpu.py",
        "APP_CLOCK = GRAPHICS",
        "APP_CLOCK = SM",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "doctor: clocks locked with nvidia-smi -lgc (reason 0x2) show as locked",
        "pytest_llmperf/doctor/gpu.py",
        "locked = app_set or bool(user_bit)",
        "locked = app_set",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "doctor: clocks and reasons are sampled while the probes run the workload",
        "pytest_llmperf/doctor/probe.py",
        'with sampler.running(out["probe"]) if sampler else contextlib.nullcontext():',
        "with contextlib.nullcontext():",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "doctor: the report's GPU facts use the clocks sampled under load",
        "pytest_llmperf/doctor/report.py",
        "load=sampler.summary()",
        "load=None",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "doctor: the probe makes its device current",
        "pytest_llmperf/doctor/probe.py",
        "device = make_current(current_device())",
        "device = current_device()",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "doctor: the probe synchronizes the device it runs on",
        "pytest_llmperf/doctor/probe.py",
        "torch.accelerator.synchronize(device.index)",
        "torch.accelerator.synchronize()",
        ("tests/unit/test_nvml_fakes.py",),
    ),
    Break(
        "history: a regression that was undone fails nothing",
        "pytest_llmperf/history/recorder.py",
        "if change.regression and _still(change, values, s.tolerance, s.exact):",
        "if change.regression:",
        ("tests/unit/test_history.py",),
    ),
    Break(
        "history: a timed regression fails once its last three runs are past it",
        "pytest_llmperf/history/recorder.py",
        "STILL_RUNS = 3",
        "STILL_RUNS = 1",
        ("tests/unit/test_history.py",),
    ),
    Break(
        "history: a change most other tests share at the same runs is said to be the machine's",
        "pytest_llmperf/history/cli.py",
        'and 2 * change.get("shared_with", 0) > of',
        'and change.get("shared_with", 0) > of',
        ("tests/unit/test_history.py",),
    ),
    Break(
        "history: a change is a regression by the metric's direction",
        "pytest_llmperf/history/changes.py",
        "return after < before if higher_is_better else after > before",
        "return after > before",
        ("tests/unit/test_history_changes.py",),
    ),
    Break(
        "history: a run far from its neighbours' median is a spike, taken out",
        "pytest_llmperf/history/changes.py",
        "    y = hampel(y, sigma)\n",
        "",
        ("tests/unit/test_history_changes.py",),
    ),
    Break(
        "history: the change-point penalty keeps flat series flat",
        "pytest_llmperf/history/changes.py",
        "PENALTY = 3.0",
        "PENALTY = 0.3",
        ("tests/unit/test_history_changes.py",),
    ),
    Break(
        "history: a slow ramp is creep, not a step",
        "pytest_llmperf/history/changes.py",
        "if b - a + 1 < CREEP_RUNS or sse1 - sse < price / PENALTY:",
        "if True:",
        ("tests/unit/test_history_changes.py",),
    ),
    Break(
        "history: counted work is exact from its first runs",
        "pytest_llmperf/history/changes.py",
        "sigma = 0.0 if exact or not all(math.isfinite(v) for v in y) else noise_of(y)",
        "sigma = 0.0 if not all(math.isfinite(v) for v in y) else noise_of(y)",
        ("tests/unit/test_history_changes.py",),
    ),
    Break(
        "history: an acknowledgement starts the series the gate looks at",
        "pytest_llmperf/history/recorder.py",
        "points = acks.since(old.points, ack_list, result.nodeid, name)[-self.window :]",
        "points = old.points[-self.window :]",
        ("tests/unit/test_history.py",),
    ),
    Break(
        "history: the gate looks only at the window's runs",
        "pytest_llmperf/history/recorder.py",
        "points = acks.since(old.points, ack_list, result.nodeid, name)[-self.window :]",
        "points = acks.since(old.points, ack_list, result.nodeid, name)",
        ("tests/unit/test_history.py",),
    ),
    Break(
        "history: a corrupt history stops a gated run before measuring, named",
        "pytest_llmperf/history/recorder.py",
        "        if self.gate and self.session.options.enabled:",
        "        if False:",
        ("tests/unit/test_history.py",),
    ),
    Break(
        "history: untracked files do not make a run dirty",
        "pytest_llmperf/history/series.py",
        '"status", "--porcelain", "--untracked-files=no"',
        '"status", "--porcelain"',
        ("tests/unit/test_history.py",),
    ),
    Break(
        "history: a work series is kept per dispatch context, not per machine",
        "pytest_llmperf/history/series.py",
        "    if kind == Kind.WORK.value:",
        "    if False:",
        ("tests/unit/test_history.py",),
    ),
]


@dataclass
class Outcome:
    status: str  # "caught", "NOT CAUGHT" or "ERROR"
    detail: str
    seconds: float = 0.0
    #: The id of the test that caught it.
    test: str = ""


def make_scratch(root: Path) -> Path:
    """A copy of what the tests need, without bytecode caches, and the import recorder."""
    scratch = root / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, scratch / name, ignore=ignore)
        else:
            scratch.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, scratch / name)
    (scratch / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return scratch


class _Failures:
    """A pytest plugin: the node ids of this run's failed tests and collection errors."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed:
            self.ids.append(report.nodeid)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.ids.append(report.nodeid)


def _child(scratch: Path, args: list[str], log: Path, result: Path) -> None:
    """In the forked process: run pytest on the scratch copy, then say what failed and where
    the plugin came from."""
    os.setpgid(0, 0)  # its own group: a timeout kills what the tests started too
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(scratch)
    sys.path.insert(0, str(scratch))
    os.environ[ENV_SCRATCH] = str(scratch)
    os.environ["PYTHONPATH"] = str(scratch)  # the Pythons the tests start import it too
    exec(compile(SITECUSTOMIZE, "sitecustomize", "exec"), {"__name__": "sitecustomize"})
    import pytest

    failures = _Failures()
    rc = pytest.main(args, plugins=[failures])
    files = {
        name: getattr(mod, "__file__", None) or ""
        for name, mod in list(sys.modules.items())
        if name.split(".")[0] == "pytest_llmperf"
    }
    result.write_text(json.dumps({"rc": int(rc), "modules": files, "failed": failures.ids}))


def reap(scratch: Path) -> int:
    """Kill every process a run on ``scratch`` left behind (a broken rule may leave a hung
    rank in a session of its own, out of the run's process group): each inherited
    ``BREAK_RULES_SCRATCH=<scratch>``. Returns how many there were."""
    mark = f"{ENV_SCRATCH}={scratch}\0".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except OSError:
            continue
    return killed


def run_tests(scratch: Path, tests: tuple[str, ...], timeout: float, first: bool = True) -> dict:
    """Run ``tests`` in a forked pytest on ``scratch`` (``-x`` when ``first``); rc None on a
    timeout."""
    args = [*PYTEST_ARGS, *(["-x"] if first else []), *tests]
    log, result = scratch / ".pytest.log", scratch / ".result.json"
    imports = scratch / IMPORTS_LOG
    for f in (result, imports):
        f.unlink(missing_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            _child(scratch, args, log, result)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.05)
    left = reap(scratch)
    out = log.read_text(errors="replace") if log.exists() else ""
    data = (
        json.loads(result.read_text())
        if result.exists()
        else {"rc": None, "modules": {}, "failed": []}
    )
    origins = imports.read_text().split("\n") if imports.exists() else []
    data["origins"] = [line.split(" ", 1)[1] for line in origins if " " in line]
    data["output"] = out
    data["tests"] = list(tests)
    data["left"] = left
    data["timed_out"] = timed_out
    return data


def foreign(data: dict, scratch: Path) -> list[str]:
    """Plugin files a process of the run imported from outside the scratch copy."""
    files = [*data["modules"].values(), *data["origins"]]
    return sorted({f for f in files if f and not Path(f).resolve().is_relative_to(scratch)})


def judge(brk: Break, data: dict, scratch: Path) -> Outcome:
    other = foreign(data, scratch)
    if other:
        return Outcome("ERROR", f"ran plugin code outside the scratch copy: {', '.join(other)}")
    rc, failed = data["rc"], data["failed"]
    if rc is None:
        tail = " | ".join(data["output"].strip().splitlines()[-3:])[-300:]
        return Outcome("ERROR", "timed out (--timeout)" if data["timed_out"] else f"died: {tail}")
    if rc == 0:
        module = brk.path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        seen = module in data["modules"] or any(o.endswith(brk.path) for o in data["origins"])
        return Outcome("NOT CAUGHT", "" if seen else f"(its tests never import {module})")
    if rc in (1, 2) and failed:
        first = failed[0].split("::", 1)[-1]
        return Outcome("caught", f"{Path(failed[0].split('::')[0]).name}::{first}", test=failed[0])
    tail = " | ".join(data["output"].strip().splitlines()[-3:])
    return Outcome("ERROR", f"pytest exit {rc}: {tail[-300:]}")


def check_edit(brk: Break, scratch: Path) -> str:
    """'' when the edit applies once; else why it cannot."""
    target = scratch / brk.path
    if not target.exists():
        return f"{brk.path} does not exist"
    n = target.read_text().count(brk.old)
    return "" if n == 1 else f"the edit matches {n} times in {brk.path} (must be once)"


def edit(target: Path, text: str) -> None:
    """Write ``text`` and drop the file's bytecode: an edit and its undo can share a second
    and a size, and a stale ``.pyc`` would then run the other version."""
    target.write_text(text)
    for pyc in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
        pyc.unlink()


def files(tests: tuple[str, ...]) -> set[str]:
    """The test files of test files or node ids."""
    return {t.split("::")[0] for t in tests}


def break_one(brk: Break, scratch: Path, timeout: float) -> Outcome:
    """Apply one break to ``scratch``, run its tests, undo the break."""
    t0 = time.monotonic()
    bad = check_edit(brk, scratch)
    if bad:
        return Outcome("ERROR", bad)
    target = scratch / brk.path
    text = target.read_text()
    edit(target, text.replace(brk.old, brk.new))
    try:
        data = run_tests(scratch, brk.tests, timeout)
        outcome = judge(brk, data, scratch)
    finally:
        edit(target, text)
    if data["left"]:
        outcome.detail += f" (left {data['left']} process(es) running: killed)"
    outcome.seconds = time.monotonic() - t0
    return outcome


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="run the rules whose name contains any of these")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per rule's tests")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="rules run at once (own copies)")
    ap.add_argument("--list", action="store_true", help="list the rules and their tests")
    args = ap.parse_args(argv)
    chosen = [b for b in BREAKS if not args.names or any(a in b.rule for a in args.names)]
    if args.list:
        for b in chosen:
            print(f"{b.rule}: {b.path} <- {', '.join(b.tests)}")
        return 0
    if not chosen:
        print(f"no rule's name contains any of {args.names}", file=sys.stderr)
        return 2
    for name in PRELOAD:
        __import__(name)
    # Imported here, every fork would run this copy and not the scratch one.
    assert not any(m.split(".")[0] == "pytest_llmperf" for m in sys.modules), "imported early"
    os.environ.pop("PYTEST_ADDOPTS", None)
    start = time.monotonic()
    done = [0]
    with tempfile.TemporaryDirectory(prefix="break-rules-") as tmp:
        copies: queue.Queue[Path] = queue.Queue()
        for k in range(max(1, args.jobs)):
            copies.put(make_scratch(Path(tmp) / str(k)).resolve())

        def on_a_copy(fn, *a):
            scratch = copies.get()
            try:
                return fn(*a, scratch)
            finally:
                copies.put(scratch)

        # Rules whose tests share a file never run at once: some tests look at every
        # process of the machine (a hung rank left running), or at shared temp dirs.
        locks = {f: threading.Lock() for b in chosen for f in files(b.tests)}

        def rule(brk: Break) -> Outcome:
            held = [locks[f] for f in sorted(files(brk.tests))]
            for lock in held:
                lock.acquire()
            try:
                outcome = on_a_copy(lambda s: break_one(brk, s, args.timeout))
            finally:
                for lock in held:
                    lock.release()
            done[0] += 1
            print(f"[{done[0]}/{len(chosen)}] {outcome.status}: {brk.rule}", file=sys.stderr)
            return outcome

        def control(tests: tuple[str, ...]) -> dict:
            return on_a_copy(lambda s: {**run_tests(s, tests, args.timeout, first=False), "at": s})

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            outcomes = dict(zip([b.rule for b in chosen], pool.map(rule, chosen), strict=True))
            # The control: each catching test must pass unbroken, or it would "catch"
            # anything. One run per test file, as the rules ran them: tests of other
            # files in the same process can disturb each other.
            t0 = time.monotonic()
            caught = sorted({o.test for o in outcomes.values() if o.status == "caught"})
            by_file: dict[str, list[str]] = {}
            for test in caught:
                by_file.setdefault(test.split("::")[0], []).append(test)
            spoilt: dict[str, str] = {}
            for data in pool.map(control, [tuple(v) for v in by_file.values()]):
                other = foreign(data, data["at"])
                if other:
                    why = f"ran plugin code outside the scratch copy: {', '.join(other)}"
                    spoilt.update({t: why for t in data["tests"]})
                elif data["rc"] not in (0, 1) or (data["rc"] == 1 and not data["failed"]):
                    why = f"not verified: control pytest exit {data['rc']}"
                    spoilt.update({t: why for t in data["tests"]})
                for test in data["failed"]:
                    spoilt[test] = f"fails unbroken too (control pytest exit {data['rc']})"
        for o in outcomes.values():
            if o.status == "caught" and o.test in spoilt:
                o.status, o.detail = "ERROR", f"{o.detail} {spoilt[o.test]}"
        print(
            f"control: the {len(caught)} catching tests on the unbroken copy, one run per "
            f"file: {len(spoilt)} not passing, {time.monotonic() - t0:.0f} s\n"
        )
    print("| rule | file | caught by | s |\n|---|---|---|---|")
    for brk in chosen:
        o = outcomes[brk.rule]
        shown = o.detail if o.status == "caught" else f"**{o.status}** {o.detail}".strip()
        print(f"| {brk.rule} | `{brk.path.split('/', 1)[1]}` | {shown} | {o.seconds:.1f} |")
    counts = {
        s: sum(o.status == s for o in outcomes.values()) for s in ("caught", "NOT CAUGHT", "ERROR")
    }
    print(
        f"\n{counts['caught']}/{len(chosen)} broken rules caught, {counts['NOT CAUGHT']} not "
        f"caught, {counts['ERROR']} errors, in {time.monotonic() - start:.0f} s with "
        f"{args.jobs} jobs (load {os.getloadavg()[0]:.1f})"
    )
    return 0 if counts["caught"] == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
