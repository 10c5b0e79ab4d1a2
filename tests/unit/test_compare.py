"""``--llmperf-compare=REF``: real git repositories, real worktrees, real worker processes.

One comparison run carries most cases at once (each run starts two workers that
import torch: seconds, not milliseconds). Its timed effect is 30 matmuls where
there was one, far beyond any noise, and every test that must pass gets a tolerance of 500%;
the work signature's diff is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gitproject import git, section, write

pytest.importorskip("torch")

TIMEOUT = 300

PACKAGE_REF = """
import torch

MATMULS = 1


def work(x):
    for _ in range(MATMULS):
        x = torch.tanh(x @ x)
    return x


def same(x):
    return torch.tanh(x @ x)


def decode(x, n=24):
    # A generation: every 4th step does MATMULS matmuls (a stall), the others one.
    for i in range(n):
        for _ in range(MATMULS if i % 4 == 3 else 1):
            y = torch.tanh(x @ x)
        yield y
"""

# The candidate: work() does 30 matmuls where the reference did one; same() is unchanged.
# Compute-bound on both sides, so a loaded machine slows both alike.
PACKAGE_CANDIDATE = PACKAGE_REF.replace("MATMULS = 1", "MATMULS = 30")

TESTS_COMMON = """
import pytest
import torch

import mypkg

FAST = pytest.mark.llmperf(warmup=1, max_time=0.5, tolerance={"time": "500%"})


@pytest.mark.llmperf(warmup=1, max_time=1.0)
def test_changed(llmperf):
    llmperf(mypkg.work, torch.randn(96, 96))


@FAST
def test_same(llmperf):
    llmperf(mypkg.same, torch.randn(96, 96))


def test_plain():
    assert mypkg.same is not None


@pytest.mark.llmperf(warmup=1, max_time=0.5)
def test_decode(llmperf):
    llmperf.generation(mypkg.decode, args=(torch.randn(96, 96),))


@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")


@FAST
def test_setup_error(broken_setup, llmperf):
    llmperf(mypkg.same, torch.randn(4, 4))


@FAST
def test_teardown_error(broken_teardown, llmperf):
    llmperf(mypkg.same, torch.randn(4, 4))


@FAST
def test_skipped_in_body(llmperf):
    pytest.skip("not on this machine")


@FAST
@pytest.mark.xfail(reason="known broken", strict=True)
def test_xfail(llmperf):
    assert False


@FAST
def test_says(llmperf, record_property):
    print(f"said with MATMULS={mypkg.MATMULS}")
    record_property("owner", "perf-team")
    llmperf(mypkg.same, torch.randn(4, 4))
"""

TESTS_REF = (
    TESTS_COMMON
    + """

@FAST
def test_only_in_ref(llmperf):
    llmperf(mypkg.same, torch.randn(4, 4))


@FAST
def test_fails_in_ref(llmperf):
    assert False, "broken on the reference"
"""
)

TESTS_CANDIDATE = (
    TESTS_COMMON
    + """

@FAST
def test_new(llmperf):
    llmperf(mypkg.same, torch.randn(4, 4))


@FAST
def test_fails_in_ref(llmperf):
    llmperf(mypkg.same, torch.randn(4, 4))
"""
)

# No ``pythonpath`` here: the package is importable only as an installed one would be
# (PYTHONPATH points at the candidate), so only the worker's own sys.path can give the
# reference worker the reference's code.
PYPROJECT = """
[tool.pytest.ini_options]
"""


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A user project: REF is the commit ``main``; the working tree is the candidate."""
    root = tmp_path_factory.mktemp("project")
    git(root, "init", "-q", "-b", "main")
    write(
        root,
        {
            "pyproject.toml": PYPROJECT,
            "mypkg/__init__.py": PACKAGE_REF,
            "tests/test_perf.py": TESTS_REF,
            # REF's copy of this module cannot be imported: a collection error there.
            "tests/test_broken_ref.py": "import not_a_module_anywhere\n",
        },
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "reference")
    write(
        root,
        {
            "mypkg/__init__.py": PACKAGE_CANDIDATE,
            "tests/test_perf.py": TESTS_CANDIDATE,
            "tests/test_broken_ref.py": """
                import pytest
                import torch

                import mypkg


                @pytest.mark.llmperf(warmup=1, max_time=0.5, tolerance={"time": "500%"})
                def test_in_broken_module(llmperf):
                    llmperf(mypkg.same, torch.randn(4, 4))
            """,
        },
    )
    # As an editable install would: the candidate's code importable from anywhere. The
    # reference worker must still import the reference's code (its tree first).
    path = [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--llmperf-compare=main",
            # One intra-op thread per side: two 2-thread processes on a loaded 2-core
            # runner made calls 1000x slower for seconds at a time (spinning barriers).
            "--llmperf-threads=1",
            "--llmperf-report=report.json",
            "--junitxml=junit.xml",
            "-rA",
            "tests",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return root, done


def test_a_slower_candidate_fails_with_the_paired_ratio_and_the_work_diff(compared) -> None:
    root, done = compared
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "FAILED tests/test_perf.py::test_changed" in out
    failure = section(out, "test_changed")
    assert "against the reference main (" in failure
    assert "REGRESSION time: reference main" in failure
    assert "interleaved pairs, tolerance 10%" in failure
    # The reference worker measured the reference's code, not the candidate's on PYTHONPATH.
    assert "aten.mm 1 -> 30 (+29)" in failure


def test_an_unchanged_test_passes_and_nothing_else_fails(compared) -> None:
    root, done = compared
    out = done.stdout
    assert "PASSED tests/test_perf.py::test_same" in out
    assert "PASSED tests/test_perf.py::test_plain" in out
    failed = [line.split(" - ")[0] for line in out.splitlines() if line.startswith("FAILED")]
    assert failed == [
        "FAILED tests/test_perf.py::test_changed",
        "FAILED tests/test_perf.py::test_decode",
    ]


def test_a_stalling_generation_fails_on_its_paired_token_latency(compared) -> None:
    """A stall every 4th token (30 matmuls where there was one): the per-round ITL p99 of
    the two trees, paired batch by batch, names the tail; the work diff says why."""
    root, done = compared
    failure = section(done.stdout, "test_decode")
    assert "REGRESSION itl_p99: reference main" in failure
    assert "interleaved pairs, tolerance 25%" in failure
    assert "REGRESSION tpot: reference main" in failure


def test_new_reference_only_and_reference_failures_are_named_not_regressions(compared) -> None:
    root, done = compared
    out = done.stdout
    assert "PASSED tests/test_perf.py::test_new" in out
    assert "new: this test is not in the reference main" in out
    assert "PASSED tests/test_perf.py::test_fails_in_ref" in out
    assert "not compared: the test failed in the reference main" in out
    assert "AssertionError: broken on the reference" in out
    assert "PASSED tests/test_broken_ref.py::test_in_broken_module" in out
    assert "did not collect it (tests/test_broken_ref.py: ModuleNotFoundError" in out
    assert "1 performance test(s) only in the reference main" in out
    assert "tests/test_perf.py::test_only_in_ref" in out


def test_no_baseline_is_read_or_written_and_the_worktree_is_removed(compared) -> None:
    root, done = compared
    assert not (root / "baselines").exists()
    worktrees = git(root, "worktree", "list", "--porcelain")
    assert worktrees.count("worktree ") == 1, worktrees
    report = json.loads((root / "report.json").read_text())
    verdicts = {r["nodeid"].split("::")[-1]: r["verdict"] for r in report["results"]}
    assert verdicts["test_changed"] == "regression"
    assert verdicts["test_same"] == "pass"
    assert verdicts["test_new"] == "no-baseline"


def test_the_candidates_own_reports_come_through_with_the_verdict(compared) -> None:
    """pytest's reports as the candidate's worker made them (serialized as xdist does):
    a skip in the body, an xfail, an error in setup or teardown, the test's properties
    and its captured output; the comparison adds its verdict and properties only."""
    import xml.etree.ElementTree as ET

    root, done = compared
    out = done.stdout
    assert "ERROR tests/test_perf.py::test_setup_error - RuntimeError: setup broke" in out
    assert "ERROR tests/test_perf.py::test_teardown_error - RuntimeError: teardown broke" in out
    assert "PASSED tests/test_perf.py::test_teardown_error" in out  # its call, judged
    assert "SKIPPED [1] tests/test_perf.py:" in out and ": not on this machine" in out
    assert "XFAIL tests/test_perf.py::test_xfail - known broken" in out
    assert "said with MATMULS=30" in out  # the candidate's captured output, and only its
    assert "said with MATMULS=1\n" not in out
    report = json.loads((root / "report.json").read_text())
    verdicts = {r["nodeid"].split("::")[-1]: r["verdict"] for r in report["results"]}
    assert verdicts["test_says"] == "pass"
    # its call passed and is judged, as in a run of one tree; the reference's teardown failed
    assert verdicts["test_teardown_error"] == "no-baseline"
    assert "not compared: the test failed in teardown in the reference main" in out
    assert not {"test_setup_error", "test_skipped_in_body", "test_xfail"} & set(verdicts)
    cases = {c.get("name"): c for c in ET.parse(root / "junit.xml").iter("testcase")}
    props = [(p.get("name"), p.get("value")) for p in cases["test_says"].iter("property")]
    assert props[0] == ("owner", "perf-team")  # the test's own, then the comparison's
    assert ("llmperf.verdict", "pass") in props
    assert cases["test_xfail"].find("skipped").get("type") == "pytest.xfail"
    assert cases["test_skipped_in_body"].find("skipped").get("message") == "not on this machine"
    assert "failed on setup" in cases["test_setup_error"].find("error").get("message")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llmperf-compare=no-such-branch"], "not a branch, tag or commit"),
        (
            ["--llmperf-compare=main", "--llmperf-update-baselines"],
            "drop --llmperf-update-baselines or the comparison",
        ),
    ],
)
def test_bad_comparisons_are_usage_errors(pytester: pytest.Pytester, args, message) -> None:
    git(pytester.path, "init", "-q", "-b", "main")
    pytester.makepyfile(test_x="def test_x(llmperf):\n    pass\n")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "x")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_outside_a_git_repository_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(llmperf):\n    pass\n")
    result = pytester.runpytest_subprocess("--llmperf-compare=main")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*is not inside a git repository*"])


def test_a_worker_gets_the_selection_and_options_but_not_the_controllers_own() -> None:
    from pytest_llmperf.compare.arguments import worker_args

    args = ["-n", "2", "tests", "--llmperf-compare", "main", "-nauto", "-k", "decode"]
    args += ["--llmperf-report=r.md", "--junitxml", "j.xml", "--llmperf-threads=1", "-m", "slow"]
    assert worker_args(args) == [
        "tests",
        "-k",
        "decode",
        "--llmperf-threads=1",
        "-m",
        "slow",
        "--llmperf",
        "--continue-on-collection-errors",
    ]
