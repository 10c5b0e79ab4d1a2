#!/usr/bin/env python
"""Does the work gate catch what a user commits, without false alarms, on any CPU?

Evidence for the work signature, from real pytest runs (subprocesses) of a small
project written the way the README teaches: ``tests/test_gpt.py`` measures a
small GPT (``scripts/evidence/small_gpt.py``, copied into the project) in four tests, a
forward, a ``generate``, a training step and a ``torch.compile``d forward
(``backend="eager"``: dynamo's graphs and guards without inductor's C++ compile,
40-100 s on a 2-core CPU). Then:

1. one baseline refresh of the unchanged code under ``--llmperf-machine=runner-a``
   (it writes ``runner-a.json`` for time and memory, ``work/cpu.json`` for work);
2. unchanged code, N runs under each of ``runner-a`` and ``runner-b`` with
   ``--llmperf-gate=work``; ``runner-b`` has no time baseline, only the shared work
   baseline, as a second CPU model would, and runs ATen's kernels built for no
   vector extension (``ATEN_CPU_CAPABILITY=default``) on two threads: another CPU,
   as far as one machine can be. Any failed test is a false alarm;
3. each injection of ``small_gpt.GPT_INJECT`` once per machine key (the counts are
   deterministic): which tests failed, and their ``REGRESSION work:`` line;
4. ``slow_same_work``, slower with the same PyTorch work: what the work gate
   cannot see, and what the time gate (all metrics, runner-a) says about it;
5. the cost of the signature pass: the same tests with the marker's ``work=False``
   against the default, runs interleaved, per-test seconds from JUnit XML.

It prints a markdown table and writes the raw results as JSON (``--out``).

    python scripts/evidence/work_gate_trials.py            # 10 unchanged runs per machine key
    python scripts/evidence/work_gate_trials.py --quick    # 1 per key, one injection, 1 cost pair

Exits 1 on a false alarm or an injection that failed other tests than it should.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MACHINES = ("runner-a", "runner-b")
#: What makes runner-b another CPU as far as this machine allows: ATen's kernels built for
#: no vector extension (ATEN_CPU_CAPABILITY=default instead of AVX2/AVX-512) and two
#: intra-op threads instead of the project's one. The work signature must not move.
MACHINE_SETUP: dict[str, tuple[dict[str, str], list[str]]] = {
    "runner-a": ({}, []),
    "runner-b": ({"ATEN_CPU_CAPABILITY": "default"}, ["--llmperf-threads=2"]),
}
TESTS = ("test_forward", "test_generate", "test_train_step", "test_compiled_forward")

TEST_MODULE = '''"""Performance tests of the small GPT, written as the README teaches."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # small_gpt.py: the project root
import small_gpt as gpt  # noqa: E402

CONFIG = gpt.GPTConfig()


@pytest.mark.llmperf(max_time=0.3)
def test_forward(llmperf):
    model = gpt.make_model(CONFIG).eval()
    idx, _ = gpt.make_batch(CONFIG, batch=2)

    @torch.inference_mode()
    def forward():
        return model(idx)

    llmperf.params(batch=2, seq=CONFIG.block_size)
    llmperf.pedantic(forward, items=idx.numel())


@pytest.mark.llmperf(max_time=0.3)
def test_generate(llmperf):
    model = gpt.make_model(CONFIG).eval()
    prompt, _ = gpt.make_batch(CONFIG, batch=1, length=8)
    llmperf.params(prompt=8, new_tokens=16)
    llmperf.pedantic(model.generate, args=(prompt, 16), items=16)


@pytest.mark.llmperf(max_time=0.5)
def test_train_step(llmperf):
    model = gpt.make_model(CONFIG).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx, targets = gpt.make_batch(CONFIG, batch=2, length=32)
    llmperf(gpt.train_step, model, optimizer, idx, targets)


@pytest.mark.llmperf(max_time=0.3)
def test_compiled_forward(llmperf):
    # backend="eager": dynamo's graphs, breaks and guards, without inductor's C++ compile.
    model = torch.compile(gpt.make_model(CONFIG).eval(), backend="eager")
    idx, _ = gpt.make_batch(CONFIG, batch=2)

    @torch.inference_mode()
    def forward():
        return model(idx)

    llmperf.pedantic(forward, items=idx.numel())
'''

#: What each injection is, and which tests should see it (from the throwaway counts).
INJECTIONS: dict[str, tuple[str, set[str]]] = {
    "extra_matmul": ("extra compute", set(TESTS)),
    "manual_attention": ("attention path", set(TESTS)),
    "upcast": ("precision (bf16 -> fp32)", set(TESTS)),
    "sync_in_loop": ("host-device sync", {"test_generate"}),
    "graph_break": ("torch.compile", {"test_compiled_forward"}),
    "recompile": ("torch.compile", {"test_compiled_forward"}),
    "keep_alive": ("memory (live tensors)", set(TESTS)),
    # The compiled test too: the work pass runs the program as written (dynamo steps aside
    # under a dispatch mode), which keeps the tensor that the compiled graph leaves out.
    "probe_list": ("memory kept between calls", set(TESTS)),
    "leak": ("memory leak", set(TESTS)),
    "slow_same_work": ("time only, same work", set()),
}
WORK_LINE = "REGRESSION work:"


# --------------------------------------------------------------------------- the project


def write_project(root: Path) -> None:
    """The user's project: small_gpt.py at its root, tests/ as written, tests_nowork/ for
    the cost comparison (the same tests with ``work=False`` in every marker)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "small_gpt.py", root / "small_gpt.py")
    # One intra-op thread, as the plugin's own suite: two threads that wait on each
    # other on a shared 2-core runner made this model 5-10x slower.
    (root / "pytest.ini").write_text("[pytest]\nllmperf_threads = 1\n")
    for name, module in (
        ("tests", TEST_MODULE),
        (
            "tests_nowork",
            re.sub(
                r"llmperf\(max_time=([0-9.]+)\)", r"llmperf(max_time=\1, work=False)", TEST_MODULE
            ),
        ),
    ):
        (root / name).mkdir(exist_ok=True)
        (root / name / "test_gpt.py").write_text(module)
    (root / "out").mkdir(exist_ok=True)


def pytest_process(
    root: Path,
    label: str,
    args: list[str],
    inject: str = "",
    tests: str = "tests",
    env_extra: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, Path, Path, float]:
    """Run one ``pytest --llmperf`` process in ``root`` with ``GPT_INJECT=inject``, its JUnit
    XML and JSON report under ``root/out/<label>``: the process, the two files and its
    wall time. An exit other than 0 or 1 (pass, failed tests) is an error."""
    junit = root / "out" / f"{label}.xml"
    report = root / "out" / f"{label}.json"
    for f in (junit, report):
        f.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--llmperf",
        tests,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        f"--llmperf-report={report}",
        *args,
    ]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for var in ("PYTEST_ADDOPTS", "GPT_INJECT", "GITHUB_STEP_SUMMARY"):
        env.pop(var, None)
    if inject:
        env["GPT_INJECT"] = inject
    env.update(env_extra or {})
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1) or not junit.exists():
        raise RuntimeError(
            f"pytest ({label}) exited {p.returncode}:\n{' '.join(cmd)}\n"
            f"{(p.stdout + p.stderr)[-4000:]}"
        )
    return p, junit, report, wall


def run_pytest(
    root: Path,
    label: str,
    args: list[str],
    inject: str = "",
    tests: str = "tests",
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One pytest process: its exit code, wall time, and per test the outcome, time,
    failure text and llmperf verdict (JUnit XML and the JSON report, not stdout)."""
    p, junit, report, wall = pytest_process(root, label, args, inject, tests, env_extra)
    return {
        "label": label,
        "inject": inject,
        "args": args,
        "rc": p.returncode,
        "wall_s": wall,
        "tests": _tests(junit, report),
        "output_tail": (p.stdout + p.stderr)[-3000:] if p.returncode else "",
    }


def save(results: dict[str, Any], text: str, out: Path) -> None:
    """Print the trial's tables and write them with the raw results as JSON to ``out``."""
    results["table"] = text
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print()
    print(text)


def project_dir(keep: Path | None, prefix: str) -> tuple[Path, Any]:
    """The trial project's directory: ``keep`` (its old baselines removed) or a temporary
    one, returned with the TemporaryDirectory that removes it (None for ``keep``)."""
    if keep:
        root = keep.resolve()
        if (root / "baselines").exists():
            shutil.rmtree(root / "baselines")
        return root, None
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    return Path(tmp.name), tmp


def junit_cases(junit: Path) -> dict[str, dict[str, Any]]:
    """Per test case of a JUnit XML file: outcome, seconds and the failure's text (its
    last 2000 characters, "" unless it failed)."""
    tests: dict[str, dict[str, Any]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                text = (el.get("message") or "") + "\n" + (el.text or "")
                break
        tests[case.get("name", "?")] = {
            "outcome": outcome,
            "time_s": float(case.get("time", "nan")),
            "failure": text[-2000:] if outcome in ("failed", "error") else "",
        }
    return tests


def _tests(junit: Path, report: Path) -> dict[str, dict[str, Any]]:
    """Per test: JUnit's outcome, time and failure text, the JSON report's verdict."""
    tests = junit_cases(junit)
    for entry in tests.values():
        entry["work_line"] = work_line(entry["failure"])
    if report.exists():
        for r in json.loads(report.read_text()).get("results", []):
            entry = tests.setdefault(r["nodeid"].split("::")[-1], {})
            entry["verdict"] = r.get("verdict")
            entry["verdict_lines"] = r.get("verdict_lines", [])
    return tests


def work_line(text: str) -> str:
    """The failure's ``REGRESSION work: ...`` line, "" when it has none."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(WORK_LINE):
            return line
    return ""


def order(name: str) -> int:
    """A test's place in the module, so every listing reads in the same order."""
    return TESTS.index(name) if name in TESTS else len(TESTS)


def failed(run: dict[str, Any]) -> list[str]:
    """Tests that failed or errored, whatever the reason."""
    bad = [n for n, t in run["tests"].items() if t.get("outcome") in ("failed", "error")]
    return sorted(bad, key=order)


def caught(run: dict[str, Any]) -> list[str]:
    """Tests that failed with a work regression line."""
    return [n for n in failed(run) if run["tests"][n].get("work_line")]


# --------------------------------------------------------------------------- the trials


def emulate_runner_b(root: Path) -> str:
    """How runner-b differs from runner-a on this machine. Where the model cannot run on
    ATen's kernels built for no vector extension (torch 2.13 on an AMX CPU: bf16
    ``scaled_dot_product_attention`` raises "pack_vnni2 is only supported when avx512 is
    supported" under any ``ATEN_CPU_CAPABILITY`` below avx512), runner-b keeps only its
    second thread, and says so: the trial is then weaker, not wrong."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    probe = "import small_gpt as g; m = g.make_model(); m(g.make_batch(g.GPTConfig(), 2)[0])"
    p = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True
    )
    if p.returncode == 0:
        return "ATEN_CPU_CAPABILITY=default, 2 threads"
    error = (p.stderr.strip().splitlines() or ["?"])[-1]
    MACHINE_SETUP["runner-b"] = ({}, ["--llmperf-threads=2"])
    print(f"runner-b: 2 threads only; ATEN_CPU_CAPABILITY=default fails here: {error}")
    return f"2 threads only (ATEN_CPU_CAPABILITY=default fails here: {error})"


def record(root: Path) -> dict[str, Any]:
    """The baseline of the unchanged code: runner-a's time file and the work file."""
    run = run_pytest(
        root,
        "baseline",
        [
            "--llmperf-update-baselines",
            "--llmperf-machine=runner-a",
            f"--llmperf-baselines={root / 'baselines'}",
        ],
    )
    files = sorted(str(p.relative_to(root)) for p in (root / "baselines").rglob("*.json"))
    run["baseline_files"] = files
    if run["rc"] or not any(f.startswith("baselines/work/") for f in files):
        raise RuntimeError(
            f"baseline refresh failed or wrote no work file ({files}):\n{run['output_tail']}"
        )
    print(f"baseline recorded in {run['wall_s']:.1f} s: {', '.join(files)}", flush=True)
    return run


def gate(
    root: Path, label: str, machine: str, inject: str = "", work_only: bool = True
) -> dict[str, Any]:
    """One compare run under ``machine``; ``work_only``: only work metrics decide."""
    env_extra, extra_args = MACHINE_SETUP[machine]
    args = [f"--llmperf-machine={machine}", f"--llmperf-baselines={root / 'baselines'}"]
    args += extra_args
    if work_only:
        args.append("--llmperf-gate=work")
    run = run_pytest(root, label, args, inject, env_extra=env_extra)
    run["machine"] = machine
    bad = failed(run)
    print(
        f"  {label:34s} {run['wall_s']:5.1f} s  "
        + (f"failed: {', '.join(bad)}" if bad else "all passed"),
        flush=True,
    )
    return run


def cost(root: Path, pairs: int) -> dict[str, Any]:
    """Per-test seconds with the signature pass and without (``work=False``), interleaved
    pairs against an empty baselines directory: measurement only, nothing compared."""
    empty = root / "cost_baselines"
    empty.mkdir(exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for i in range(pairs):
        for mode, tests in (("on", "tests"), ("off", "tests_nowork")):
            run = run_pytest(
                root, f"cost_{mode}_{i}", [f"--llmperf-baselines={empty}"], tests=tests
            )
            runs[mode].append(run)
            print(f"  cost work {mode:3s} #{i}  {run['wall_s']:5.1f} s", flush=True)
    per_test = {}
    for name in TESTS:
        on = statistics.median(r["tests"][name]["time_s"] for r in runs["on"])
        off = statistics.median(r["tests"][name]["time_s"] for r in runs["off"])
        per_test[name] = {"on_s": on, "off_s": off, "extra_s": on - off}
    tests_on = statistics.median(sum(t["time_s"] for t in r["tests"].values()) for r in runs["on"])
    tests_off = statistics.median(
        sum(t["time_s"] for t in r["tests"].values()) for r in runs["off"]
    )
    wall_on = statistics.median(r["wall_s"] for r in runs["on"])
    wall_off = statistics.median(r["wall_s"] for r in runs["off"])
    return {
        "pairs": pairs,
        "per_test": per_test,
        "tests_on_s": tests_on,
        "tests_off_s": tests_off,
        "extra_per_test_s": (tests_on - tests_off) / len(TESTS),
        "wall_on_s": wall_on,
        "wall_off_s": wall_off,
        "wall_ratio": wall_on / wall_off,
        "runs": runs,
    }


# --------------------------------------------------------------------------- the table


def short(text: str, width: int = 110) -> str:
    """One table cell: whitespace collapsed (dynamo pads its guard text), pipes escaped."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 3] + "..."


def table(results: dict[str, Any]) -> str:
    """One row per injection, both machine keys' runs together."""
    lines = [
        "| category | injection | caught by work gate (runs caught / runs) | tests failed | work diff (first failing test, shortened) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for inject in results["injections"]:
        category = INJECTIONS[inject][0]
        runs = [r for m in MACHINES for r in results["injections"][inject].get(m, [])]
        n_caught = sum(bool(caught(r)) for r in runs)
        names = sorted({n for r in runs for n in failed(r)}, key=order)
        diff = next(
            (
                f"{n}: {r['tests'][n]['work_line'][len(WORK_LINE) :].strip()}"
                for r in runs
                for n in caught(r)
            ),
            "",
        )
        lines.append(
            f"| {category} | `{inject}` | {n_caught}/{len(runs)} | "
            f"{', '.join(n.removeprefix('test_') for n in names) or 'none'} | {short(diff) or '-'} |"
        )
    return "\n".join(lines)


def wrong_injections(results: dict[str, Any]) -> list[str]:
    """Injection runs that did not fail exactly their expected tests on a work line."""
    surprises = []
    for inject, runs in results["injections"].items():
        expected = INJECTIONS[inject][1]
        for m, machine_runs in runs.items():
            for r in machine_runs:
                got = set(caught(r))
                if got != expected or set(failed(r)) != got:
                    surprises.append(
                        f"{inject} on {m}: expected {sorted(expected) or 'none'}, work-caught "
                        f"{sorted(got) or 'none'}, failed {failed(r) or 'none'}"
                    )
    return surprises


def summary_lines(results: dict[str, Any]) -> list[str]:
    """False alarms, surprises, what the time gate saw, the cost, the run time."""
    out = [f"runner-b on this machine: {results.get('runner_b', '?')}."]
    aa = [r for m in MACHINES for r in results["unchanged"][m]]
    alarms = sum(bool(failed(r)) for r in aa)
    per = ", ".join(
        f"{m} {sum(bool(failed(r)) for r in results['unchanged'][m])}/{len(results['unchanged'][m])}"
        for m in MACHINES
    )
    verdicts: dict[str, int] = {}
    for r in aa:
        for t in r["tests"].values():
            verdicts[str(t.get("verdict"))] = verdicts.get(str(t.get("verdict")), 0) + 1
    out.append(
        f"False alarms (unchanged code, `--llmperf-gate=work`): {alarms}/{len(aa)} runs ({per}); "
        f"test verdicts: {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))}."
    )
    surprises = wrong_injections(results)
    out.append(
        "Every injection failed exactly the expected tests."
        if not surprises
        else "Unexpected: " + "; ".join(surprises)
    )
    slow = results.get("slow_time_gate")
    if slow:
        verdicts = ", ".join(
            f"{n.removeprefix('test_')} {t.get('verdict')}"
            for n, t in sorted(slow["tests"].items(), key=lambda x: order(x[0]))
        )
        out.append(f"`slow_same_work` under the time gate (all metrics, runner-a): {verdicts}.")
    c = results.get("cost")
    if c:
        each = ", ".join(
            f"{n.removeprefix('test_')} {v['off_s']:.2f} -> {v['on_s']:.2f}"
            for n, v in c["per_test"].items()
        )
        out.append(
            f"Signature pass cost (work=False vs default, median of {c['pairs']} interleaved "
            f"pair(s)): the 4 tests {c['tests_off_s']:.2f} s -> {c['tests_on_s']:.2f} s, "
            f"{c['extra_per_test_s']:+.2f} s per test; whole run {c['wall_off_s']:.1f} s -> "
            f"{c['wall_on_s']:.1f} s (x{c['wall_ratio']:.2f}). Per test ({each} s) a one-time "
            "import of torch._dynamo (~1.3 s a process, which AdamW and torch.compile need "
            "anyway) lands in whichever test first needs it."
        )
    walls = [r["wall_s"] for r in aa]
    out.append(
        f"One gated pytest run of the project: median {statistics.median(walls):.1f} s (wall, 4 tests)."
    )
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    """Build the project, run the trials, print the table, write the JSON; exit 1 on a false
    alarm or an injection that failed other tests than expected."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="1 unchanged run per machine key, not 10; one injection (extra_matmul, runner-a "
        "only); 1 cost pair",
    )
    ap.add_argument("--keep", type=Path, help="build and keep the project in this directory")
    ap.add_argument("--out", type=Path, default=None, help="the JSON results' file")
    ap.add_argument("--runs-per-injection", type=int, default=1, help="per machine key")
    ap.add_argument("--unchanged-runs", type=int, default=None, help="per machine key (10)")
    ap.add_argument(
        "--injections", default=None, help="comma-separated (default: all; quick: extra_matmul)"
    )
    ap.add_argument(
        "--cost-pairs", type=int, default=None, help="work on/off pairs (default 3; 1 quick)"
    )
    args = ap.parse_args()
    unchanged_runs = args.unchanged_runs or (1 if args.quick else 10)
    pairs = args.cost_pairs or (1 if args.quick else 3)
    injections = ["extra_matmul"] if args.quick else list(INJECTIONS)
    if args.injections:
        injections = args.injections.split(",")
        unknown = sorted(set(injections) - set(INJECTIONS))
        if unknown:
            ap.error(f"--injections: unknown {', '.join(unknown)}; known: {', '.join(INJECTIONS)}")
    if args.out is None:  # a quick run never overwrites a full run's results
        args.out = Path(f"/tmp/work_gate_trials{'_quick' if args.quick else ''}.json")

    root, tmp = project_dir(args.keep, "work_gate_trials_")
    t_start = time.perf_counter()
    try:
        write_project(root)
        results: dict[str, Any] = {"project": str(root), "python": sys.version.split()[0]}
        results["runner_b"] = emulate_runner_b(root)
        results["baseline"] = record(root)
        print(f"unchanged code, {unchanged_runs} runs per machine key:", flush=True)
        results["unchanged"] = {
            m: [gate(root, f"unchanged_{m}_{i}", m) for i in range(unchanged_runs)]
            for m in MACHINES
        }
        print("injections:", flush=True)
        results["injections"] = {
            inject: {
                m: [
                    gate(root, f"{inject}_{m}_{i}", m, inject)
                    for i in range(args.runs_per_injection)
                ]
                for m in (MACHINES[:1] if args.quick else MACHINES)
            }
            for inject in injections
        }
        print("slow_same_work under the time gate:", flush=True)
        results["slow_time_gate"] = gate(
            root, "slow_same_work_time_gate", "runner-a", "slow_same_work", work_only=False
        )
        print("cost of the signature pass:", flush=True)
        results["cost"] = cost(root, pairs)
        results["elapsed_s"] = time.perf_counter() - t_start
    finally:
        if tmp is not None:
            tmp.cleanup()

    text = table(results) + "\n\n" + "\n".join(f"- {line}" for line in summary_lines(results))
    save(results, text, args.out)
    print(f"\n{results['elapsed_s'] / 60:.1f} min; raw results: {args.out}")
    alarms = [r["label"] for m in MACHINES for r in results["unchanged"][m] if failed(r)]
    for line in [f"false alarm: {a}" for a in alarms] + wrong_injections(results):
        print(line, file=sys.stderr)
    return 1 if alarms or wrong_injections(results) else 0


if __name__ == "__main__":
    sys.exit(main())
