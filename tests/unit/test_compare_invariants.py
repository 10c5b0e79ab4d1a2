"""The parts of ``--llmperf-compare`` that keep the two sides apart, each alone and fast:
the reference's arguments, where each worker's code came from, the rootdir
invariant, the worktrees a killed run left behind, and a stale environment.

No torch here: the processes these tests start import only the plugin's compare
package (and git). The whole chain, on real layouts, is in test_compare_layouts.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from gitproject import git, write

from pytest_llmperf.compare.arguments import reference_side
from pytest_llmperf.compare.provenance import Provenance, Trees
from pytest_llmperf.compare.worktree import (
    TREE_ENV,
    CompareError,
    Worktree,
    check_out,
    from_environment,
    prune_left_behind,
)


@pytest.fixture
def trees(tmp_path: Path) -> Worktree:
    """A candidate tree and a reference copy of it, laid out alike; the candidate also has
    a test file, a directory and a virtual environment the reference lacks."""
    common = {
        "pyproject.toml": "",
        "python/pkg/__init__.py": "WHERE = 'x'\n",
        "tests/test_a.py": "",
        "tests/sub/test_b.py": "",
    }
    top, ref = tmp_path / "top", tmp_path / "tmp" / "reference"
    write(top, common | {"tests/test_new.py": "", "newdir/x.txt": "", ".venv/lib/m.py": ""})
    write(ref, common)
    return Worktree("main", "0" * 40, top.resolve(), ref.resolve())


def test_reference_arguments_name_the_same_paths_in_the_reference(trees: Worktree) -> None:
    top, ref = trees.top, trees.path
    args = ["-c", f"{top}/pyproject.toml", f"--rootdir={top}", "-o", f"pythonpath={top}/python"]
    args += ["-k", "tests", "tests/test_a.py", "tests/sub", "--llmperf-compare=main"]
    side = reference_side(args, ["tests/test_a.py", "tests/sub"], top, trees, Path("/c"))
    assert side.cwd == ref
    assert side.args == [
        "-c",
        f"{ref}/pyproject.toml",
        f"--rootdir={ref}",
        "-o",
        f"pythonpath={ref}/python",
        "-k",
        "tests",  # an expression, relative to a directory the worker mirrors: left as it is
        f"{ref}/tests/test_a.py",
        f"{ref}/tests/sub",
        "--llmperf",
        "--continue-on-collection-errors",
        "-o",
        "cache_dir=/c",
    ]
    assert side.select is None and not side.empty and side.dropped == []


def test_node_ids_become_files_selected_by_the_worker_and_missing_ones_are_dropped(
    trees: Worktree,
) -> None:
    top, ref = trees.top, trees.path
    named = ["tests/test_a.py::test_x", "tests/test_a.py::TestC::test_y[1]", "tests/test_new.py"]
    side = reference_side(named, named, top / "tests" / "..", trees, Path("/c"))
    assert side.args[:1] == [f"{ref}/tests/test_a.py"]  # once, not a usage error if absent
    assert side.select == [
        [f"{ref}/tests/test_a.py", "test_x"],
        [f"{ref}/tests/test_a.py", "TestC::test_y[1]"],
    ]
    assert side.dropped == ["tests/test_new.py"] and not side.empty
    only_new = reference_side(["tests/test_new.py"], ["tests/test_new.py"], top, trees, Path("/c"))
    assert only_new.empty


def test_from_outside_the_repository_relative_paths_are_moved_too(
    trees: Worktree, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rel = os.path.relpath(trees.top, elsewhere)
    args = ["-c", f"{rel}/pyproject.toml", f"{rel}/tests", "--pyargs", "pkg.tests"]
    side = reference_side(args, [f"{rel}/tests", "pkg.tests"], elsewhere, trees, Path("/c"))
    assert side.cwd == elsewhere
    assert side.args[:5] == [
        "-c",
        f"{trees.path}/pyproject.toml",
        f"{trees.path}/tests",
        "--pyargs",
        "pkg.tests",
    ]
    no_cache = reference_side(["-p", "no:cacheprovider"], [], elsewhere, trees, Path("/c"))
    assert "cache_dir=/c" not in no_cache.args


def test_only_the_other_trees_project_files_are_foreign(trees: Worktree, tmp_path: Path) -> None:
    """The candidate's copy of a module the reference has, or one git tracks there, is
    foreign to the reference; a virtual environment inside the repository is not."""
    import importlib.util

    def module(path: Path, name: str):
        return importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))

    git(trees.top, "init", "-q")
    write(trees.top, {"tracked_only_here.py": ""})
    git(trees.top, "add", "tracked_only_here.py")
    seen = Provenance(Trees(trees.path, trees.top))
    modules = {
        "pkg": module(trees.top / "python/pkg/__init__.py", "pkg"),
        "m": module(trees.top / ".venv/lib/m.py", "m"),
        "tracked_only_here": module(trees.top / "tracked_only_here.py", "tracked_only_here"),
        "own": module(trees.path / "python/pkg/__init__.py", "own"),
        "pytest_llmperf.fake": module(trees.top / "python/pkg/__init__.py", "x"),
    }
    assert seen.check(modules) == {
        "pkg": str(trees.top / "python/pkg/__init__.py"),
        "tracked_only_here": str(trees.top / "tracked_only_here.py"),
    }
    # The candidate's side: the reference worktree's files are foreign to it.
    other = Provenance(Trees(trees.top, trees.path))
    assert other.check({"p": module(trees.path / "python/pkg/__init__.py", "p")}) == {
        "p": str(trees.path / "python/pkg/__init__.py")
    }


REDIRECTED = """
import importlib.machinery, json, sys
from pytest_llmperf.compare.provenance import Provenance, Trees, install_redirect

top, ref = sys.argv[1], sys.argv[2]


class Mapping:  # setuptools' editable finder: a top-level name -> a directory, children too
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        parent = name.rpartition(".")[0]
        if name == "mapped":
            return importlib.machinery.PathFinder.find_spec(name, [top + "/src"])
        if parent == "mapped":
            return importlib.machinery.PathFinder.find_spec(name, [top + "/src/mapped"])
        return None


sys.meta_path.append(Mapping)
sys.path.insert(0, top + "/python")
seen = Provenance(Trees(ref, top))
seen.watch()
install_redirect(Trees(ref, top))
import pkg, mapped.child, nspkg.mod
runpy_globals = __import__("runpy").run_path(top + "/loose.py")
print(json.dumps({
    "files": [pkg.__file__, mapped.child.__file__, nspkg.mod.__file__],
    "foreign": seen.check(),
}))
"""


def test_the_reference_imports_its_own_copy_through_paths_and_import_hooks(tmp_path: Path) -> None:
    files = {
        "python/pkg/__init__.py": "",
        "src/mapped/__init__.py": "",
        "src/mapped/child.py": "",
        "python/nspkg/mod.py": "",
        "loose.py": "",
    }
    top, ref = tmp_path / "top", tmp_path / "reference"
    write(top, files)
    write(ref, files)
    done = subprocess.run(
        [sys.executable, "-c", REDIRECTED, str(top), str(ref)],
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(done.stdout)
    assert seen["files"] == [
        str(ref / "python/pkg/__init__.py"),
        str(ref / "src/mapped/child.py"),
        str(ref / "python/nspkg/mod.py"),
    ]
    # What no path can move (a file run by its absolute path) is seen, and only that.
    assert seen["foreign"] == {"loose.py": str(top / "loose.py")}


def test_a_reference_rootdir_that_is_not_the_candidates_is_said(trees: Worktree) -> None:
    from pytest_llmperf.compare.controller import CompareController

    controller = CompareController.__new__(CompareController)
    controller.tree = trees
    cand = SimpleNamespace(failure="", rootpath=trees.top)
    same = SimpleNamespace(failure="", rootpath=trees.path)
    assert controller._mismatched_roots(same, cand) == ""
    other = SimpleNamespace(failure="", rootpath=trees.top)  # the candidate's: ids differ
    why = controller._mismatched_roots(other, cand)
    assert f"the reference worker's rootdir is {trees.top}" in why
    assert "their test ids cannot be matched" in why


KILLED = """
import os, signal, sys
from pathlib import Path
from pytest_llmperf.compare.worktree import check_out

tree = check_out("main", Path(sys.argv[1]))
print(tree.path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _worktrees(repo: Path) -> list[str]:
    listing = git(repo, "worktree", "list", "--porcelain")
    return [line[9:] for line in listing.splitlines() if line.startswith("worktree ")]


def test_a_killed_runs_worktree_is_removed_by_the_next_run(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, {"a.py": ""})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a")
    done = subprocess.run([sys.executable, "-c", KILLED, str(repo)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL
    left = Path(done.stdout.strip())
    assert left.is_dir() and str(left) in _worktrees(repo)
    tree = check_out("main", repo)
    try:
        assert not left.parent.exists()
        assert str(left) not in _worktrees(repo)
        # A living run's worktree (this process's) is left alone.
        assert prune_left_behind(repo) == [] and tree.path.is_dir()
    finally:
        tree.remove()
    assert _worktrees(repo) == [str(repo.resolve())]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "is not a worktree of this run: unset it"),
        ('["main", "0", "/nowhere"]', "is not a worktree of this run: unset it"),
        ('["main", "0", "/nowhere", "/nowhere/reference"]', "does not exist"),
    ],
)
def test_a_stale_or_malformed_tree_in_the_environment_is_named(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv(TREE_ENV, value)
    with pytest.raises(CompareError, match=message) as raised:
        from_environment()
    assert TREE_ENV in str(raised.value)
