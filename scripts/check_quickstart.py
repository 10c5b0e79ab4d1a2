"""The README's quick start, as a new user meets it: the wheel built from this checkout,
installed with no extra into a fresh virtual environment, a new project holding the
quick start's test file, and the quick start's commands run there.

    python scripts/check_quickstart.py [--keep DIR]

Checks: the plain run passes its three tests once each, the first ``--llmperf`` run and
the refresh pass, the work-gated compare passes (exact counts: it cannot flap), none of
the optional packages was installed, and an option that needs one names its extra.
Exits 1 on the first check that fails. `.ci/run` runs it; about a minute here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit"))
from test_readme import QUICK_START, quick_start_commands, quick_start_test  # noqa: E402

from pytest_llmperf.extras import EXTRAS  # noqa: E402

#: The CPU build of torch that .ci/run and the README's set-up install.
TORCH = "torch==2.13.0"
#: Every extra's module (``pytest_llmperf.extras``): none may come with the plain wheel.
OPTIONAL = tuple(EXTRAS)


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    print("$", " ".join(args), flush=True)
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        print(out[-4000:])
        raise SystemExit(f"check_quickstart: failed (exit {proc.returncode}): {' '.join(args)}")
    return out


def expect(condition: bool, what: str, out: str = "") -> None:
    if not condition:
        print(out[-4000:])
        raise SystemExit(f"check_quickstart: {what}")
    print(f"ok: {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmperf-quickstart-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        dist = root / "dist"
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "-w",
                str(dist),
                str(REPO),
            ],
            root,
        )
        (wheel,) = dist.glob("pytest_llmperf-*.whl")
        venv = root / "venv"
        run([sys.executable, "-m", "venv", str(venv)], root)
        py = str(venv / "bin" / "python")
        run([py, "-m", "pip", "install", "--quiet", TORCH], root)
        run([py, "-m", "pip", "install", "--quiet", str(wheel)], root)
        probe = f"import importlib.util as u; print([m for m in {OPTIONAL!r} if u.find_spec(m)])"
        present = run([py, "-c", probe], root).strip()
        expect(present == "[]", f"no optional package installed without extras (found {present})")

        project = root / "project"
        (project / Path(QUICK_START).parent).mkdir(parents=True, exist_ok=True)
        (project / QUICK_START).write_text(quick_start_test())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LLMPERF"))}
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        commands = [c for c in quick_start_commands() if c.startswith("pytest")]
        plain, update, compare = commands
        out = run(plain.split(), project, env)
        expect("3 passed" in out and "ran once" in out, f"`{plain}`: 3 passed, each once", out)
        out = run(["pytest", "--llmperf", "tests/perf"], project, env)
        expect("3 passed" in out and "no-baseline" in out, "first --llmperf run: green", out)
        out = run(update.split(), project, env)
        expect(
            "3 passed" in out and (project / "baselines/work/cpu.json").exists(), f"`{update}`", out
        )
        out = run([*compare.split(), "--llmperf-gate=work"], project, env)
        expect("3 passed" in out, f"`{compare} --llmperf-gate=work`: green", out)
        proc = subprocess.run(
            ["pytest", "--llmperf", "tests/perf", "--llmperf-benchmark-json=b.json"],
            cwd=project, env=env, capture_output=True, text=True,
        )  # fmt: skip
        said = proc.stdout + proc.stderr
        expect(
            proc.returncode == 4 and "pytest-llmperf[export]" in said,
            "--llmperf-benchmark-json without pytest-benchmark: a usage error naming the extra",
            said,
        )
    print("check_quickstart: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
