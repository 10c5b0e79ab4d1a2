"""The reference tree: REF checked out into a temporary git worktree, removed at the end.

A worktree shares the repository's objects, so checking out even a large project
takes a second or two, and the user's own checkout is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Hands the worktree made by the xdist controller to its workers.
TREE_ENV = "LLMPERF_COMPARE_TREE"


class CompareError(Exception):
    """A ``--llmperf-compare`` that cannot run; the message names the option and value."""


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CompareError("--llmperf-compare needs git, which is not on PATH") from None
    if done.returncode != 0:
        raise CompareError(done.stderr.strip() or f"git {' '.join(args)} failed")
    return done.stdout.strip()


@dataclass
class Worktree:
    """REF as a commit, its checkout, and the candidate's repository root."""

    ref: str
    sha: str
    #: The candidate's repository root (the user's working tree).
    top: Path
    #: The reference checkout.
    path: Path

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.sha[:10]})" if self.ref != self.sha else self.sha[:10]

    def tree_path(self, candidate_path: Path) -> Path:
        """Where ``candidate_path`` (inside the candidate's repository) is in the reference."""
        return self.path / candidate_path.resolve().relative_to(self.top)

    def to_environment(self) -> str:
        return json.dumps([self.ref, self.sha, str(self.top), str(self.path)])

    def remove(self) -> None:
        os.environ.pop(TREE_ENV, None)
        with contextlib.suppress(CompareError):
            _git(self.top, "worktree", "remove", "--force", str(self.path))
        shutil.rmtree(self.path.parent, ignore_errors=True)


def from_environment() -> Worktree | None:
    """The worktree another process of this run made, if any."""
    raw = os.environ.get(TREE_ENV)
    if not raw:
        return None
    ref, sha, top, path = json.loads(raw)
    return Worktree(ref, sha, Path(top), Path(path))


def repository_root(path: Path) -> Path:
    try:
        return Path(_git(path, "rev-parse", "--show-toplevel")).resolve()
    except CompareError as exc:
        raise CompareError(
            f"--llmperf-compare: {path} is not inside a git repository ({exc})"
        ) from None


def check_out(ref: str, inside: Path) -> Worktree:
    """REF of the repository holding ``inside``, in a new temporary worktree."""
    top = repository_root(inside)
    try:
        sha = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except CompareError:
        sha = ""
    if not sha:
        raise CompareError(
            f"--llmperf-compare={ref}: not a branch, tag or commit of the repository {top}"
        )
    parent = Path(tempfile.mkdtemp(prefix="llmperf-compare-"))
    path = parent / "reference"
    try:
        _git(top, "worktree", "add", "--detach", "--quiet", str(path), sha)
    except CompareError as exc:
        shutil.rmtree(parent, ignore_errors=True)
        raise CompareError(f"--llmperf-compare={ref}: git worktree add failed: {exc}") from None
    return Worktree(ref, sha, top, path)
