#!/usr/bin/env python
"""History evidence: a small GPT's tests run by pytest over a series of real commits.

A scratch git repository holds ``scripts/evidence/small_gpt.py`` (as ``model.py``), a test
file and ``knobs.json``; each of ``--commits`` commits changes the knobs:

* ``test_step``: its call makes 15% more forwards from commit ``STEP_AT`` (20 of 40) on;
* ``test_creep``: 1% more per commit over the 15 commits from ``CREEP_FROM`` (10 .. 24
  of 40);
* ``test_flat_a``, ``test_flat_b``, ``test_flat_c``: the control, never changed (three
  sizes, three flat histories).

Every commit is checked out in one git worktree and measured by a real
``pytest --llmperf --llmperf-history=DIR`` run. Then ``python -m pytest_llmperf history``
reads DIR, and this script checks its JSON: the time metric's step found at its commit
(within one), the creep flagged, nothing on any flat test; and the work metrics (FLOPs:
exact), the step at its commit exactly and the creep over exactly its commits. Finally the
gate: ``--llmperf-history-gate`` at the last commit fails the step and creep tests and
passes the flat ones; once both are acknowledged (``history ack``), it passes them all.

    python scripts/evidence/history_series.py                # 40 commits, about 10 min
    python scripts/evidence/history_series.py --keep DIR     # leave the repo and history
    python scripts/evidence/history_series.py --quick        # 8 commits, work checks only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Forwards per call at the base: one forward more is 1% more work.
BASE_N = 100
STEP, STEP_AT = 15, 20
CREEP_FROM, CREEP_COMMITS = 10, 15
FLAT = ("test_flat_a", "test_flat_b", "test_flat_c")

TESTS = """\
import json
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig

KNOBS = json.loads((Path(__file__).parent / "knobs.json").read_text())
CONFIG = GPTConfig(n_layer=2, n_embd=64, n_head=4, block_size=16, dtype=torch.float32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(CONFIG).to(CONFIG.dtype).eval()


def forwards(llmperf, model, n):
    # n forwards of a small batch: one forward more is 1% more work at the base
    idx = torch.randint(0, CONFIG.vocab_size, (8, CONFIG.block_size))

    def run():
        with torch.no_grad():
            for _ in range(n):
                model(idx)

    llmperf(run)


def test_step(llmperf, model):
    forwards(llmperf, model, {base} * (100 + KNOBS["step"]) // 100)


def test_creep(llmperf, model):
    forwards(llmperf, model, {base} * (100 + KNOBS["creep"]) // 100)


@pytest.mark.parametrize("n", [{base} // 2, {base}, {base} * 3 // 2], ids=["a", "b", "c"])
def test_flat(llmperf, model, n):
    forwards(llmperf, model, n)
""".replace("{base}", str(BASE_N))

CONFTEST = """\
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.llmperf(rounds={rounds}, warmup={warmup}))
"""


def marks(commits: int) -> tuple[int, int, int]:
    """The step's commit, the creep's first and last, scaled from 40 commits to ``commits``."""
    first = CREEP_FROM * commits // 40
    return STEP_AT * commits // 40, first, first + max(CREEP_COMMITS * commits // 40, 3) - 1


def knobs(i: int, commits: int) -> dict[str, int]:
    """Commit ``i``'s knobs (percent of the base batch); the creep climbs 1% per commit."""
    step_at, first, last = marks(commits)
    return {
        "step": STEP if i >= step_at else 0,
        "creep": min(max(i - first + 1, 0), last - first + 1),
    }


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(repo: Path, commits: int) -> list[str]:
    """The scratch repository, one commit per knob setting; their hashes, oldest first."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "evidence@example.invalid")
    git(repo, "config", "user.name", "evidence")
    shutil.copy(HERE / "small_gpt.py", repo / "model.py")
    (repo / "test_series.py").write_text(TESTS)
    rounds, warmup = (2, 1) if commits < 10 else (9, 2)  # --quick checks work only
    (repo / "conftest.py").write_text(CONFTEST.format(rounds=rounds, warmup=warmup))
    (repo / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    shas = []
    for i in range(commits):
        (repo / "knobs.json").write_text(json.dumps(knobs(i, commits)) + "\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "--allow-empty", "-m", f"commit {i}: {knobs(i, commits)}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


def pytest_run(tree: Path, history: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "--llmperf", f"--llmperf-history={history}"]
    return subprocess.run([*cmd, *extra], cwd=tree, capture_output=True, text=True)


def history_json(history: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest_llmperf", "history", str(history), "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def find(facts: dict, test: str, metric: str) -> dict:
    hits = [s for s in facts["series"] if s["test"].endswith(test) and s["metric"] == metric]
    assert len(hits) == 1, (test, metric, len(hits))
    return hits[0]


def check(facts: dict, shas: list[str], quick: bool) -> list[str]:
    """Every claim of the docstring, as (claim, held) lines; the failed ones start with FAIL."""
    lines = []

    def claim(text: str, held: bool) -> None:
        lines.append(("ok    " if held else "FAIL  ") + text)

    def changes(test: str, metric: str) -> list[dict]:
        return find(facts, test, metric)["changes"]

    step_at, first, last = marks(len(shas))
    metrics = ["work.flops"] if quick else ["work.flops", "time"]
    for metric in metrics:
        exact = metric.startswith("work")
        got = changes("test_step", metric)
        at = [shas.index(c["commit"]) for c in got]
        want = f"step at commit {step_at}" + ("" if exact else " (within one)")
        claim(
            f"{metric}: test_step {want}: found {[(c['kind'], i) for c, i in zip(got, at, strict=True)]}",
            len(got) == 1
            and got[0]["kind"] == "step"
            and abs(at[0] - step_at) <= (0 if exact else 1),
        )
        got = changes("test_creep", metric)
        spans = [(c["kind"], shas.index(c["commit"]), shas.index(c["end_commit"])) for c in got]
        ok = len(got) == 1 and got[0]["kind"] == "creep"
        claim(
            f"{metric}: test_creep creep from commit {first}"
            + (f" to {last}" if exact else " (within 3)")
            + f": found {spans}",
            ok and (spans[0][1:] == (first, last) if exact else abs(spans[0][1] - first) <= 3),
        )
        for flat in FLAT:
            test = f"test_flat[{flat[-1]}]"
            got = changes(test, metric)
            claim(f"{metric}: {test} (flat) no change: {len(got)} found", got == [])
    return lines


def record(tree: Path, history: Path, shas: list[str]) -> bool:
    """Each commit checked out and measured, appending to the history."""
    load = os.getloadavg()[0]
    start = time.monotonic()
    for i, sha in enumerate(shas):
        git(tree, "checkout", "-q", "--detach", sha)
        done = pytest_run(tree, history)
        print(
            f"commit {i:2d} {sha[:8]} {knobs(i, len(shas))} exit {done.returncode} "
            f"load {os.getloadavg()[0]:.1f} {time.monotonic() - start:.0f}s",
            flush=True,
        )
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            return False
    print(f"{len(shas)} runs in {time.monotonic() - start:.0f}s, load {load:.1f} at the start")
    return True


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="8 commits, the work checks only")
    ap.add_argument("--keep", type=Path, help="build the repo and history here and keep them")
    ap.add_argument(
        "--analyse-only", action="store_true", help="read the history --keep left, run nothing"
    )
    args = ap.parse_args(argv)
    commits = 6 if args.quick else args.commits
    work = args.keep or Path(tempfile.mkdtemp(prefix="llmperf-history-"))
    repo, tree, history = work / "repo", work / "tree", work / "history"
    if args.analyse_only:
        shas = git(repo, "log", "--reverse", "--format=%H").split()
    else:
        shas = make_repo(repo, commits)
        git(repo, "worktree", "add", "-q", "--detach", str(tree), shas[0])
        if not record(tree, history, shas):
            return 1
    facts = history_json(history, work / "history.json")
    lines = check(facts, shas, args.quick)
    if not args.quick:
        lines += gate(tree, history, shas)
    print("\n".join(lines))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


def gate(tree: Path, history: Path, shas: list[str]) -> list[str]:
    """The history gate at the last commit: before and after acknowledging both changes."""
    out = []
    args = ("--llmperf-history-gate", "-rf")
    before = pytest_run(tree, history, *args)
    failed = sorted(
        line.split()[1] for line in before.stdout.splitlines() if line.startswith("FAILED")
    )
    want = ["test_series.py::test_creep", "test_series.py::test_step"]
    out.append(("ok    " if failed == want else "FAIL  ") + f"gate fails {failed}")
    for test, commit in (("test_step", shas[STEP_AT]), ("test_creep", shas[CREEP_FROM])):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_llmperf",
                "history",
                "ack",
                str(history),
                "--test",
                f"test_series.py::{test}",
                "--commit",
                commit,
                "--reason",
                "evidence",
            ],
            check=True,
        )
    after = pytest_run(tree, history, *args)
    out.append(
        ("ok    " if after.returncode == 0 else "FAIL  ")
        + f"after the acknowledgements: exit {after.returncode}"
    )
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
