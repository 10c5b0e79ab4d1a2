#!/usr/bin/env python
"""What does the plugin cost per test, at 2,000 tests? Side by side with pytest-benchmark.

A generated project of N tiny tests (``sum(range(200))``, 3 rounds, no warm-up),
written three ways: plain (the body calls the function 3 times), pytest-benchmark's
``benchmark.pedantic(rounds=3, warmup_rounds=0)``, and ``llmperf`` with the marker
``rounds=3, warmup=0``. Each mode runs in a subprocess, the modes interleaved for
``--repeat`` rounds so machine drift spreads over all of them:

- ``plain``: ``pytest`` of the plain tests;
- ``benchmark``: ``pytest`` of the pytest-benchmark tests;
- ``refresh``: ``pytest --llmperf --llmperf-update-baselines`` of the llmperf tests;
- ``compare``: ``pytest --llmperf`` against the baseline the refresh wrote.

Per-test overhead is (mode - plain) / N. It also reports the baseline file's size
per entry, how many tests a compare re-measured (a re-measurement that cannot
change the outcome is waste), the verdict counts, and, with ``--profile``, the
top functions of a compare under cProfile.

    python scripts/evidence/scale.py                 # 2,000 tests, 3 repeats
    python scripts/evidence/scale.py --tests 500 --repeat 1 --profile
    python scripts/evidence/scale.py --quick   # 20 tests, 1 repeat: the same runs, for CI

Exits 1 when a run fails a test or a mode does not pass all of its N tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = """import pytest

def work():
    return sum(range(200))

IDS = range({n})
"""
BODIES = {
    "plain": """
@pytest.mark.parametrize("i", IDS)
def test_tiny(i):
    for _ in range(3):
        work()
""",
    "benchmark": """
@pytest.mark.parametrize("i", IDS)
def test_tiny(benchmark, i):
    benchmark.pedantic(work, rounds=3, warmup_rounds=0)
""",
    "llmperf": """
@pytest.mark.parametrize("i", IDS)
@pytest.mark.llmperf(rounds=3, warmup=0)
def test_tiny(llmperf, i):
    llmperf(work)
""",
}
#: mode -> (test file, extra pytest arguments)
MODES = {
    "plain": ("plain", []),
    "benchmark": ("benchmark", []),
    "refresh": ("llmperf", ["--llmperf", "--llmperf-update-baselines"]),
    "compare": ("llmperf", ["--llmperf"]),
}


#: The project imports torch, as every project of LLM workloads does: its import (2-3 s)
#: and what it costs pytest per test (its logging plugin visits torch's loggers in every
#: phase) are then every mode's, not the plugin's.
CONFTEST = "import torch  # noqa: F401\n"


def make_project(root: Path, n: int, torch: bool = True) -> None:
    for name, body in BODIES.items():
        (root / f"test_{name}.py").write_text(HEADER.format(n=n) + body)
    (root / "conftest.py").write_text(CONFTEST if torch else "")
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")


def run(
    root: Path, mode: str, extra: list[str], profile: Path | None = None, src: str = ""
) -> dict:
    """One pytest run of ``mode`` in a subprocess; ``src`` is a plugin tree to import instead
    of the installed one."""
    test_file, args = MODES[mode]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "pytest", f"test_{test_file}.py", "-q", "-p", "no:randomly", *args, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode not in (0, 1):
        sys.exit(f"{mode} failed ({proc.returncode}):\n{out[-3000:]}")
    counts = dict(
        (k, int(v)) for v, k in re.findall(r"(\d+) (passed|failed|inconclusive|skipped)", out)
    )
    verdicts = re.search(
        r"^((?:\d+ (?:pass|inconclusive|regression|improved|no-baseline|recorded),? ?)+)$",
        out,
        re.MULTILINE,
    )
    return {
        "wall": wall,
        "rc": proc.returncode,
        "counts": counts,
        "verdicts": verdicts.group(1) if verdicts else "",
    }


def remeasured(report: Path, rounds: int = 3) -> int:
    """Tests whose time has more samples than one pass of ``rounds``: re-measured."""
    data = json.loads(report.read_text())
    return sum(
        len(r["metrics"].get("time", {}).get("samples", [])) > rounds for r in data["results"]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20 tests, 1 repeat (for CI)")
    ap.add_argument("--profile", action="store_true", help="cProfile one compare and refresh")
    ap.add_argument("--out", type=Path, help="write the raw figures as JSON")
    ap.add_argument(
        "--no-torch", action="store_true", help="a project that never imports torch itself"
    )
    ap.add_argument(
        "--before",
        metavar="SRC",
        help="also run this plugin source tree (a checkout of an older commit), side by side",
    )
    a = ap.parse_args()
    if a.quick:
        a.tests, a.repeat = 20, 1
    wrong: list[str] = []
    os.environ["OMP_NUM_THREADS"] = "1"
    plugins = {"": ""} | ({"before ": a.before} if a.before else {})
    with tempfile.TemporaryDirectory(prefix="llmperf-scale-") as tmp:
        roots = {}
        for label, src in plugins.items():
            roots[label] = Path(tmp) / (label.strip() or "after")
            roots[label].mkdir()
            make_project(roots[label], a.tests, torch=not a.no_torch)
            run(roots[label], "refresh", [], src=src)  # the baseline every compare reads
        rows = [("", "plain"), ("", "benchmark")] + [
            (label, mode) for label in plugins for mode in ("refresh", "compare")
        ]
        walls: dict[str, list[float]] = {label + mode: [] for label, mode in rows}
        last: dict[str, dict] = {}
        for rep in range(a.repeat):
            for label, mode in rows:
                root = roots[label]
                extra = ["--llmperf-report=r.json"] if mode == "compare" else []
                out = run(root, mode, extra, src=plugins[label])
                if mode == "compare":
                    out["remeasured"] = remeasured(root / "r.json")
                last[label + mode] = out
                if out["rc"] != 0 or out["counts"].get("passed") != a.tests:
                    wrong.append(f"{label}{mode}: exit {out['rc']}, {out['counts']}")
                walls[label + mode].append(out["wall"])
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in walls.items()))
        plain = statistics.median(walls["plain"])
        bench_over = (statistics.median(walls["benchmark"]) - plain) / a.tests
        print()
        print(f"{a.tests} tests, {a.repeat} repeats interleaved, medians of wall seconds")
        print("| run | wall s | ms per test over plain | x pytest-benchmark's overhead |")
        print("|---|---|---|---|")
        figures: dict[str, dict] = {}
        for key, ws in walls.items():
            med = statistics.median(ws)
            over = (med - plain) / a.tests
            ratio = f"{over / bench_over:.1f}" if key != "plain" and bench_over > 0 else "-"
            figures[key] = {"walls": ws, "median": med, "ms_per_test": over * 1e3}
            print(f"| {key} | {med:.1f} | {over * 1e3:.2f} | {ratio} |")
        print()
        for label in plugins:
            root = roots[label]
            baseline = next((root / "baselines").glob("*.json"))
            entries = len(json.loads(baseline.read_text())["tests"])
            work = root / "baselines" / "work" / "cpu.json"
            compare = last[label + "compare"]
            figures[label + "files"] = {
                "machine_bytes_per_entry": baseline.stat().st_size / entries,
                "work_bytes_per_entry": work.stat().st_size / entries,
                "compare_verdicts": compare["verdicts"],
                "compare_remeasured": compare["remeasured"],
            }
            print(
                f"{label or 'after '}: machine baseline {baseline.stat().st_size / entries:.0f} "
                f"B/entry, work baseline {work.stat().st_size / entries:.0f} B/entry; last "
                f"compare: {compare['verdicts']}, {compare['remeasured']} tests re-measured"
            )
        if a.profile:
            import pstats

            for mode in ("compare", "refresh"):
                prof = roots[""] / f"{mode}.prof"
                run(roots[""], mode, [], profile=prof)
                print(f"\n--- {mode}: top functions by cumulative time")
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(45)
        if a.out:
            a.out.write_text(json.dumps({"tests": a.tests, "figures": figures}, indent=2))
    for line in wrong:
        print(f"not all {a.tests} tests passed: {line}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
