"""Break each decision rule on purpose, one at a time, and show which unit test catches it.

A test that cannot fail guards nothing. For every rule below this script copies
the package and the unit tests into a scratch directory, applies one small edit
that breaks the rule (each edit must match its source exactly once), runs the
fast rule tests there, and reports the tests that failed. A rule no test
catches is printed as NOT CAUGHT and makes the script exit 1.

    python scripts/break_rules.py            # every rule, about a minute
    python scripts/break_rules.py pooling    # the rules whose name contains "pooling"
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/unit/test_decision.py",
    "tests/unit/test_verdict.py",
    "tests/unit/test_baselines.py",
    "tests/unit/test_config.py",
    "tests/unit/test_rounds.py",
    "tests/unit/test_work.py",
]


@dataclass(frozen=True)
class Break:
    rule: str
    path: str
    old: str
    new: str
    #: The tests to run, when not the fast rule tests (``TESTS``).
    tests: tuple[str, ...] = ()


BREAKS = [
    Break(
        "raw and drift-corrected must agree (corrected ignored)",
        "pytest_llmperf/judge/decision.py",
        "    raw.drift_corrected_change = corrected.drift_corrected_change\n",
        "    return raw\n",
    ),
    Break(
        "tolerance before significance (significance alone decides)",
        "pytest_llmperf/judge/decision.py",
        "    if ratio > factor:\n        if not use_samples:",
        "    if ratio > 1.0:\n        if not use_samples:",
    ),
    Break(
        "unclear past the tolerance is inconclusive, not a pass",
        "pytest_llmperf/judge/decision.py",
        "d.outcome = Verdict.REGRESSION if d.p_value < ALPHA else Verdict.INCONCLUSIVE",
        "d.outcome = Verdict.REGRESSION if d.p_value < ALPHA else Verdict.PASS",
    ),
    Break(
        "too few rounds are never failed on values",
        "pytest_llmperf/judge/decision.py",
        "too_few = not use_samples and (len(bs) > 1 or len(cs) > 1)",
        "too_few = False",
    ),
    Break(
        "memory slack (changes under 4 MiB never regress)",
        "pytest_llmperf/judge/verdict.py",
        '"abs_slack": MEMORY_ABS_SLACK if metric.kind == "memory"',
        '"abs_slack": 0.0 if metric.kind == "memory"',
    ),
    Break(
        "pooled runs' spread widens the tolerance",
        "pytest_llmperf/judge/decision.py",
        "    if noise_floor > tolerance:\n",
        "    if False:\n",
    ),
    Break(
        "status ok -> oom is a regression",
        "pytest_llmperf/judge/verdict.py",
        'return Verdict.REGRESSION, [f"status: baseline {base}, current {result.status}"]',
        'return Verdict.PASS, [f"status: baseline {base}, current {result.status}"]',
    ),
    Break(
        "the worst metric decides the verdict",
        "pytest_llmperf/judge/verdict.py",
        "_WORST_FIRST = (Verdict.REGRESSION, Verdict.INCONCLUSIVE, Verdict.IMPROVED)",
        "_WORST_FIRST = (Verdict.IMPROVED, Verdict.REGRESSION, Verdict.INCONCLUSIVE)",
    ),
    Break(
        "unclear metrics are re-measured while the test runs",
        "pytest_llmperf/fixture.py",
        "        for _ in range(policy.remeasure):\n",
        "        for _ in range(0):\n",
    ),
    Break(
        "strict fails no-baseline and inconclusive",
        "pytest_llmperf/judge/outcome.py",
        "strict and self in (Verdict.NO_BASELINE, Verdict.INCONCLUSIVE)",
        "strict and self in (Verdict.NO_BASELINE,)",
    ),
    Break(
        "baseline pooling (--llmperf-pool)",
        "pytest_llmperf/baselines.py",
        "    if previous is not None and pool > 1:\n",
        "    if False:\n",
    ),
    Break(
        "pooling never mixes tiers",
        "pytest_llmperf/baselines.py",
        'same = previous is not None and previous.get("tier") == result.tier',
        "same = previous is not None",
    ),
    Break(
        "a refresh of a subset keeps the other entries",
        "pytest_llmperf/baselines.py",
        "        tests = dict(existing.tests) if existing else {}\n",
        "        tests = {}\n",
    ),
    Break(
        "another tier's entry does not count",
        "pytest_llmperf/baselines.py",
        'if e is None or (tier and e.get("tier", tier) != tier):',
        "if e is None:",
    ),
    Break(
        "a foreign device's file is refused",
        "pytest_llmperf/baselines.py",
        'if device_key is not None and device.get("key") != device_key:',
        "if False:",
    ),
    Break(
        "malformed metrics are refused on load",
        "pytest_llmperf/baselines.py",
        '    if not _is_number(m.get("value")):\n',
        "    if False:\n",
    ),
    Break(
        "unknown marker keywords are an error",
        "pytest_llmperf/config.py",
        "        if unknown:\n",
        "        if False:\n",
    ),
    Break(
        "rounds must be at least 1",
        "pytest_llmperf/config.py",
        "_keyword(_count(1, True, MAX_ROUNDS))",
        "_keyword(_count(0, True, MAX_ROUNDS))",
    ),
    Break(
        "a marker's tolerances merge with the run's",
        "pytest_llmperf/config.py",
        "            parsed = {**self.tolerances, **parsed}\n",
        "            pass\n",
    ),
    Break(
        "adaptive rounds never stop before MIN_STOP_ROUNDS",
        "pytest_llmperf/measure/timing.py",
        "if n >= max(min_rounds, MIN_STOP_ROUNDS) and",
        "if n >= min_rounds and",
    ),
    Break(
        "adaptive rounds never pass max_rounds",
        "pytest_llmperf/measure/timing.py",
        "min(max(batch, n // 2, 1), max_rounds - n,",
        "min(max(batch, n // 2, 1),",
    ),
    Break(
        "adaptive rounds stop at the time budget",
        "pytest_llmperf/measure/timing.py",
        "if n >= max_rounds or elapsed >= max_time:",
        "if n >= max_rounds:",
    ),
    Break(
        "work is exact (a bare tolerance loosens it)",
        "pytest_llmperf/config.py",
        "return {kind: tol for kind in MEASURED_KINDS}",
        "return {kind: tol for kind in DEFAULT_TOLERANCES}",
    ),
    Break(
        "a count is decided on its value, not on pooled samples",
        "pytest_llmperf/judge/verdict.py",
        '    if metric.kind == "work":  # a count is exact: its value decides, not samples\n'
        "        return decide(metric.name, **common)\n",
        "",
    ),
    Break(
        "syncs through tensor methods are counted (.tolist() on the CPU)",
        "pytest_llmperf/measure/work.py",
        '            sig.syncs[f"Tensor.{name}"] += 1\n',
        "",
    ),
    Break(
        "an in-place write is not an allocation",
        "pytest_llmperf/measure/work.py",
        "if key[1] not in seen:",
        "if True:",
    ),
    Break(
        "views move no data",
        "pytest_llmperf/measure/work.py",
        "if func.is_view or name in _ALIASING:",
        "if False:",
    ),
    Break(
        "another torch reports work changes, never fails on them",
        "pytest_llmperf/judge/verdict.py",
        "                d.outcome = Verdict.PASS\n",
        "                pass\n",
    ),
    Break(
        "a paired regression needs its interval past the tolerance, not only its median",
        "pytest_llmperf/judge/decision.py",
        "d.outcome = Verdict.REGRESSION if lo > factor else Verdict.INCONCLUSIVE",
        "d.outcome = Verdict.REGRESSION",
    ),
    Break(
        "the median's interval is the sign test's order statistics at ALPHA",
        "pytest_llmperf/judge/decision.py",
        "while k < n and binom.cdf(k, n, 0.5) <= alpha:",
        "while k < n and binom.cdf(k, n, 0.5) <= 0.5:",
    ),
    Break(
        "a paired throughput ratio is shown in its own terms",
        "pytest_llmperf/judge/decision.py",
        "d.ratio, d.ci = (1 / mid, (1 / hi, 1 / lo)) if higher_is_better else (mid, (lo, hi))",
        "d.ratio, d.ci = mid, (lo, hi)",
    ),
    Break(
        "pooled single-value metrics (memory) are decided on values, not as rounds",
        "pytest_llmperf/judge/verdict.py",
        "    if not metric.samples:\n",
        "    if False:\n",
    ),
    Break(
        "a gate blind to its tolerance fails under strict",
        "pytest_llmperf/judge/verdict.py",
        "    if strict:\n        result.verdict = Verdict.INCONCLUSIVE",
        "    if False:\n        result.verdict = Verdict.INCONCLUSIVE",
    ),
    Break(
        "the detectable change is floored by the baseline's run spread",
        "pytest_llmperf/judge/detectable.py",
        "    return max(_Z * se, run_spread)",
        "    return _Z * se",
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
        ("tests/unit/test_compare_layouts.py",),
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
        ("tests/unit/test_compare_layouts.py",),
    ),
    Break(
        "compare pairs each candidate batch with its own pair's reference batch",
        "pytest_llmperf/compare/controller.py",
        "ratios.append(values[cand] / values[ref] if values[ref] > 0 else math.inf)",
        'ratios.append(values[cand] / self.__dict__.setdefault("_first", values[ref]))',
        ("tests/unit/test_compare_pairing.py",),
    ),
    Break(
        "compare takes the minimum pairs even when the time budget is spent",
        "pytest_llmperf/compare/controller.py",
        "            if spent and len(ratios) >= MIN_PAIRS:",
        "            if spent:",
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
        "pytest_llmperf/config.py",
        "if self.run_gate is not None and not set(_keys(name, kind)) & set(self.run_gate):",
        "if False:",
    ),
    Break(
        "a non-finite number in a baseline is refused",
        "pytest_llmperf/baselines.py",
        "        return math.isfinite(x)\n    except OverflowError:",
        "        return True\n    except OverflowError:",
        ("tests/unit/test_baseline_files.py",),
    ),
    Break(
        "a refresh writes through a symlinked baseline",
        "pytest_llmperf/baselines.py",
        "    target = Path(os.path.realpath(path))\n",
        "    target = path\n",
        ("tests/unit/test_baseline_files.py",),
    ),
    Break(
        "a read-only baseline is left untouched",
        "pytest_llmperf/baselines.py",
        "        _refuse_read_only(path, target)\n",
        "",
        ("tests/unit/test_baseline_files.py",),
    ),
    Break(
        "a killed write's temporary is removed by the next write",
        "pytest_llmperf/baselines.py",
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
        "pytest_llmperf/config.py",
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
        "            if typo:  # a typo in gate= or a tolerance key",
        "            if False:  # a typo in gate= or a tolerance key",
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
        ("tests/unit/test_torchrun_launch.py",),
    ),
    Break(
        "a hung rank is told from the ranks waiting for it",
        "pytest_llmperf/torchrun.py",
        '    return any("torch/distributed" in f.replace("\\\\", "/") for f in current)',
        "    return False",
        ("tests/unit/test_torchrun_launch.py",),
    ),
    Break(
        "no rank outlives a hung test (each rank's group killed)",
        "pytest_llmperf/torchrun.py",
        '            pids.append(int(state["pid"]))\n',
        "            pass\n",
        ("tests/unit/test_torchrun_launch.py",),
    ),
    Break(
        "--llmperf-threads undone when the run ends",
        "pytest_llmperf/session.py",
        "            torch.set_num_threads(self._threads_before)\n",
        "            pass\n",
        ("tests/unit/test_plugin.py",),
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
        ("tests/unit/test_tp_model.py",),
    ),
    Break(
        "ITL percentiles pooled over generations",
        "pytest_llmperf/measure/generation.py",
        'add(f"itl_{label}", quantile(pooled, q), series[f"itl_{label}"], kind=kind)',
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
        "pytest_llmperf/compare/controller.py",
        '            _pair_series(by_name, replies[ref].get("series"), replies[cand].get("series"))\n',
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
        tests=("tests/unit/test_dispatch.py",),
    ),
    Break(
        "a refresh under another dispatch context keeps the others' entries",
        "pytest_llmperf/baselines.py",
        'contexts = dict(tests.get(r.nodeid, {}).get("contexts", {}))',
        "contexts = {}",
        tests=("tests/unit/test_dispatch.py",),
    ),
    Break(
        "other work under another dispatch context informs, never fails",
        "pytest_llmperf/judge/verdict.py",
        "            for d in decisions:\n                d.outcome = Verdict.PASS\n",
        "",
        tests=("tests/unit/test_dispatch.py",),
    ),
    Break(
        "equal counts under another dispatch context are counted as gated",
        "pytest_llmperf/judge/outcome.py",
        "return cls.INFORMED if moved else cls.EQUAL",
        "return cls.INFORMED",
        tests=("tests/unit/test_dispatch.py",),
    ),
]


def failed_tests(output: str) -> list[str]:
    # tests/...: an inner pytester run's own summary, captured in the output, is not ours
    return sorted(set(re.findall(r"^FAILED (tests/\S+?)(?: - .*)?$", output, re.MULTILINE)))


def check(brk: Break, scratch: Path) -> list[str]:
    """Apply one break to a fresh copy, run the rule tests, return the failed test ids."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    shutil.copytree(REPO / "pytest_llmperf", scratch / "pytest_llmperf")
    shutil.copytree(REPO / "tests", scratch / "tests")
    shutil.copytree(REPO / "baselines", scratch / "baselines")
    shutil.copy(REPO / "pyproject.toml", scratch / "pyproject.toml")
    target = scratch / brk.path
    text = target.read_text()
    if text.count(brk.old) != 1:
        raise SystemExit(f"{brk.rule}: the edit matches {text.count(brk.old)} times in {brk.path}")
    target.write_text(text.replace(brk.old, brk.new))
    env = {**os.environ, "PYTHONPATH": str(scratch)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf"]
        + list(brk.tests or TESTS),
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    return failed_tests(out.stdout)


def main(argv: list[str]) -> int:
    chosen = [b for b in BREAKS if not argv or any(a in b.rule for a in argv)]
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for brk in chosen:
            failed = check(brk, Path(tmp) / "repo")
            if not failed:
                missed += 1
            caught = ", ".join(f.split("::", 1)[1] for f in failed[:3]) or "NOT CAUGHT"
            more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
            print(f"| {brk.rule} | `{brk.path.split('/', 1)[1]}` | {caught}{more} |", flush=True)
    print(f"\n{len(chosen) - missed}/{len(chosen)} broken rules caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
