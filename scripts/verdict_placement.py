"""Does a verdict depend on where and how its test runs? One test file, five placements.

The file runs under the work gate (as CI runs the suite) once as a whole, then: one
test alone by node id, every test in reverse order, under load (two busy processes),
with another ``ATEN_CPU_CAPABILITY``, and from another directory by absolute paths.
Each placement's verdicts and work counts are held against the whole-file run's.
Another CPU capability is another dispatch context: there equal counts are expected
(``work_gate`` "equal"), other counts only inform.

    python scripts/verdict_placement.py                      # the Llama decode file
    python scripts/verdict_placement.py tests/benchmarks/test_kv_cache.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUSY = [sys.executable, "-c", "while 1: pass"]


def run(label: str, args: list[str], out: Path, cwd: Path = REPO, **env: str) -> dict:
    """The run's results by node id: verdict, work gate and work counts."""
    report = out / f"{label}.json"
    cmd = [sys.executable, "-m", "pytest", *args, "--llmperf", "--llmperf-gate=work", "-q"]
    cmd += ["-p", "no:cacheprovider", f"--llmperf-report={report}"]
    done = subprocess.run(cmd, cwd=cwd, env=os.environ | env, capture_output=True, text=True)
    load = os.getloadavg()[0]
    print(f"{label}: {done.stdout.strip().splitlines()[-1]} (load {load:.1f})")
    return {
        r["nodeid"]: (
            r["verdict"],
            r["work_gate"],
            {k: m["value"] for k, m in r["metrics"].items() if m["kind"] == "work"},
        )
        for r in json.loads(report.read_text())["results"]
    }


@contextmanager
def busy(n: int = 2):
    procs = [subprocess.Popen(BUSY) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/benchmarks/test_llama_decode.py"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        whole = run("whole file", [path], out)
        ids = list(whole)
        placements = {"alone": run("alone", [ids[len(ids) // 2]], out)}
        placements["reversed"] = run("reversed", ids[::-1], out)
        with busy():
            placements["under load"] = run("under load", [path], out)
        capability = os.environ.get("PLACEMENT_CAPABILITY", "avx2")
        placements["capability"] = run("capability", [path], out, ATEN_CPU_CAPABILITY=capability)
        placements["absolute"] = run(
            "absolute",
            ["-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO), str(REPO / path)],
            out,
            cwd=Path(tmp),
        )
    differ = 0
    for label, results in placements.items():
        missing = sorted(set(whole) - set(results)) if label != "alone" else []
        for nodeid in missing:  # skipped here: its skip reason says why (pytest -rs)
            print(f"  {label}: {nodeid}: not measured in this placement (skipped)")
        for nodeid, (verdict, gate, counts) in results.items():
            want_verdict, want_gate, want_counts = whole[nodeid]
            if label == "capability" and want_gate == "exact":
                want_gate = "equal" if counts == want_counts else "informed"
            if (verdict, gate, counts) != (want_verdict, want_gate, want_counts):
                differ += 1
                print(
                    f"  {label}: {nodeid}: {verdict}/{gate}, whole file {want_verdict}/{want_gate}"
                )
    print(f"{differ} verdicts differ from the whole-file run's")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
