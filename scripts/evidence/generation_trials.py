#!/usr/bin/env python
"""Does the ITL p99 gate catch a decode stall that tokens/s cannot see, without false alarms?

Evidence for ``llmperf.generation``, from real pytest runs (subprocesses) of a small
project written the way the README teaches: ``tests/test_decode.py`` measures the
small GPT of ``scripts/evidence/small_gpt.py`` (copied into the project; fp32, one intra-op
thread, a 64-token prompt; ``--size brief``: 128 new tokens, ~2 ms a step, ~0.25 s a
generation on a quiet 2-core CPU; ``--size large``: a 4-5x longer step, 64 new
tokens) in two tests, one per way of marking tokens: ``model.generate_stream`` (a
generator that yields each token) and ``model.generate(..., callback=llmperf.tick)``.
Then:

1. one baseline refresh of the unchanged code (its own ``--llmperf-baselines`` dir);
2. N unchanged runs and N runs with ``GPT_INJECT=stall_every_32`` (every 32nd
   decode step runs its forward twice: the step takes twice as long, ~4 times per
   generation; the mean moves ~3%), interleaved (unchanged, stalled, unchanged, ...)
   so machine drift hits both arms alike; each run judges against the baseline with
   ``--llmperf-gate=tail`` (``itl_p99``, ``itl_tail``: the question is whether the
   tail catches what tok/s cannot see; time and throughput are reported; the extra
   forward is also extra PyTorch work, which the work gate would flag on its own,
   reported apart);
3. per run and test: the verdict, which metrics regressed (the JSON report's
   ``verdict_lines``), the change of tokens/s, TPOT, ITL p50/p90/p99 against the
   baseline (of the pooled value, and of the per-generation samples' medians, raw
   and drift-corrected, which is what the decision sets against the tolerance), the
   machine's load average; and views no stored baseline enters (a stalled run
   against the unchanged run just before it, each run's own p99 / p50);
4. the cost of a token mark on the CPU, in this process: ``TokenClock.run`` over a
   generator of N trivial tokens against consuming it plainly, and ``llmperf.tick``
   against a plain no-op callback (ns per mark, median of interleaved repeats).

It prints a markdown table and writes the raw results as JSON (``--out``; with
``--quick`` /tmp/generation_trials_quick.json unless given). Exits 1 when a run errs or a test of a
judged run has no verdict or no ITL p99 samples.

    python scripts/evidence/generation_trials.py                  # 10 + 10 runs
    python scripts/evidence/generation_trials.py --quick          # 1 + 1 runs, max_time 0.5 s
    python scripts/evidence/generation_trials.py --size large     # a longer decode step
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
INJECT = "stall_every_32"
ARMS = ("unchanged", "stalled")
TESTS = ("test_stream", "test_callback")
#: The timed metrics gate; work and memory are reported, not gated (see the docstring).
#: The tail gate decides (``itl_p99`` and ``itl_tail``): the question is whether the tail
#: catches a stall tok/s cannot see. Time and throughput against a stored baseline drift
#: past their 10% on a shared CPU by themselves (docs/noise.md): reported, not gated here.
GATE = "tail"
#: Model sizes: (n_embd, n_layer, new tokens). ``brief``: 128 new tokens, 2-3 ms a step,
#: 0.25-0.3 s a generation on this CPU when it is quiet; ``large``: a step 4-5x longer,
#: 64 new tokens (2 stalls of 63 intervals: still past p99), ~0.6 s a generation.
SIZES = {"brief": (128, 2, 128), "large": (256, 4, 64)}
#: Metrics whose change against the baseline each run reports, and their labels.
CHANGES = {
    "throughput": "tok/s",
    "decode_throughput": "decode tok/s",
    "tpot": "TPOT",
    "ttft": "TTFT",
    "itl_p50": "ITL p50",
    "itl_p90": "ITL p90",
    "itl_p99": "ITL p99",
    "itl_tail": "ITL p99/p50",
    "itl_max": "ITL max",
    "work.ops": "work.ops",
}

TEST_MODULE = '''"""Decode latency of the small GPT, written as the README teaches."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # small_gpt.py: the project root
import small_gpt as gpt  # noqa: E402

CONFIG = gpt.GPTConfig(dtype=torch.float32, n_embd=N_EMBD, n_layer=N_LAYER)
PROMPT = CONFIG.block_size  # every step re-forwards a full context: steps cost alike
NEW_TOKENS = NEW


@pytest.fixture(scope="module")
def model():
    return gpt.make_model(CONFIG).eval()


@pytest.fixture(scope="module")
def prompt():
    return gpt.make_batch(CONFIG, batch=1, length=PROMPT)[0]


@pytest.mark.llmperf(max_time=MAX_TIME)
def test_stream(llmperf, model, prompt):
    llmperf.params(prompt=PROMPT, new_tokens=NEW_TOKENS)
    tokens = llmperf.generation(
        model.generate_stream, args=(prompt, NEW_TOKENS), prompt_tokens=PROMPT
    )
    assert len(tokens) == NEW_TOKENS


@pytest.mark.llmperf(max_time=MAX_TIME)
def test_callback(llmperf, model, prompt):
    llmperf.params(prompt=PROMPT, new_tokens=NEW_TOKENS)
    out = llmperf.generation(
        model.generate,
        args=(prompt, NEW_TOKENS),
        kwargs={"callback": llmperf.tick},
        prompt_tokens=PROMPT,
    )
    assert out.shape == (1, PROMPT + NEW_TOKENS)
'''

_LINE = re.compile(r"^(REGRESSION|INCONCLUSIVE|improved) ([\w.]+):")
_DRIFT = re.compile(r"drift-corrected change ([+-]?[0-9.]+)%")


# --------------------------------------------------------------------------- the project


def write_project(root: Path, max_time: float, size: str) -> None:
    """The user's project: small_gpt.py at its root, tests/test_decode.py as written."""
    n_embd, n_layer, new = SIZES[size]
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "small_gpt.py", root / "small_gpt.py")
    # One intra-op thread, as the plugin's own suite: two threads that wait on each
    # other on a shared 2-core runner made this model 5-10x slower.
    (root / "pytest.ini").write_text("[pytest]\nllmperf_threads = 1\n")
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test_decode.py").write_text(
        TEST_MODULE.replace("MAX_TIME", repr(max_time))
        .replace("N_EMBD", str(n_embd))
        .replace("N_LAYER", str(n_layer))
        .replace("NEW_TOKENS = NEW", f"NEW_TOKENS = {new}")
    )
    (root / "out").mkdir(exist_ok=True)


def run_pytest(root: Path, label: str, args: list[str], inject: str = "") -> dict[str, Any]:
    """One pytest process: exit code, wall time, and per test the outcome (JUnit XML) and
    the verdict, verdict lines and metrics (the JSON report)."""
    from work_gate_trials import pytest_process  # this script's folder is sys.path[0]

    load_before = os.getloadavg()[0]
    baselines = f"--llmperf-baselines={root / 'baselines'}"
    p, junit, report, wall = pytest_process(root, label, [baselines, *args], inject)
    if not report.exists():
        raise RuntimeError(f"pytest ({label}) wrote no report:\n{(p.stdout + p.stderr)[-4000:]}")
    return {
        "label": label,
        "inject": inject,
        "rc": p.returncode,
        "wall_s": wall,
        # 1-minute load average before and after: this 2-core machine is shared
        "load": [load_before, os.getloadavg()[0]],
        "tests": _tests(junit, report, _stored(root)),
        "output_tail": (p.stdout + p.stderr)[-3000:] if p.returncode else "",
    }


def _stored(root: Path) -> dict[str, Any]:
    """The time baseline's entries by test name (none before the first refresh)."""
    files = list((root / "baselines").glob("*.json"))
    if not files:
        return {}
    data = json.loads(files[0].read_text())
    entries = data.get("tests") or data.get("entries") or {}
    return {k.split("::")[-1]: v for k, v in entries.items()}


def _median_change(current: list[float], runs: list[dict[str, Any]], key: str) -> float | None:
    """median(current) / median(baseline's pooled ``key`` samples) - 1: the change the
    decision compares with the tolerance (on raw samples, and on drift-corrected ones)."""
    base = [x for r in runs for x in r.get(key, [])]
    if not current or not base or not statistics.median(base):
        return None
    return statistics.median(current) / statistics.median(base) - 1


def _tests(junit: Path, report: Path, stored: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per test: outcome, verdict, the metrics that regressed (or were inconclusive),
    and each metric's change against the baseline: of the value (the pooled statistic
    the verdict line shows), and of the per-generation samples' medians, raw and
    drift-corrected (what the decision compares with the tolerance; a regression needs
    both past it)."""
    from work_gate_trials import junit_cases  # this script's folder is sys.path[0]

    tests = junit_cases(junit)
    for r in json.loads(report.read_text()).get("results", []):
        entry = tests.setdefault(r["nodeid"].split("::")[-1], {})
        lines = r.get("verdict_lines", [])
        by_outcome: dict[str, list[str]] = {"REGRESSION": [], "INCONCLUSIVE": [], "improved": []}
        drift: dict[str, float] = {}
        for line in lines:
            m = _LINE.match(line)
            if m:
                by_outcome[m.group(1)].append(m.group(2))
                d = _DRIFT.search(line)
                if d:
                    drift[m.group(2)] = float(d.group(1)) / 100
        metrics, base = r.get("metrics", {}), r.get("baseline_values", {})
        change: dict[str, float] = {}
        sample_change: dict[str, float] = {}
        corrected_change: dict[str, float] = {}
        stored_metrics = stored.get(r["nodeid"].split("::")[-1], {}).get("metrics", {})
        for name in CHANGES:
            value = metrics.get(name, {}).get("value")
            ref = base.get(name)
            if value is not None and ref:
                change[name] = value / ref - 1
            runs = stored_metrics.get(name, {}).get("runs", [])
            for out, key in ((sample_change, "samples"), (corrected_change, "normalized_samples")):
                c = _median_change(metrics.get(name, {}).get(key, []), runs, key)
                if c is not None:
                    out[name] = c
        entry.update(
            verdict=r.get("verdict"),
            verdict_lines=lines,
            regressed=by_outcome["REGRESSION"],
            inconclusive=by_outcome["INCONCLUSIVE"],
            improved=by_outcome["improved"],
            change=change,
            sample_change=sample_change,
            corrected_change=corrected_change,
            drift_corrected_change=drift,
            values={n: metrics[n]["value"] for n in CHANGES if n in metrics},
            rounds=len(metrics.get("itl_p99", {}).get("samples", [])),
            itl_p99_samples=metrics.get("itl_p99", {}).get("samples", []),
            notes=[n for n in r.get("notes", []) if "itl_p99" in n],
        )
    return tests


# --------------------------------------------------------------------------- the trials


def record(root: Path) -> dict[str, Any]:
    """The baseline of the unchanged code."""
    run = run_pytest(root, "baseline", ["--llmperf-update-baselines"])
    files = sorted(str(p.relative_to(root)) for p in (root / "baselines").rglob("*.json"))
    run["baseline_files"] = files
    if run["rc"] or not files:
        raise RuntimeError(f"baseline refresh failed ({files}):\n{run['output_tail']}")
    print(f"baseline recorded in {run['wall_s']:.1f} s: {', '.join(files)}", flush=True)
    return run


def gate(root: Path, label: str, inject: str) -> dict[str, Any]:
    """One judged run against the baseline; only the timed metrics decide."""
    run = run_pytest(root, label, [f"--llmperf-gate={GATE}"], inject)
    cells = []
    for name in TESTS:
        t = run["tests"].get(name, {})
        p99 = gate_change(t, "itl_p99")
        tps = t.get("change", {}).get("throughput")
        cells.append(
            f"{name.removeprefix('test_')}: {t.get('verdict')}"
            + (f" [{','.join(t['regressed'])}]" if t.get("regressed") else "")
            + (f" p99 {p99:+.0%}" if p99 is not None else "")
            + (f" tok/s {tps:+.1%}" if tps is not None else "")
        )
    print(
        f"  {label:14s} {run['wall_s']:5.1f} s  load {run['load'][0]:.1f}  " + "; ".join(cells),
        flush=True,
    )
    return run


def gate_change(entry: dict[str, Any], name: str) -> float | None:
    """The change of the per-generation samples' medians that the decision sets against
    the tolerance: the smaller of raw and drift-corrected (a regression needs both past
    it); the raw one alone where no drift correction was made."""
    raw = entry.get("sample_change", {}).get(name)
    corrected = entry.get("corrected_change", {}).get(name)
    if raw is None:
        return corrected
    return raw if corrected is None else min(raw, corrected)


# --------------------------------------------------------------------------- mark cost


def mark_cost(n: int = 100_000, repeats: int = 9) -> dict[str, Any]:
    """ns per token mark on the CPU: ``TokenClock.run`` over a generator of ``n`` trivial
    tokens against the same loop without marks, and ``tick`` against a no-op callback.
    Repeats interleave the four forms; each reports its median."""
    sys.path.insert(0, str(ROOT))
    from pytest_llmperf.measure.generation import TokenClock

    clock = TokenClock(SimpleNamespace(type="cpu"), "generation_trials::mark_cost")

    def tokens() -> Iterator[int]:
        yield from range(n)

    def plain_consume() -> list[int]:
        out: list[int] = []
        append = out.append
        for token in tokens():
            append(token)
        return out

    def decode(callback: Callable[[int], Any]) -> int:
        for i in range(n):
            callback(i)
        return n

    def noop(*_: Any) -> None:
        return None

    forms: dict[str, Callable[[], Any]] = {
        "yield_plain": plain_consume,
        "yield_marked": lambda: clock.run(tokens),
        "callback_plain": lambda: decode(noop),
        "callback_tick": lambda: clock.run(lambda: decode(clock.tick)),
    }
    seconds: dict[str, list[float]] = {k: [] for k in forms}
    for _ in range(repeats):
        for name, fn in forms.items():
            t0 = time.perf_counter_ns()
            fn()
            seconds[name].append((time.perf_counter_ns() - t0) / n)
    _, marks = clock.run(tokens)
    t0 = time.perf_counter_ns()
    clock.seconds(marks)
    to_seconds = (time.perf_counter_ns() - t0) / n
    med = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "n": n,
        "repeats": repeats,
        "ns_per_token": med,
        "ns_per_token_all": seconds,
        "yield_mark_ns": med["yield_marked"] - med["yield_plain"],
        "tick_mark_ns": med["callback_tick"] - med["callback_plain"],
        "seconds_ns_per_mark": to_seconds,
    }


# --------------------------------------------------------------------------- the table


def pct(x: float | None) -> str:
    """A change as a signed percent; "-" where there is none."""
    return "-" if x is None else f"{x * 100:+.1f}%"


def arm_runs(results: dict[str, Any], arm: str, test: str | None) -> list[dict[str, Any]]:
    """The per-test entries of one arm, for one test or both."""
    names = TESTS if test is None else (test,)
    return [r["tests"][n] for r in results["runs"][arm] for n in names if n in r["tests"]]


def tail_caught(entry: dict[str, Any]) -> bool:
    """The stall caught on the tail: ITL p99 in seconds, or its shape (p99 / p50)."""
    return bool({"itl_p99", "itl_tail"} & set(entry.get("regressed", [])))


def failed(entry: dict[str, Any]) -> bool:
    """A test that failed for any reason, or a regression line the outcome missed."""
    return entry.get("outcome") in ("failed", "error") or bool(entry.get("regressed"))


def changes(entries: list[dict[str, Any]], name: str) -> list[float]:
    """The pooled values' changes against the baseline (what the verdict line shows)."""
    return [e["change"][name] for e in entries if name in e.get("change", {})]


def gate_changes(entries: list[dict[str, Any]], name: str) -> list[float]:
    """:func:`gate_change` of each entry that has one."""
    out = [gate_change(e, name) for e in entries]
    return [c for c in out if c is not None]


def span(values: list[float]) -> str:
    """``median (min .. max)`` of changes, "-" for none."""
    if not values:
        return "-"
    return f"{pct(statistics.median(values))} ({pct(min(values))} .. {pct(max(values))})"


def table(results: dict[str, Any]) -> str:
    """One row per arm and test, then per arm both tests together."""
    lines = [
        "| arm | test | runs | caught on ITL p99 | failed (any metric) | failing metrics | "
        "tok/s change | TPOT change | ITL p50 change | ITL p99 change (value) | "
        "ITL p99 change the gate compares, median (min .. max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in ARMS:
        for test in (*TESTS, None):
            entries = arm_runs(results, arm, test)
            if not entries:
                continue
            caught = sum(tail_caught(e) for e in entries)
            bad = sum(failed(e) for e in entries)
            names = Counter(n for e in entries for n in e.get("regressed", []))

            def med(name: str, entries: list[dict[str, Any]] = entries) -> str:
                values = changes(entries, name)
                return pct(statistics.median(values)) if values else "-"

            lines.append(
                f"| {arm} | {'both' if test is None else test.removeprefix('test_')} | "
                f"{len(entries)} | {caught}/{len(entries)} | {bad}/{len(entries)} | "
                f"{', '.join(f'{k} {v}' for k, v in sorted(names.items())) or 'none'} | "
                f"{med('throughput')} | {med('tpot')} | {med('itl_p50')} | {med('itl_p99')} | "
                f"{span(gate_changes(entries, 'itl_p99'))} |"
            )
    return "\n".join(lines)


def per_run(results: dict[str, Any]) -> str:
    """Every run: load, each test's verdict, failing metrics and ITL p99 / tok/s changes."""
    lines = [
        "| run | wall | load (1 min) | "
        + " | ".join(
            f"{t.removeprefix('test_')}: verdict, failing, p99 gate / value, tok/s" for t in TESTS
        )
        + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in TESTS) + " |",
    ]
    n = len(results["runs"][ARMS[0]])
    for i in range(n):
        for arm in ARMS:
            if i >= len(results["runs"][arm]):
                continue
            r = results["runs"][arm][i]
            cells = []
            for name in TESTS:
                e = r["tests"].get(name, {})
                cells.append(
                    f"{e.get('verdict')}, {','.join(e.get('regressed', [])) or '-'}, "
                    f"{pct(gate_change(e, 'itl_p99'))} / {pct(e.get('change', {}).get('itl_p99'))}, "
                    f"{pct(e.get('change', {}).get('throughput'))}"
                )
            lines.append(
                f"| {r['label']} | {r['wall_s']:.0f} s | {r['load'][0]:.1f} -> {r['load'][1]:.1f} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def separation(aa: list[float], st: list[float], what: str) -> str:
    """Which tolerances would tell the arms apart by this change alone."""
    hi, lo = max(aa), min(st)
    head = (
        f"ITL p99 {what}: unchanged "
        + ", ".join(pct(x) for x in sorted(aa))
        + "; stalled "
        + ", ".join(pct(x) for x in sorted(st))
        + ". "
    )
    if hi < lo:
        return head + f"Any tail tolerance in ({pct(hi)}, {pct(lo)}) separates the arms."
    missed = sum(x <= hi for x in st)
    return head + (
        f"No tolerance separates them: the largest unchanged change is {pct(hi)}, "
        f"{missed} of {len(st)} stalled are at or below it."
    )


def ratio_span(values: list[float]) -> str:
    """``median (min .. max)`` of ratios, "-" for none."""
    if not values:
        return "-"
    return f"x{statistics.median(values):.2f} (x{min(values):.2f} .. x{max(values):.2f})"


def drift_free_lines(results: dict[str, Any]) -> list[str]:
    """Views of the same runs that no stored baseline enters: runs next to each other in
    time (a stalled run against the unchanged run just before it, an unchanged run
    against the previous unchanged one), and each run's own p99 / p50. They show what
    the tail does when the machine's state is (nearly) the same on both sides."""
    aa, ab = [], []
    shape: dict[str, list[float]] = {arm: [] for arm in ARMS}
    un, st = results["runs"]["unchanged"], results["runs"]["stalled"]

    def p99(run: dict[str, Any], test: str) -> float | None:
        return run["tests"].get(test, {}).get("values", {}).get("itl_p99")

    for i, run in enumerate(un):
        for test in TESTS:
            now = p99(run, test)
            if i < len(st) and now and p99(st[i], test):
                ab.append(p99(st[i], test) / now)
            if i and now and p99(un[i - 1], test):
                aa.append(now / p99(un[i - 1], test))
    for arm in ARMS:
        for e in arm_runs(results, arm, None):
            v = e.get("values", {})
            if v.get("itl_p50") and v.get("itl_p99"):
                shape[arm].append(v["itl_p99"] / v["itl_p50"])
    return [
        "Without the stored baseline (adjacent runs, per test): ITL p99 of a stalled run / "
        f"the unchanged run just before it {ratio_span(ab)}; an unchanged run / the "
        f"previous unchanged run {ratio_span(aa)}.",
        f"ITL p99 / p50 within each run: unchanged {ratio_span(shape['unchanged'])}, "
        f"stalled {ratio_span(shape['stalled'])}.",
    ]


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The headline, the separating tolerance, the work gate's view, the mark cost."""
    out = []
    n = len(results["runs"]["unchanged"])
    n_embd, n_layer, new = SIZES[results["size"]]
    out.append(
        f"Model: size {results['size']} (fp32, n_embd {n_embd}, {n_layer} layers, prompt 64, "
        f"{new} new tokens), one thread, marker max_time={results['max_time']}, "
        f"--llmperf-gate={GATE}, default tail tolerance "
        f"{results['tail_tolerance'] * 100:.0f}%."
    )
    for arm in ARMS:
        runs = results["runs"][arm]
        both = sum(all(tail_caught(r["tests"].get(t, {})) for t in TESTS) for r in runs)
        either = sum(any(tail_caught(r["tests"].get(t, {})) for t in TESTS) for r in runs)
        any_fail = sum(any(failed(r["tests"].get(t, {})) for t in TESTS) for r in runs)
        if arm == "stalled":
            out.append(
                f"Stalled runs caught on ITL p99: both tests {both}/{len(runs)}, at least one "
                f"{either}/{len(runs)}; runs with any failing test: {any_fail}/{len(runs)}."
            )
        else:
            out.append(f"False alarms (unchanged runs with any failing test): {any_fail}/{n}.")
    aa_entries = arm_runs(results, "unchanged", None)
    st_entries = arm_runs(results, "stalled", None)
    aa, st = gate_changes(aa_entries, "itl_p99"), gate_changes(st_entries, "itl_p99")
    if aa and st:
        out.append(separation(aa, st, "change the gate compares (per test and run)"))
    aa, st = changes(aa_entries, "itl_p99"), changes(st_entries, "itl_p99")
    if aa and st:
        out.append(separation(aa, st, "value change (pooled p99, per test and run)"))
    out += drift_free_lines(results)
    for arm in ARMS:
        entries = arm_runs(results, arm, None)
        inc = Counter(n for e in entries for n in e.get("inconclusive", []))
        if inc:
            out.append(
                f"{arm}: inconclusive (not failing) "
                + ", ".join(f"{k} {v}" for k, v in sorted(inc.items()))
                + "."
            )
    ops = changes(st_entries, "work.ops")
    if ops:
        out.append(
            f"Work signature of the stalled runs (reported, not gated here): work.ops "
            f"{pct(statistics.median(ops))}: the extra forward is extra PyTorch work, which the "
            "work gate would flag by itself; a stall without extra work (a GC pause, an "
            "allocator, a preempted host thread) only the ITL tail shows."
        )
    rounds = [e["rounds"] for e in aa_entries + st_entries if e.get("rounds")]
    gen_s = [e["values"]["tpot"] * (new - 1) for e in aa_entries if "tpot" in e.get("values", {})]
    if rounds and gen_s:
        out.append(
            f"Generations per test (measured rounds): median {statistics.median(rounds):.0f} "
            f"(min {min(rounds)}, max {max(rounds)}); an unchanged generation "
            f"~{statistics.median(gen_s):.2f} s (median TPOT x {new - 1})."
        )
    loads = [x for arm in ARMS for r in results["runs"][arm] for x in r["load"]]
    out.append(
        f"1-minute load average during the runs: median {statistics.median(loads):.1f} "
        f"(min {min(loads):.1f}, max {max(loads):.1f}; {results['baseline']['load'][0]:.1f} "
        "when the baseline was recorded) on 2 cores shared with other work."
    )
    c = results.get("mark_cost")
    if c:
        ns = c["ns_per_token"]
        out.append(
            f"Cost per token mark on this CPU ({c['n']} trivial tokens, median of "
            f"{c['repeats']} interleaved repeats): yield through TokenClock.run "
            f"{c['yield_mark_ns']:.0f} ns per mark ({ns['yield_marked']:.0f} vs "
            f"{ns['yield_plain']:.0f} ns per token consumed plainly); llmperf.tick "
            f"{c['tick_mark_ns']:.0f} ns per mark ({ns['callback_tick']:.0f} vs "
            f"{ns['callback_plain']:.0f} ns per no-op callback); converting marks to seconds "
            f"after the generation {c['seconds_ns_per_mark']:.0f} ns per mark (outside the timing)."
        )
    walls = [r["wall_s"] for arm in ARMS for r in results["runs"][arm]]
    out.append(
        f"One judged pytest run (2 tests): median {statistics.median(walls):.1f} s wall; "
        f"the whole trial {results['elapsed_s'] / 60:.1f} min."
    )
    return out


# --------------------------------------------------------------------------- main


def _tail_tolerance() -> float:
    """The plugin's default tolerance for a tail metric (ITL p99)."""
    sys.path.insert(0, str(ROOT))
    from pytest_llmperf.config import DEFAULT_TOLERANCES

    return DEFAULT_TOLERANCES["tail"]


def main() -> int:
    """Build the project, run the trials, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 + 1 short runs, not 10 + 10")
    ap.add_argument("--runs", type=int, default=None, help="runs per arm (default 10; 1 quick)")
    ap.add_argument("--keep", type=Path, help="build and keep the project in this directory")
    ap.add_argument("--out", type=Path, default=None, help="the JSON results' file")
    ap.add_argument("--max-time", type=float, default=None, help="marker max_time (2; 0.5 quick)")
    ap.add_argument("--size", choices=sorted(SIZES), default="brief", help="model size")
    ap.add_argument("--mark-tokens", type=int, default=None, help="tokens for the mark cost")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 10)
    args.max_time = args.max_time or (0.5 if args.quick else 2.0)
    args.mark_tokens = args.mark_tokens or (10_000 if args.quick else 100_000)
    if args.out is None:  # a quick run never overwrites a full run's results
        args.out = Path(f"/tmp/generation_trials{'_quick' if args.quick else ''}.json")

    from work_gate_trials import project_dir, save

    root, tmp = project_dir(args.keep, "generation_trials_")
    t_start = time.perf_counter()
    try:
        print("cost per token mark:", flush=True)
        results: dict[str, Any] = {
            "project": str(root),
            "python": sys.version.split()[0],
            "inject": INJECT,
            "gate": GATE,
            "max_time": args.max_time,
            "size": args.size,
            "tail_tolerance": _tail_tolerance(),
            "mark_cost": mark_cost(args.mark_tokens),
        }
        write_project(root, args.max_time, args.size)
        results["baseline"] = record(root)
        print(f"{runs} unchanged and {runs} stalled runs, interleaved:", flush=True)
        results["runs"] = {arm: [] for arm in ARMS}
        for i in range(runs):
            for arm in ARMS:
                inject = INJECT if arm == "stalled" else ""
                results["runs"][arm].append(gate(root, f"{arm}_{i}", inject))
        results["elapsed_s"] = time.perf_counter() - t_start
    finally:
        if tmp is not None:
            tmp.cleanup()

    text = (
        table(results)
        + "\n\n"
        + "\n".join(f"- {line}" for line in summary_lines(results))
        + "\n\nPer run (p99 gate: the change the decision compares; value: the pooled p99):\n\n"
        + per_run(results)
    )
    save(results, text, args.out)
    print(f"\nraw results: {args.out}")
    bad = problems(results)
    for line in bad:
        print("bad run:", line, file=sys.stderr)
    return 1 if bad else 0


def problems(results: dict[str, Any]) -> list[str]:
    """Judged runs that erred, and tests of them without a verdict or ITL p99 samples."""
    bad = []
    for arm, runs in results["runs"].items():
        for run in runs:
            if run["rc"] not in (0, 1):
                bad.append(f"{arm} {run['label']}: pytest exit {run['rc']}")
            for name in TESTS:
                t = run["tests"].get(name, {})
                if not t.get("verdict") or not t.get("itl_p99_samples"):
                    bad.append(f"{arm} {run['label']} {name}: {t.get('verdict')}, no ITL p99")
    return bad


if __name__ == "__main__":
    sys.exit(main())
