#!/usr/bin/env python
"""False-alarm and detection rates of pytest-llmperf vs pytest-benchmark, and their cost.

Every trial is real pytest runs (subprocesses) of a generated test module whose
CPU workload (a chain of small matmuls + tanh, a few ms per call) is scaled by
the ``NOISE_FACTOR`` environment variable. The module holds, side by side on the
same workload:

* ``test_llmperf``: ``llmperf(work)``, gated against a stored baseline;
* ``test_benchmark``: pytest-benchmark's ``benchmark(work)``, gated with
  ``--benchmark-compare-fail=median:10%`` against the saved run;
* ``test_ab``: ``llmperf.ab(reference, work)``, the in-run interleaved A/B whose
  gated metric is the speedup ratio (reference always runs at factor 1.0).

A trial records a baseline (``--llmperf-update-baselines`` and
``--benchmark-save``; with ``--pool N`` that is N runs pooled by
``--llmperf-pool=N``, and pytest-benchmark compares with the last of them), then
one candidate run per factor (1.0 = A/A, then the injected slowdowns) in a
shuffled order, each gating all three tests in one pytest process.

Then the cost: per-round overhead of llmperf's timer vs a bare ``perf_counter``
loop on a no-op, fixed cost per test, and the suite time adaptive rounds save
against a fixed 1000-round policy. ``--drift-study S`` first measures, for S
seconds in one process, how well candidate drift-reference kernels track the
workload (correlation of log times; spread of workload / reference).

    python scripts/evidence/noise_trials.py            # full: 20 trials per row (~25 min, 2-core CPU)
    python scripts/evidence/noise_trials.py --quick    # 1 trial, pool 1, x1.0 and x1.5, short cost runs

A run that errs, or a candidate run without its llmperf report, ends it with exit 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST_MODULE = """
import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("NOISE_THREADS", "1")))
FACTOR = float(os.environ.get("NOISE_FACTOR", "1.0"))
BASE_LAYERS = 20
torch.manual_seed(0)
W = torch.randn(256, 256) / 16
X = torch.randn(128, 256)


def _chain(layers):
    x = X
    for _ in range(layers):
        x = torch.tanh(x @ W)
    return x


def reference():
    return _chain(BASE_LAYERS)


def work():
    return _chain(round(BASE_LAYERS * FACTOR))


# At least this many rounds (pairs for ab) before adaptive rounds may stop.
POLICY = pytest.mark.llmperf(min_rounds=int(os.environ.get("NOISE_MIN_ROUNDS", "20")))


@POLICY
def test_llmperf(llmperf):
    llmperf(work)


def test_benchmark(benchmark):
    benchmark(work)


@POLICY
def test_ab(llmperf):
    llmperf.ab(reference, work)
"""

COST_MODULE = """
import time

import pytest
import torch

from pytest_llmperf.measure.timing import RoundTimer

N = {n}
CPU = torch.device("cpu")


def noop():
    return None


def _per_round(fn, clock):
    t0 = clock()
    fn()
    return (clock() - t0) * 1e-9 / N


def test_overhead(llmperf, record_property):
    # Process CPU time, not wall time: on a shared runner other processes' turns
    # on the core would otherwise be counted as our overhead.
    clock = time.process_time_ns
    wall = time.perf_counter_ns
    timer = RoundTimer(CPU)

    def calls():
        for _ in range(N):
            noop()

    def bare():
        times = [0.0] * N
        for i in range(N):
            t0 = wall()
            noop()
            times[i] = (wall() - t0) * 1e-9

    def timed():
        timer.run(noop, N)

    def pedantic(n, name):
        return lambda: llmperf.pedantic(noop, rounds=n, warmup=0, name=name)

    res = {{}}
    for _ in range(3):  # keep the best of three: the least disturbed pass
        llmperf.result.metrics.clear()
        cur = {{
            "calls": _per_round(calls, clock),
            "bare": _per_round(bare, clock),
            "timer": _per_round(timed, clock),
        }}
        big = _per_round(pedantic(N, "big"), clock) * N
        small = _per_round(pedantic(N // 10, "small"), clock) * N
        cur["llmperf"] = (big - small) / (N - N // 10)
        cur["llmperf_fixed"] = big - cur["llmperf"] * N
        for k, v in cur.items():
            res[k] = min(res.get(k, v), v)
    llmperf.result.metrics.clear()
    for k, v in res.items():
        record_property(k, v)


@pytest.mark.parametrize("i", range({tests}))
def test_fixed(llmperf, i):
    llmperf(noop)


@pytest.mark.parametrize("i", range({tests}))
def test_plain(i):
    noop()
"""

ADAPTIVE_MODULE = """
import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("NOISE_THREADS", "1")))
torch.manual_seed(0)
W = torch.randn(256, 256) / 16
X = torch.randn(128, 256)


def work():
    x = X
    for _ in range(20):
        x = torch.tanh(x @ W)
    return x


def test_adaptive(llmperf):
    llmperf(work)


@pytest.mark.llmperf(rounds=1000, max_rounds=1000)
def test_fixed_1000(llmperf):
    llmperf(work)
"""

FACTORS = (1.0, 1.1, 1.25, 1.5)


def run_pytest(cwd: Path, args: list[str], env: dict[str, str], timeout: float = 600) -> tuple:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    t0 = time.perf_counter()
    p = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0


MIN_ROUNDS = 20


def base_env(threads: int, factor: float = 1.0) -> dict[str, str]:
    env = dict(os.environ)
    env["NOISE_MIN_ROUNDS"] = str(MIN_ROUNDS)
    env["NOISE_FACTOR"] = str(factor)
    env["NOISE_THREADS"] = str(threads)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def write_project(root: Path, module: str, name: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / name).write_text(module)


# ------------------------------------------------------------------------- trials
def llmperf_verdicts(report: Path) -> dict[str, dict]:
    if not report.exists():
        return {}
    data = json.loads(report.read_text())
    return {r["nodeid"].split("::")[-1]: r for r in data["results"]}


def baseline_changes(root: Path, verdicts: dict[str, dict]) -> dict[str, float]:
    """Raw and drift-corrected change of test_llmperf's time vs the stored baseline."""
    files = list((root / "baselines").glob("*.json"))
    if not files or "test_llmperf" not in verdicts:
        return {}
    tests = json.loads(files[0].read_text())["tests"]
    entry = next((v for k, v in tests.items() if k.endswith("::test_llmperf")), None)
    if entry is None:
        return {}
    base = entry["metrics"]["time"]
    cur = verdicts["test_llmperf"]["metrics"]["time"]
    raw_b = statistics.median([x for r in base["runs"] for x in r["samples"]])
    out = {"raw_change": statistics.median(cur["samples"]) / raw_b - 1}
    norm_b = [x for r in base["runs"] for x in r.get("normalized_samples", [])]
    if norm_b and cur.get("normalized_samples"):
        out["corrected_change"] = (
            statistics.median(cur["normalized_samples"]) / statistics.median(norm_b) - 1
        )
    return out


def record_baseline(root: Path, args: argparse.Namespace, common: list[str]) -> None:
    """One baseline refresh; --llmperf-pool keeps the last ``pool`` refreshes together."""
    rc, out, _ = run_pytest(
        root,
        ["--llmperf-update-baselines", f"--llmperf-pool={args.pool}", "--benchmark-save=base"]
        + common,
        base_env(args.threads),
    )
    if rc != 0:
        raise SystemExit(f"baseline run failed:\n{out[-3000:]}")


def one_trial(root: Path, args: argparse.Namespace, trial: int, rng: random.Random) -> list[dict]:
    """A baseline refresh (pooled with the previous ones, as CI on main would do), then
    one candidate run per factor in shuffled order."""
    common = [
        f"--benchmark-storage=file://{root / 'bench'}",
        f"--llmperf-baselines={root / 'baselines'}",
    ]
    if args.tolerance:
        common.append(f"--llmperf-tolerance={args.tolerance}")
    if not (root / "test_noise.py").exists():
        write_project(root, TEST_MODULE, "test_noise.py")
        for _ in range(args.pool - 1):  # fill the pool before the first trial
            record_baseline(root, args, common)
    record_baseline(root, args, common)
    rows = []
    factors = list(args.factors)
    rng.shuffle(factors)
    for factor in factors:
        report = root / f"report-{factor}.json"
        rc, out, wall = run_pytest(
            root,
            [
                "--llmperf",
                f"--llmperf-report={report}",
                "--benchmark-compare",
                "--benchmark-compare-fail=median:10%",
                *common,
            ],
            base_env(args.threads, factor),
        )
        verdicts = llmperf_verdicts(report)
        if "test_llmperf" not in verdicts or "test_ab" not in verdicts:
            raise SystemExit(f"candidate run gave no llmperf report (x{factor}):\n{out[-3000:]}")
        tail = out.split("Performance has regressed", 1)
        bench_fail = len(tail) == 2 and "test_benchmark" in tail[1]
        row = {
            "trial": trial,
            "factor": factor,
            "wall_s": round(wall, 2),
            "benchmark_regressed": bench_fail,
            **baseline_changes(root, verdicts),
        }
        for test in ("test_llmperf", "test_ab"):
            r = verdicts[test]
            row[test] = r["verdict"]
            row[test + "_lines"] = r["verdict_lines"]
            row[test + "_s"] = r["duration_s"]
        ab = verdicts["test_ab"]["metrics"].get("ab.speedup", {})
        row["ab_speedup"] = ab.get("value")
        row["ab_pairs"] = len(ab.get("samples", []))
        m = re.search(r"test_benchmark \(\S+\) - (.*)", out)
        row["benchmark_line"] = m.group(1) if m else ""
        rows.append(row)
        sym = {"regression": "R", "inconclusive": "?", "pass": ".", "improved": "+"}
        print(
            f"  trial {trial:2d} x{factor:<4} llmperf {sym.get(row['test_llmperf'], '-')} "
            f"(raw {row.get('raw_change', math.nan):+.1%}, "
            f"corrected {row.get('corrected_change', math.nan):+.1%}) "
            f"ab {sym.get(row['test_ab'], '-')} (speedup {row['ab_speedup']:.3f}, "
            f"{row['ab_pairs']} pairs) pytest-benchmark {'R' if bench_fail else '.'} "
            f"[{wall:.0f} s]",
            flush=True,
        )
    return rows


def table(rows: list[dict], factors: tuple[float, ...]) -> str:
    out = [
        "| row | trials | llmperf (baseline) | llmperf.ab (in-run A/B) "
        "| pytest-benchmark median:10% | llmperf inconclusive (baseline / A/B) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in factors:
        rs = [r for r in rows if r["factor"] == f]
        n = len(rs)
        if not n:
            continue
        what = "false alarms" if f == 1.0 else "detected"
        label = "A/A (x1.0)" if f == 1.0 else f"slowdown x{f}"
        lp = sum(r["test_llmperf"] == "regression" for r in rs)
        ab = sum(r["test_ab"] == "regression" for r in rs)
        pb = sum(r["benchmark_regressed"] for r in rs)
        inc = sum(r["test_llmperf"] == "inconclusive" for r in rs)
        inc_ab = sum(r["test_ab"] == "inconclusive" for r in rs)
        out.append(
            f"| {label} | {n} | {lp}/{n} {what} | {ab}/{n} {what} | {pb}/{n} {what} "
            f"| {inc} / {inc_ab} |"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------- cost
def junit_props(path: Path) -> dict[str, dict[str, float]]:
    import xml.etree.ElementTree as ET

    out: dict[str, dict[str, float]] = {}
    for case in ET.parse(path).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[case.get("name")] = {"time": float(case.get("time")), **props}
    return out


def cost(args: argparse.Namespace, work_dir: Path) -> dict[str, float]:
    tests = 4 if args.quick else 40
    root = work_dir / "cost"
    write_project(root, COST_MODULE.format(n=200_000, tests=tests), "test_cost.py")
    env = base_env(args.threads)
    rc, out, _ = run_pytest(
        root,
        ["--llmperf-update-baselines", f"--llmperf-baselines={root / 'b'}", "-k", "fixed"],
        env,
    )
    res: dict[str, float] = {}
    junit = root / "junit.xml"
    rc, out, _ = run_pytest(
        root, ["--llmperf", f"--llmperf-baselines={root / 'b'}", f"--junitxml={junit}"], env
    )
    if rc not in (0, 1):
        raise SystemExit(f"cost run failed:\n{out[-3000:]}")
    props = junit_props(junit)
    ov = props["test_overhead"]
    res["noop_call_us"] = float(ov["calls"]) * 1e6
    res["bare_round_us"] = float(ov["bare"]) * 1e6
    res["llmperf_round_us"] = float(ov["llmperf"]) * 1e6
    res["timer_round_us"] = float(ov["timer"]) * 1e6
    res["llmperf_overhead_us"] = res["llmperf_round_us"] - res["bare_round_us"]
    res["timer_overhead_us"] = res["timer_round_us"] - res["bare_round_us"]
    fixed = [v["time"] for k, v in props.items() if k.startswith("test_fixed")]
    plain = [v["time"] for k, v in props.items() if k.startswith("test_plain")]
    res["fixed_cost_per_test_ms"] = (statistics.median(fixed) - statistics.median(plain)) * 1e3
    res["fixed_cost_per_test_mean_ms"] = (statistics.mean(fixed) - statistics.mean(plain)) * 1e3

    root = work_dir / "adaptive"
    fixed = "rounds=1000, max_rounds=1000"  # --quick: 200 (the test keeps its name)
    module = (
        ADAPTIVE_MODULE.replace(fixed, "rounds=200, max_rounds=200")
        if args.quick
        else ADAPTIVE_MODULE
    )
    write_project(root, module, "test_adaptive.py")
    b = f"--llmperf-baselines={root / 'b'}"
    run_pytest(root, ["--llmperf-update-baselines", b], env)
    walls: dict[str, list[float]] = {"test_adaptive": [], "test_fixed_1000": []}
    verdicts: dict[str, list[str]] = {"test_adaptive": [], "test_fixed_1000": []}
    rounds: dict[str, list[int]] = {"test_adaptive": [], "test_fixed_1000": []}
    for i in range(1 if args.quick else 3):
        report = root / f"r{i}.json"
        run_pytest(root, ["--llmperf", b, f"--llmperf-report={report}"], env)
        for name, r in llmperf_verdicts(report).items():
            walls[name].append(r["duration_s"])
            verdicts[name].append(r["verdict"])
            rounds[name].append(len(r["metrics"]["time"]["samples"]))
    res["adaptive_test_s"] = statistics.median(walls["test_adaptive"])
    res["fixed1000_test_s"] = statistics.median(walls["test_fixed_1000"])
    res["adaptive_rounds"] = statistics.median(rounds["test_adaptive"])
    res["adaptive_verdicts"] = ",".join(verdicts["test_adaptive"])
    res["fixed1000_verdicts"] = ",".join(verdicts["test_fixed_1000"])
    return res


# -------------------------------------------------------------------- drift study
DRIFT_STUDY = """
import json, math, os, statistics as st, sys, time
import torch
torch.set_num_threads(int(os.environ.get("NOISE_THREADS", "1")))
from pytest_llmperf.measure import drift
torch.manual_seed(0)
W = torch.randn(256, 256) / 16
X = torch.randn(128, 256)
def work():
    x = X
    for _ in range(20):
        x = torch.tanh(x @ W)
    return x
def python_loop():
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter_ns()
        s = 0
        for i in range(3000):
            s += i * i
        best = min(best, (time.perf_counter_ns() - t0) * 1e-9)
    return best
A, B = torch.randn(96, 96), torch.randn(96, 96)
def torch_mm():
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(4):
            torch.mm(A, B)
        best = min(best, (time.perf_counter_ns() - t0) * 1e-9)
    return best
for _ in range(20):
    work(); python_loop(); torch_mm()
rows = []
end = time.time() + float(sys.argv[1])
while time.time() < end:
    ts = []
    w0, c0 = time.perf_counter_ns(), time.process_time_ns()
    c_start = drift.clocks()
    for _ in range(20):
        t0 = time.perf_counter_ns(); work(); ts.append((time.perf_counter_ns() - t0) * 1e-9)
    c_end = drift.clocks()
    runq = drift.share_factor(*(a - b for a, b in zip(c_end, c_start))) or math.nan
    cpu = (time.perf_counter_ns() - w0) / max(1, time.process_time_ns() - c0)
    py = python_loop()
    rows.append([st.median(ts), py, torch_mm(), runq, cpu, py * runq])
print(json.dumps(rows))
"""

REFERENCES = (
    "python loop (min of 5): the old drift.py",
    "torch matmul (min of 5)",
    "run-queue wait factor alone",
    "wall / process CPU time",
    "run-queue wait x python loop: drift.py now",
)


def drift_study(args: argparse.Namespace, work_dir: Path) -> str:
    """Within one process and between processes: which reference tracks the workload?"""
    path = work_dir / "drift_study.py"
    path.write_text(DRIFT_STUDY)
    procs = max(2, int(args.drift_study // 6))
    per_proc: list[list[list[float]]] = []
    for _ in range(procs):
        p = subprocess.run(
            [sys.executable, str(path), str(args.drift_study / procs)],
            env=base_env(args.threads),
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode:
            return p.stderr[-2000:]
        per_proc.append(json.loads(p.stdout.strip().splitlines()[-1]))
    rows = [r for rs in per_proc for r in rs]

    def cv(xs: list[float]) -> float:
        return statistics.pstdev(xs) / statistics.mean(xs)

    def log_corr(a: list[float], b: list[float]) -> float:
        return statistics.correlation([math.log(x) for x in a], [math.log(x) for x in b])

    work = [r[0] for r in rows]
    between_raw = [statistics.median(r[0] for r in rs) for rs in per_proc]
    out = [
        f"{procs} processes, {len(rows)} batches of 20 rounds, workload median "
        f"{statistics.median(work) * 1e3:.2f} ms",
        "",
        "| reference | corr(log work, log ref) within a process | CV of work/ref, batches "
        "| CV of work/ref, process medians (between runs) |",
        "| --- | --- | --- | --- |",
        f"| none (raw wall time) | - | {cv(work):.3f} | {cv(between_raw):.3f} |",
    ]
    for j, name in enumerate(REFERENCES, 1):
        ref = [r[j] for r in rows]
        ratio = [r[0] / r[j] for r in rows]
        between = [statistics.median(r[0] / r[j] for r in rs) for rs in per_proc]
        out.append(f"| {name} | {log_corr(work, ref):.2f} | {cv(ratio):.3f} | {cv(between):.3f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    global MIN_ROUNDS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per row (default 20)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 1 trial, pool 1, factors 1.0 and 1.5, min_rounds 5, short cost runs "
        "(200 fixed rounds, not 1000)",
    )
    ap.add_argument(
        "--pool", type=int, default=3, help="baseline runs pooled per trial (--llmperf-pool)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument(
        "--min-rounds",
        type=int,
        default=MIN_ROUNDS,
        help="min_rounds marker of the llmperf tests (default 20; the plugin default is 5)",
    )
    ap.add_argument("--tolerance", default="", help="--llmperf-tolerance for every run")
    ap.add_argument(
        "--factors", default=",".join(map(str, FACTORS)), help="comma-separated slowdowns"
    )
    ap.add_argument("--drift-study", type=float, default=30.0, help="seconds (0: skip)")
    ap.add_argument("--no-trials", action="store_true")
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="write raw trial rows as JSON here")
    args = ap.parse_args()
    if args.quick:
        given = {a.split("=")[0] for a in sys.argv[1:]}
        args.trials = min(args.trials, 1)
        args.drift_study = min(args.drift_study, 2.0)
        args.pool = args.pool if "--pool" in given else 1
        args.factors = args.factors if "--factors" in given else "1.0,1.5"
        args.min_rounds = args.min_rounds if "--min-rounds" in given else 5
    args.factors = tuple(float(f) for f in args.factors.split(","))
    MIN_ROUNDS = args.min_rounds
    command = "python scripts/evidence/noise_trials.py " + " ".join(sys.argv[1:])
    rng = random.Random(args.seed)
    started = time.perf_counter()
    import torch

    print(f"# noise trials: {command.strip()}")
    print(
        f"cpu cores {os.cpu_count()}, torch {torch.__version__}, threads {args.threads}, "
        f"min_rounds {args.min_rounds}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="llmperf-noise-") as tmp:
        work_dir = Path(tmp)
        if args.drift_study > 0:
            print("\n## drift reference kernels\n")
            print(drift_study(args, work_dir))
        rows: list[dict] = []
        if not args.no_trials:
            print(f"\n## trials ({args.trials} per row, baseline pool {args.pool})\n", flush=True)
            for t in range(args.trials):
                rows += one_trial(work_dir / "trials", args, t, rng)
            if args.out:
                Path(args.out).write_text(json.dumps(rows, indent=1))
            print()
            print(table(rows, args.factors))
        if not args.no_cost:
            print("\n## cost\n", flush=True)
            c = cost(args, work_dir)
            print(
                f"- per round on a no-op (process CPU time): bare perf_counter loop "
                f"{c['bare_round_us']:.2f} us; llmperf's round timer {c['timer_round_us']:.2f} us "
                f"({c['timer_overhead_us']:+.2f} us); all per-round work of llmperf.pedantic "
                f"(timer, drift, statistics, bookkeeping) {c['llmperf_round_us']:.2f} us "
                f"({c['llmperf_overhead_us']:+.2f} us); the no-op call alone "
                f"{c['noop_call_us']:.2f} us"
            )
            print(
                f"- fixed cost per llmperf test (no-op, default policy, verdict included): "
                f"median {c['fixed_cost_per_test_ms']:.1f} ms "
                f"(mean {c['fixed_cost_per_test_mean_ms']:.1f} ms) over a plain test"
            )
            saving = 1 - c["adaptive_test_s"] / c["fixed1000_test_s"]
            print(
                f"- adaptive rounds: {c['adaptive_test_s']:.2f} s per test "
                f"({c['adaptive_rounds']:.0f} rounds, verdicts {c['adaptive_verdicts']}) vs "
                f"fixed 1000 rounds {c['fixed1000_test_s']:.2f} s "
                f"(verdicts {c['fixed1000_verdicts']}): {saving:.0%} less suite time"
            )
    print(f"\ntotal {(time.perf_counter() - started) / 60:.1f} min; command: {command.strip()}")


if __name__ == "__main__":
    main()
