#!/usr/bin/env python
"""Why the CPU drift correction misjudged ``generate()`` of a small GPT, measured.

``pytest_llmperf.measure.drift`` divides each batch of timed rounds by a reference:
(wall / (wall - run-queue wait of the measuring thread)) x an interpreter-loop
kernel. Until this study the kernel was read right after each batch, and on
``scripts/evidence/small_gpt.py``'s ``generate()`` unchanged code read as -26% to -47%
drift-corrected. This script repeats the plugin's measurement sequence (auto
warm-up, ``drift.mark()``, adaptive rounds in growing batches within
``max_time``, ``drift.batch_reference()`` after each batch) for ``generate()``
and for a plain forward, in several fresh processes (a baseline run and a check
run are separate processes), and records per batch: wall time, run-queue wait
and on-CPU time of the measuring thread and of all threads, the wait factor, the
kernel readings before and after the batch, and the rounds. It then compares the
processes' medians: raw, normalized the old way (kernel after each batch), the
way drift.py does now (fastest kernel reading of the pass), and by each part of
the reference alone. An A/A change is the change between two processes' medians
of unchanged code; a good reference makes it small. It also says which passes
``drift.untrusted()`` refuses.

Part 1 (``--kernel-study S``, default 20 s) shows what the kernel reads: in one
process it alternates kernel readings with short pieces of the model (one
forward of 8 tokens, as each step of ``generate()``, and one bf16 linear) and
splits them by the kernel's state: how much slower each piece ran when the
kernel read slow, and how long a state lasted.

    python scripts/evidence/drift_generate.py                  # 8 processes x 2 reps, threads 1 and 2
    python scripts/evidence/drift_generate.py --load 2         # with 2 busy processes beside it
    python scripts/evidence/drift_generate.py --quick          # 2 processes x 1 rep, thread 1, 2 s study

Exits 1 when a measured batch has no rounds or a reference that is not a positive number.

``--json PATH`` writes every batch's record.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# ----------------------------------------------------------------------------- child


def _schedstat(tid: int | str) -> tuple[int, int]:
    with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
        a, b, _ = f.read().split()
    return int(a), int(b)


def _snapshot() -> dict[str, int]:
    """Clocks of this process: wall, CPU, and per-thread schedstat (this thread, all)."""
    main_run, main_wait = _schedstat(threading.get_native_id())
    all_run = all_wait = threads = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            run, wait = _schedstat(tid)
        except (OSError, ValueError):
            continue
        all_run, all_wait, threads = all_run + run, all_wait + wait, threads + 1
    return {
        "wall": time.perf_counter_ns(),
        "cpu": time.process_time_ns(),
        "main_run": main_run,
        "main_wait": main_wait,
        "all_run": all_run,
        "all_wait": all_wait,
        "threads": threads,
    }


def _model() -> tuple[Any, Any, Any]:
    """The small GPT, a forward of 2 x 64 tokens, and generate(16) from 8 tokens."""
    sys.path.insert(0, str(HERE))
    import small_gpt as gpt
    import torch

    cfg = gpt.GPTConfig()
    model = gpt.make_model(cfg).eval()
    idx, _ = gpt.make_batch(cfg, batch=2)
    prompt, _ = gpt.make_batch(cfg, batch=1, length=8)

    @torch.inference_mode()
    def forward() -> Any:
        return model(idx)

    def generate() -> Any:
        return model.generate(prompt, 16)

    return model, forward, generate


def child(args: argparse.Namespace) -> None:
    """One process: the plugin's sequence, ``reps`` times per workload, alternating."""
    import torch

    if args.child_threads:
        torch.set_num_threads(args.child_threads)
    from pytest_llmperf.measure import drift
    from pytest_llmperf.measure.timing import CallSampler, RoundTimer, measure_rounds, warm_up

    _, forward, generate = _model()
    workloads = {"generate": generate, "forward": forward}
    timer = RoundTimer(torch.device("cpu"))
    out: list[dict[str, Any]] = []
    order = list(workloads)
    for rep in range(args.reps):
        for name in order if rep % 2 == 0 else order[::-1]:
            fn = workloads[name]
            warm = warm_up(timer, fn, "auto", args.max_time)
            batches: list[dict[str, Any]] = []
            state: dict[str, Any] = {}

            def between(batches: list[dict[str, Any]] = batches, state: dict = state) -> None:
                end = _snapshot()
                ref = drift.batch_reference()  # the plugin's call; opens the next window
                start = state["start"]
                d: dict[str, Any] = {k: end[k] - start[k] for k in end if k != "threads"}
                d["threads"] = end["threads"]
                d["factor"] = ref.factor
                d["kernel_after"] = ref.kernel
                d["kernel_before"] = ref.kernel_before
                d["own_cpu"], d["others_cpu"] = ref.own_cpu, ref.others_cpu
                batches.append(d)
                state["start"] = _snapshot()

            drift.mark()  # as sequence.measure_call: reads the kernel, opens the window
            state["start"] = _snapshot()
            rounds = measure_rounds(
                CallSampler(timer, fn),
                rounds="auto",
                min_rounds=5,
                max_rounds=10_000,
                max_time=args.max_time,
                precision=0.1 / 4,
                between_batches=between,
            )
            i = 0
            for b, n in zip(batches, rounds.batch_sizes, strict=True):
                b["times"] = rounds.values[i : i + n]
                i += n
            out.append({"workload": name, "rep": rep, "warmup": len(warm), "batches": batches})
    print(json.dumps({"threads": torch.get_num_threads(), "runs": out}))


def kernel_child(args: argparse.Namespace) -> None:
    """Kernel readings alternated with short pieces of the model, for ``seconds``."""
    import torch

    torch.set_num_threads(1)
    from pytest_llmperf.measure import drift

    model, _, _ = _model()
    import small_gpt as gpt

    prompt, _ = gpt.make_batch(model.config, batch=1, length=8)
    x = torch.randn(64, 128).bfloat16()
    lin = torch.nn.Linear(128, 512, bias=False).bfloat16()

    def best(fn: Any, reps: int = 3) -> float:
        t_best = math.inf
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            fn()
            t_best = min(t_best, (time.perf_counter_ns() - t0) * 1e-9)
        return t_best

    rows = []
    t_start = time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - t_start < args.kernel_study:
            rows.append(
                [
                    time.perf_counter() - t_start,
                    drift.kernel_time(),
                    best(lambda: model(prompt)),
                    best(lambda: lin(x)),
                    drift.kernel_time(),
                ]
            )
    print(json.dumps(rows))


# ---------------------------------------------------------------------------- parent


def as_refs(batches: list[dict[str, Any]]) -> list[Any]:
    """The batch records as drift.BatchReference, as sequence.py holds them."""
    from pytest_llmperf.measure import drift

    return [
        drift.BatchReference(
            b["factor"], b["kernel_after"], b["kernel_before"], b["own_cpu"], b["others_cpu"]
        )
        for b in batches
    ]


def now_normalized(batches: list[dict[str, Any]]) -> list[float]:
    """drift.py as it is: each batch's wait factor x the fastest kernel reading of the pass."""
    from pytest_llmperf.measure import drift

    times = [t for b in batches for t in b["times"]]
    return drift.normalize_batches(times, [len(b["times"]) for b in batches], as_refs(batches))


def per_batch(ref: Any) -> Any:
    """Normalization by a reference computed from each batch's record alone."""

    def normalized(batches: list[dict[str, Any]]) -> list[float]:
        return [t / ref(b) for b in batches for t in b["times"]]

    return normalized


def all_thread_factor(b: dict[str, Any]) -> float:
    """(running + waiting) / running, summed over every thread of the process."""
    return (b["all_run"] + b["all_wait"]) / b["all_run"] if b["all_run"] > 0 else 1.0


#: name -> the pass's normalized samples from its batch records.
REFERENCES: dict[str, Any] = {
    "raw (no correction)": per_batch(lambda b: 1.0),
    "before: wait factor x kernel after each batch": per_batch(
        lambda b: (b["factor"] or 1.0) * b["kernel_after"]
    ),
    "drift.py now: wait factor x fastest kernel of the pass": now_normalized,
    "kernel after each batch alone": per_batch(lambda b: b["kernel_after"]),
    "wait factor (measuring thread) alone": per_batch(lambda b: b["factor"] or 1.0),
    "wait factor (all threads) alone": per_batch(all_thread_factor),
}


def log_cv(xs: list[float]) -> float:
    """Standard deviation of log values: the relative spread, symmetric in up and down."""
    return statistics.pstdev([math.log(x) for x in xs])


def aa_changes(per_proc: list[list[float]]) -> list[float]:
    """Every A/A change between runs in different processes (baseline run -> check run)."""
    return [
        b / a - 1.0
        for i, j in itertools.permutations(range(len(per_proc)), 2)
        for a in per_proc[i]
        for b in per_proc[j]
    ]


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _run(cmd: list[str]) -> Any:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_children(args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    """Fresh processes, one after another, each measuring both workloads ``reps`` times."""
    results = []
    for p in range(args.procs):
        cmd = [sys.executable, __file__, "--child", "--child-threads", str(threads)]
        res = _run(cmd + ["--reps", str(args.reps), "--max-time", str(args.max_time)])
        res["proc"] = p
        res["loadavg"] = os.getloadavg()[0]
        results.append(res)
        print(f"  threads={threads} process {p + 1}/{args.procs} done", file=sys.stderr)
    return results


def kernel_report(rows: list[list[float]]) -> str:
    """Split the pieces by the kernel's state (both readings around them agree)."""
    ks = [k for r in rows for k in (r[1], r[4])]
    fast_k = min(ks)
    cut = 1.3 * fast_k  # the slow state read 1.6-1.9x the fast one
    fast = [r for r in rows if r[1] < cut and r[4] < cut]
    slow = [r for r in rows if r[1] >= cut and r[4] >= cut]
    states = [r[1] >= cut for r in rows]
    runs = [len(list(g)) for _, g in itertools.groupby(states)]
    step = rows[-1][0] / len(rows)
    lines = [
        f"{len(rows)} samples over {rows[-1][0]:.0f} s, one every {step * 1e3:.0f} ms; "
        f"load average {os.getloadavg()[0]:.1f}",
        "",
        f"kernel readings: fastest {fast_k * 1e6:.0f} us, median {statistics.median(ks) * 1e6:.0f}"
        f" us, 90th percentile {sorted(ks)[int(0.9 * len(ks))] * 1e6:.0f} us; slow state "
        f"(>= {cut * 1e6:.0f} us) in {sum(states) / len(states):.0%} of samples, a state "
        f"lasted a median {statistics.median(runs) * step * 1e3:.0f} ms "
        f"(mean {statistics.mean(runs) * step * 1e3:.0f} ms, {len(runs)} runs of a state)",
        "",
        "| piece | kernel fast | kernel slow | slow / fast |",
        "| --- | --- | --- | --- |",
    ]
    if not fast or not slow:
        return "\n".join(lines[:3]) + "\n(no slow or no fast state seen: nothing to compare)"
    for j, name in (
        (1, "interpreter loop (the kernel)"),
        (2, "GPT forward, 8 tokens"),
        (3, "bf16 linear 64x128x512"),
    ):
        f = statistics.median(r[j] for r in fast)
        s = statistics.median(r[j] for r in slow)
        lines.append(f"| {name} | {f * 1e6:.0f} us | {s * 1e6:.0f} us | x{s / f:.2f} |")
    return "\n".join(lines)


def report(results: list[dict[str, Any]], threads: int) -> str:
    lines = [f"### torch threads = {threads}", ""]
    loads = [r["loadavg"] for r in results]
    lines.append(
        f"{len(results)} processes, load average {min(loads):.1f}-{max(loads):.1f} while they ran"
    )
    for workload in ("generate", "forward"):
        runs = [
            (r["proc"], run) for r in results for run in r["runs"] if run["workload"] == workload
        ]
        batches = [b for _, run in runs for b in run["batches"]]
        per_run_batches = [len(run["batches"]) for _, run in runs]
        t_round = statistics.median(t for b in batches for t in b["times"])
        refused = [drift_untrusted(run["batches"]) for _, run in runs]
        share = [
            sum(b["others_cpu"] for b in run["batches"]) / sum(b["own_cpu"] for b in run["batches"])
            for _, run in runs
        ]
        lines += [
            "",
            f"#### {workload}: median round {t_round * 1e3:.1f} ms, "
            f"{statistics.median(per_run_batches):.0f} batch(es) per run "
            f"(min {min(per_run_batches)}, max {max(per_run_batches)}), "
            f"{statistics.median(len(b['times']) for b in batches):.0f} rounds per batch",
            "",
            "Per batch, medians over all batches (wait: run-queue wait; thread: the measuring "
            "thread):",
            "",
            "| wall ms | thread wait / wall | thread on-CPU / wall | all threads on-CPU / wall "
            "| all threads wait / wall | factor | kernel before us | kernel after us |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]

        def med(f: Any, batches: list[dict[str, Any]] = batches) -> float:
            return statistics.median(f(b) for b in batches)

        lines.append(
            f"| {med(lambda b: b['wall']) / 1e6:.0f} "
            f"| {med(lambda b: b['main_wait'] / b['wall']):.2f} "
            f"| {med(lambda b: b['main_run'] / b['wall']):.2f} "
            f"| {med(lambda b: b['all_run'] / b['wall']):.2f} "
            f"| {med(lambda b: b['all_wait'] / b['wall']):.2f} "
            f"| {med(lambda b: b['factor'] or math.nan):.2f} "
            f"| {med(lambda b: b['kernel_before']) * 1e6:.0f} "
            f"| {med(lambda b: b['kernel_after']) * 1e6:.0f} |"
        )
        ka = [b["kernel_after"] for b in batches]
        flips = [
            max(b["kernel_after"], b["kernel_before"]) / min(b["kernel_after"], b["kernel_before"])
            for b in batches
        ]
        lines.append(
            f"\nkernel after a batch: {min(ka) * 1e6:.0f}-{max(ka) * 1e6:.0f} us (log-CV "
            f"{log_cv(ka):.2f}); readings before and after a batch differ by more than 15% in "
            f"{sum(f > 1.15 for f in flips)} of {len(flips)} batches. Other threads' CPU over "
            f"the measuring thread's, per pass: {min(share):.2f}-{max(share):.2f}; "
            f"drift.untrusted() refuses {sum(r is not None for r in refused)} of {len(runs)} "
            "passes."
        )
        lines += [
            "",
            "| reference | log-CV of process medians | A/A change between processes (min .. max)"
            " | A/A pairs past 10% |",
            "| --- | --- | --- | --- |",
        ]
        nprocs = max(p for p, _ in runs) + 1
        for name, normalize in REFERENCES.items():
            per_proc = [
                [statistics.median(normalize(run["batches"])) for p, run in runs if p == q]
                for q in range(nprocs)
            ]
            proc_medians = [statistics.median(x) for x in per_proc]
            changes = aa_changes(per_proc)
            past = sum(abs(c) > 0.10 for c in changes) / len(changes)
            lines.append(
                f"| {name} | {log_cv(proc_medians):.3f} | {min(changes):+.0%} .. "
                f"{max(changes):+.0%} | {past:.0%} |"
            )
    return "\n".join(lines)


def drift_untrusted(batches: list[dict[str, Any]]) -> str | None:
    from pytest_llmperf.measure import drift

    return drift.untrusted(as_refs(batches))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=8, help="fresh processes per thread count")
    ap.add_argument("--reps", type=int, default=2, help="measurements per workload per process")
    ap.add_argument("--threads", default="1,2", help="torch intra-op thread counts to compare")
    ap.add_argument("--max-time", type=float, default=0.3, help="the marker's max_time (s)")
    ap.add_argument("--kernel-study", type=float, default=20.0, help="seconds (0: skip)")
    ap.add_argument("--load", type=int, default=0, help="busy processes running beside it")
    ap.add_argument(
        "--quick", action="store_true", help="2 processes, 1 rep, 1 thread, 2 s kernel study"
    )
    ap.add_argument("--json", type=Path, help="write every batch record here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kernel-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    if args.kernel_child:
        kernel_child(args)
        return 0
    if args.quick:
        args.procs, args.reps, args.kernel_study = 2, 1, min(args.kernel_study, 2.0)
        args.threads = "1"
    import multiprocessing as mp

    loaders = [mp.Process(target=busy, args=(1e6,), daemon=True) for _ in range(args.load)]
    for p in loaders:
        p.start()
    t0 = time.time()
    every: dict[str, Any] = {}
    sections = []
    try:
        if args.kernel_study > 0:
            rows = _run(
                [
                    sys.executable,
                    __file__,
                    "--kernel-child",
                    "--kernel-study",
                    str(args.kernel_study),
                ]
            )
            every["kernel_study"] = rows
            sections.append("### what the kernel reads\n\n" + kernel_report(rows))
        for threads in [int(t) for t in args.threads.split(",")]:
            results = run_children(args, threads)
            every[str(threads)] = results
            sections.append(report(results, threads))
    finally:
        for p in loaders:
            p.terminate()
    print(
        f"## drift reference vs generate() and forward (max_time={args.max_time}, "
        f"{args.load} busy processes beside it, {time.time() - t0:.0f} s)\n"
    )
    print("\n\n".join(sections))
    if args.json:
        args.json.write_text(json.dumps(every))
    bad = problems(every)
    for line in bad:
        print("bad record:", line, file=sys.stderr)
    return 1 if bad else 0


def problems(every: dict[str, Any]) -> list[str]:
    """Batches that measured nothing, or whose reference is not a positive number."""
    bad = []
    for threads, results in every.items():
        if threads == "kernel_study":
            bad += [] if results else ["the kernel study read nothing"]
            continue
        for res in results:
            for run in res["runs"]:
                where = f"threads={threads} process {res['proc']} {run['workload']}"
                if not run["batches"]:
                    bad.append(f"{where}: no batch")
                for b in run["batches"]:
                    ok = b["times"] and all(
                        isinstance(x, (int, float)) and math.isfinite(x) and x > 0
                        for x in (b["factor"], b["kernel_after"], *b["times"])
                    )
                    if not ok:
                        bad.append(f"{where}: {b}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
