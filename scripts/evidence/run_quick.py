#!/usr/bin/env python
"""Run every evidence script of this folder in its ``--quick`` mode, one after another.

The scripts here are the measurements the docs cite; nothing else runs them, so
without this they rot unseen. Each one's ``--quick`` is its full run made small
(the same code path, tiny sizes, few trials) that exits non-zero when its own
checks fail. This runs each from a temporary directory (nothing lands in the
repository), prints one line per script with its exit status and wall time, and
exits 1 when a script fails, times out, or has no ``--quick`` option.

    python scripts/evidence/run_quick.py               # all of them
    python scripts/evidence/run_quick.py scale noise   # those whose name contains these
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The evidence scripts: every ``*.py`` here but this runner."""
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)


def has_quick(path: Path) -> bool:
    """Whether the script declares ``add_argument("--quick", ...)``: read, not run (running
    one imports torch)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
            and any(isinstance(a, ast.Constant) and a.value == "--quick" for a in node.args)
        ):
            return True
    return False


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="only the scripts whose name contains these")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per script")
    ap.add_argument("--quick", action="store_true", help="accepted; this runner is quick mode")
    args = ap.parse_args(argv)
    chosen = [p for p in scripts() if not args.names or any(n in p.name for n in args.names)]
    failed = []
    start = time.monotonic()
    print(f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    for path in chosen:
        if not has_quick(path):
            failed.append(path.name)
            print(f"FAIL {path.name}: no --quick option", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix=f"evidence-{path.stem}-") as tmp:
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    [sys.executable, str(path), "--quick"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                )
                rc, out = proc.returncode, proc.stdout + proc.stderr
            except subprocess.TimeoutExpired as exc:
                rc, out = None, f"timed out after {args.timeout:.0f} s\n{exc.stdout or ''}"
            wall = time.monotonic() - t0
        ok = rc == 0
        print(f"{'ok  ' if ok else 'FAIL'} {path.name}: exit {rc}, {wall:.0f} s", flush=True)
        if not ok:
            failed.append(path.name)
            tail = out if isinstance(out, str) else out.decode(errors="replace")
            print("    " + tail[-3000:].replace("\n", "\n    "), flush=True)
    print(
        f"\n{len(chosen) - len(failed)}/{len(chosen)} evidence scripts passed --quick in "
        f"{time.monotonic() - start:.0f} s (load average {os.getloadavg()[0]:.1f} at the end)"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
