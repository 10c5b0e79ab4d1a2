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
from dataclasses import dataclass, field
from pathlib import Path

from ..config import flag

#: The option, as messages name it.
_OPTION = flag("compare")
#: Hands the worktree made by the xdist controller to its workers.
TREE_ENV = "LLMPERF_COMPARE_TREE"


class CompareError(Exception):
    """A ``--llmperf-compare`` that cannot run; the message names the option and value."""


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CompareError(f"{_OPTION} needs git, which is not on PATH") from None
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
    #: [submodule checkout, its worktree in the reference] per submodule checked out.
    subs: list[list[str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.ref} ({self.sha[:10]})" if self.ref != self.sha else self.sha[:10]

    def mirror(self, candidate_path: Path) -> Path | None:
        """Where ``candidate_path`` is in the reference; None when it is outside the
        candidate's repository (a path already in the reference is itself)."""
        real = Path(os.path.realpath(candidate_path))
        for root in (self.path, self.top):
            if real == root or root in real.parents:
                return self.path / real.relative_to(root)
        return None

    def to_environment(self) -> str:
        return json.dumps([self.ref, self.sha, str(self.top), str(self.path)])

    def remove(self) -> None:
        os.environ.pop(TREE_ENV, None)
        _remove(self.top, self.path, self.subs)


def _remove(top: Path, path: Path, subs: list[list[str]]) -> None:
    """A reference worktree and its submodules' worktrees, registrations and files."""
    for repo, sub in reversed(subs):
        with contextlib.suppress(CompareError):
            _git(Path(repo), "worktree", "remove", "--force", sub)
    with contextlib.suppress(CompareError):
        _git(top, "worktree", "remove", "--force", str(path))
    shutil.rmtree(path.parent, ignore_errors=True)
    for repo in {top, *(Path(r) for r, _ in subs)}:
        with contextlib.suppress(CompareError):
            _git(repo, "worktree", "prune")


def from_environment() -> Worktree | None:
    """The worktree the xdist controller of this run made (None when there is none)."""
    raw = os.environ.get(TREE_ENV)
    if not raw:
        return None
    try:
        ref, sha, top, path = json.loads(raw)
        tree = Worktree(str(ref), str(sha), Path(top), Path(path))
    except (ValueError, TypeError):
        raise CompareError(f"{TREE_ENV}={raw!r} is not a worktree of this run: unset it") from None
    if not (tree.path / ".git").exists():
        raise CompareError(
            f"{TREE_ENV}: the reference worktree {tree.path} does not exist "
            "(left from another run?): unset it"
        )
    return tree


def repository_root(path: Path) -> Path:
    try:
        return Path(_git(path, "rev-parse", "--show-toplevel")).resolve()
    except CompareError as exc:
        raise CompareError(f"{_OPTION}: {path} is not inside a git repository ({exc})") from None


#: The directory each run makes for its worktree, and the file that names its owner.
PREFIX = "llmperf-compare-"
OWNER = "owner.json"


def _started(pid: int) -> str | None:
    """When process ``pid`` started (Linux), to tell it from a later one with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _alive(owner: dict) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _started(pid)
    return started is None or owner.get("started") in (None, started)


def prune_left_behind(top: Path) -> list[Path]:
    """Removes the reference worktrees that runs which no longer live left in the repository
    at ``top`` (a run killed before it could clean up); the ones removed."""
    removed = []
    for line in _git(top, "worktree", "list", "--porcelain").splitlines():
        if not line.startswith("worktree "):
            continue
        path = Path(line.removeprefix("worktree "))
        if path.name != "reference" or not path.parent.name.startswith(PREFIX):
            continue
        try:
            owner = json.loads((path.parent / OWNER).read_text())
        except (OSError, ValueError):
            continue  # not a run of this plugin that it can judge: left alone
        if _alive(owner):
            continue
        subs = owner.get("subs") or []
        _remove(top, path, [s for s in subs if isinstance(s, list) and len(s) == 2])
        removed.append(path)
    with contextlib.suppress(CompareError):
        _git(top, "worktree", "prune")
    return removed


def _gitlinks(repo: Path, sha: str) -> list[tuple[str, str]]:
    """The submodules (path, recorded commit) of commit ``sha`` of ``repo``."""
    listing = _git(repo, "ls-tree", "-r", "-z", sha)
    links = []
    for entry in filter(None, listing.split("\0")):
        meta, _, name = entry.partition("\t")
        mode, _, rest = meta.partition(" ")
        if mode == "160000":
            links.append((name, rest.partition(" ")[2]))
    return links


def _check_out_submodules(repo: Path, into: Path, sha: str, subs: list[list[str]]) -> None:
    """Each submodule at the commit REF records, from the working tree's own checkout of it
    (no network): a worktree of the submodule's repository."""
    for name, commit in _gitlinks(repo, sha):
        checkout = repo / name
        if not (checkout / ".git").exists():
            continue  # not initialised here either: the reference leaves it empty too
        try:
            _git(checkout, "cat-file", "-e", f"{commit}^{{commit}}")
        except CompareError:
            raise CompareError(
                f"{_OPTION}: the submodule {name} is at commit {commit[:10]} in REF, "
                f"which its checkout {checkout} does not have (git -C {checkout} fetch)"
            ) from None
        target = into / name
        _git(checkout, "worktree", "add", "--detach", "--quiet", str(target), commit)
        subs.append([str(checkout), str(target)])
        _check_out_submodules(checkout, target, commit, subs)


def check_out(ref: str, inside: Path) -> Worktree:
    """REF of the repository holding ``inside``, in a new temporary worktree (submodules
    at the commits REF records), after removing any that killed runs left behind."""
    top = repository_root(inside)
    try:
        sha = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except CompareError:
        sha = ""
    if not sha:
        raise CompareError(f"{_OPTION}={ref}: not a branch, tag or commit of the repository {top}")
    prune_left_behind(top)
    parent = Path(os.path.realpath(tempfile.mkdtemp(prefix=PREFIX)))
    tree = Worktree(ref, sha, top, parent / "reference")
    owner = {"pid": os.getpid(), "started": _started(os.getpid()), "subs": tree.subs}
    (parent / OWNER).write_text(json.dumps(owner))
    try:
        _git(top, "worktree", "add", "--detach", "--quiet", str(tree.path), sha)
    except CompareError as exc:
        _remove(top, tree.path, tree.subs)
        raise CompareError(f"{_OPTION}={ref}: git worktree add failed: {exc}") from None
    try:
        _check_out_submodules(top, tree.path, sha, tree.subs)
    except CompareError:
        _remove(top, tree.path, tree.subs)
        raise
    (parent / OWNER).write_text(json.dumps(owner))
    return tree
