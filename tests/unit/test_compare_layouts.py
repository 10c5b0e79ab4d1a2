"""``--llmperf-compare`` as users lay out and invoke real projects: the reference side
measures REF's code, whatever leads the import system to the working tree.

One project carries every layout at once, each in a package of its own whose work is
x3 in the candidate (2 matmuls -> 6): an absolute ``pythonpath`` in the ini,
``PYTHONPATH``, a ``.pth`` file in a (scratch) virtual environment's site-packages,
a real setuptools editable install of a package at the repository root (its import
hook), and a git submodule. Each test fails with its regression only where the
reference imported its own copy (the work diff ``aten.mm 2 -> 6`` is exact). The run
is invoked from outside the repository with absolute paths, ``-c`` and
``--rootdir``, names a test and a file that only the working tree has, and inherits
a stale ``LLMPERF_COMPARE_TREE``; a last test loads the candidate's module by its
absolute path in both trees: that leak is an error, never a pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from gitproject import git, section, write

pytest.importorskip("torch")

TIMEOUT = 400

PACKAGE = """
import torch

MATMULS = 2


def work(x):
    for _ in range(MATMULS):
        x = torch.tanh(x @ x)
    return x
"""
SLOWER = PACKAGE.replace("MATMULS = 2", "MATMULS = 6")

#: package -> where it lives in the repository (how it is found: see the module docstring)
LAYOUTS = {
    "pkg_ini": "python_ini",
    "pkg_env": "python_env",
    "pkg_pth": "python",
    "pkg_root": ".",
    "pkg_sub": "third_party/sublib",
}

TESTS = "import pytest\nimport torch\n\n" + "\n".join(
    f"""
import {pkg}


@pytest.mark.llmperf(warmup=1, max_time=0.3)
def test_{pkg}(llmperf):
    llmperf({pkg}.work, torch.randn(96, 96))
"""
    for pkg in LAYOUTS
)

# Present in both trees; the working tree adds test_added.
MORE = """
import pytest
import torch

FAST = pytest.mark.llmperf(warmup=1, max_time=0.3, tolerance={"time": "500%"})


@FAST
def test_kept(llmperf):
    llmperf(torch.tanh, torch.randn(64, 64))


@FAST
def test_not_named(llmperf):  # in both trees, not selected: not "only in the reference"
    llmperf(torch.tanh, torch.randn(64, 64))
"""
MORE_CANDIDATE = (
    MORE
    + """

@FAST
def test_added(llmperf):
    llmperf(torch.tanh, torch.randn(64, 64))
"""
)

# Loads the working tree's module by its absolute path, in both trees: the reference
# worker then runs the candidate's code, which no path can be moved away from.
LEAK = """
import importlib.util
import os

import pytest
import torch


@pytest.mark.llmperf(warmup=1, max_time=0.3)
def test_leak(llmperf):
    spec = importlib.util.spec_from_file_location("leaked", os.environ["LEAK_FILE"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    llmperf(module.work, torch.randn(96, 96))
"""


def _pyproject(root: Path) -> str:
    return f"""
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "layouts"
version = "0"

[tool.setuptools]
packages = ["pkg_root"]

[tool.pytest.ini_options]
pythonpath = ["{root / "python_ini"}", "third_party/sublib"]
"""


def _scratch_venv(where: Path, root: Path) -> Path:
    """A virtual environment that sees this one's packages, with the project's ``python/``
    on a ``.pth`` line and the project installed editable (setuptools' import hook)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "00-outer.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    Path(site, "project-python.pth").write_text(f"{root / 'python'}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
        + ["--no-build-isolation", "--no-deps", "-e", str(root)],
        check=True,
        capture_output=True,
    )
    return python


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("layouts")
    root, origin = base / "project", base / "sublib-origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    write(origin, {"pkg_sub/__init__.py": PACKAGE})
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "sub")
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    files = {f"{where}/{pkg}/__init__.py": PACKAGE for pkg, where in LAYOUTS.items()}
    del files["third_party/sublib/pkg_sub/__init__.py"]
    files |= {
        "pyproject.toml": _pyproject(root),
        "tests/test_layouts.py": TESTS,
        "tests/test_more.py": MORE,
        "tests/test_zz_leak.py": LEAK,
    }
    write(root, files)
    git(
        root,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(origin),
        "third_party/sublib",
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "reference")
    # The candidate: every package x3, the submodule's too (its checkout edited).
    for pkg, where in LAYOUTS.items():
        (root / where / pkg / "__init__.py").write_text(SLOWER)
    write(root, {"tests/test_more.py": MORE_CANDIDATE, "tests/test_added_file.py": MORE})
    python = _scratch_venv(base / "venv", root)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    # Under pytest-xdist this process is a worker: its PYTEST_XDIST_* would tell the run
    # below that it is one too (and its compare controller would wait for a device lock).
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTEST_ADDOPTS" and not k.startswith("PYTEST_XDIST")
    }
    kept = list(filter(None, env.get("PYTHONPATH", "").split(os.pathsep)))
    env |= {
        "PYTHONPATH": os.pathsep.join([str(root / "python_env"), *kept]),
        "LEAK_FILE": str(root / "python_env" / "pkg_env" / "__init__.py"),
        "LLMPERF_COMPARE_TREE": '["stale", "0", "/nowhere", "/nowhere/reference"]',
    }
    tests = root / "tests"
    done = subprocess.run(
        [python, "-m", "pytest", "--llmperf-compare=main", "--llmperf-threads=1", "-rA"]
        + ["-c", str(root / "pyproject.toml"), f"--rootdir={root}"]
        + [str(tests / "test_layouts.py")]
        + [f"{tests / 'test_more.py'}::test_kept", f"{tests / 'test_more.py'}::test_added"]
        + [str(tests / "test_added_file.py"), str(tests / "test_zz_leak.py")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return root, done


def _summary_of(out: str, head: str) -> str:
    """A test's block in the llmperf summary: its line and the indented lines below it."""
    first, *rest = out[out.index(head) :].splitlines()
    block = [first]
    for line in rest:
        if not line.startswith("    "):
            break
        block.append(line)
    return "\n".join(block)


@pytest.mark.parametrize("pkg", list(LAYOUTS))
def test_each_layout_measures_refs_own_code(laid_out, pkg: str) -> None:
    root, done = laid_out
    out = done.stdout
    assert f"FAILED ../project/tests/test_layouts.py::test_{pkg} - llmperf: regression" in out
    failure = section(out, f"test_{pkg}")
    assert "REGRESSION time: reference main" in failure, failure
    # The reference worker ran REF's package (2 matmuls), not the working tree's (6).
    assert "aten.mm 2 -> 6 (+4)" in failure, failure


def test_a_module_loaded_from_the_working_tree_by_the_reference_is_an_error(laid_out) -> None:
    root, done = laid_out
    out = done.stdout
    assert "ERROR ../project/tests/test_zz_leak.py::test_leak" in out, out
    error = section(out, "ERROR at setup of test_leak")
    leaked = root / "python_env" / "pkg_env" / "__init__.py"
    assert "worker imported code of the working tree" in error, error
    assert f"from {leaked}" in error
    assert "reference/python_env/pkg_env/__init__.py" in error  # the copy it should have run


def test_named_tests_only_the_working_tree_has_are_new_and_the_rest_compared(laid_out) -> None:
    """Run from outside the repository, with -c, --rootdir, absolute paths, a node id and a
    file that REF lacks: no INTERNALERROR, no usage error on the reference side, test ids
    matched (test_kept is compared), the new ones named new."""
    root, done = laid_out
    out = done.stdout
    assert "INTERNALERROR" not in out + done.stderr
    for test in ("test_more.py::test_kept", "test_more.py::test_added", "test_added_file.py"):
        assert f"PASSED ../project/tests/{test}" in out, out
    assert "5 regression, 3 no-baseline, 1 pass" in out, out
    new = "note: new: this test is not in the reference main"
    for test in ("test_more.py::test_added", "test_added_file.py::test_kept"):
        assert new in _summary_of(out, f"NO-BASELINE   tests/{test}"), out
    assert new in _summary_of(out, "NO-BASELINE   tests/test_added_file.py::test_not_named")
    assert f"(their tests are new): {root / 'tests' / 'test_added_file.py'}" in out
    assert "only in the reference" not in out  # test_more.py::test_not_named was not named


def test_the_last_failed_cache_records_the_runs_failures(laid_out) -> None:
    root, done = laid_out
    lastfailed = json.loads((root / ".pytest_cache/v/cache/lastfailed").read_text())
    assert "tests/test_layouts.py::test_pkg_ini" in lastfailed
    assert "tests/test_zz_leak.py::test_leak" in lastfailed
    assert "tests/test_more.py::test_kept" not in lastfailed


def test_the_worktrees_are_removed_the_submodules_too(laid_out) -> None:
    root, done = laid_out
    assert git(root, "worktree", "list", "--porcelain").count("worktree ") == 1
    sub = root / "third_party" / "sublib"
    assert git(sub, "worktree", "list", "--porcelain").count("worktree ") == 1
