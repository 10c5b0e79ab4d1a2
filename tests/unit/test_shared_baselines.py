"""Two projects sharing one baselines directory (a CI cache mounted at one path).

Before, a refresh of one project silently replaced the other's entries of the same test
id, and a comparing run judged one project against the other's numbers. Now each file
records its project (``baselines.find_project``); a file of another project is refused,
on read and on refresh, naming both projects, the file and the option that separates
them, and is left byte for byte as it was. A file without a project (written before)
is still valid, and adopted by the first refresh.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_llmperf.baselines import BaselineError, Project, find_project, load, write
from pytest_llmperf.results import Metric, TestResult

REPO = Path(__file__).resolve().parents[2]

#: One test id both projects have: where entries would collide.
PERF_TEST = """
import pytest, torch

@pytest.mark.llmperf(warmup=0, rounds=5)
def test_add(llmperf):
    x = torch.ones(4)
    llmperf(torch.add, x, x)
"""


def _project(root: Path, name: str, shared: Path) -> Path:
    """A project ``name`` (its pyproject.toml says so) whose baselines are in ``shared``."""
    path = root / name
    path.mkdir()
    (path / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\n\n[tool.pytest.ini_options]\nllmperf_baselines = "{shared}"\n'
    )
    (path / "test_perf.py").write_text(PERF_TEST)
    return path


def _snapshot(shared: Path) -> dict[str, bytes]:
    return {str(p.relative_to(shared)): p.read_bytes() for p in sorted(shared.rglob("*.json"))}


def test_two_projects_sharing_a_directory_never_mix_entries(pytester: pytest.Pytester) -> None:
    shared = pytester.path / "shared"
    alpha = _project(pytester.path, "alpha", shared)
    beta = _project(pytester.path, "beta", shared)
    refresh = ("--llmperf", "--llmperf-update-baselines")

    pytester.runpytest(str(alpha), *refresh).assert_outcomes(passed=1)
    written = _snapshot(shared)
    assert len(written) == 2 and "work/cpu.json" in written  # the machine and work files
    for text in written.values():
        assert json.loads(text)["project"] == "alpha"

    for args in (refresh, ("--llmperf",)):  # a refresh is refused, and so is a compare
        result = pytester.runpytest(str(beta), *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        err = result.stderr.str()
        assert f"baseline file {shared}" in err
        assert "belongs to project 'alpha', not to this project 'beta'" in err
        assert f"(the name in {beta / 'pyproject.toml'})" in err
        assert "--llmperf-baselines=DIR" in err and "--llmperf-project=alpha" in err
        assert "Traceback" not in err
        assert _snapshot(shared) == written  # alpha's entries, byte for byte

    # beta in a directory of its own: records there, alpha's stay as they were
    pytester.runpytest(str(beta), *refresh, f"--llmperf-baselines={beta / 'own'}")
    assert len(_snapshot(beta / "own")) == 2 and _snapshot(shared) == written
    # a renamed project claims its old files explicitly
    result = pytester.runpytest(str(beta), "--llmperf", "--llmperf-project=Alpha")
    result.assert_outcomes(passed=1)


def test_a_file_without_a_project_is_adopted_by_the_first_refresh(
    pytester: pytest.Pytester,
) -> None:
    shared = pytester.path / "shared"
    alpha = _project(pytester.path, "alpha", shared)
    beta = _project(pytester.path, "beta", shared)
    pytester.runpytest(str(alpha), "--llmperf", "--llmperf-update-baselines")
    for path in shared.rglob("*.json"):  # as an older version wrote them
        data = json.loads(path.read_text())
        del data["project"]
        path.write_text(json.dumps(data))

    result = pytester.runpytest(str(beta), "--llmperf", "--llmperf-update-baselines")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    for path in shared.rglob("*.json"):
        assert json.loads(path.read_text())["project"] == "beta"
        assert f"{path} named no project" in out and "adopted for this project 'beta'" in out
    # alpha's entry of the same test id was replaced by beta's: that is what adoption
    # means, and why it is said; from now on alpha is refused
    result = pytester.runpytest(str(alpha), "--llmperf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "belongs to project 'beta', not to this project 'alpha'" in result.stderr.str()


# --------------------------------------------------------------------------- real files

DEVICE = {"key": "cpu", "name": "cpu"}
STACK = {"device_type": "cpu", "torch": "2.13.0"}
ALPHA = Project("alpha", "the name in alpha/pyproject.toml")
BETA = Project("beta", "the name in beta/pyproject.toml")


def _result(nodeid: str = "t.py::test_a") -> TestResult:
    metric = Metric("work.ops", 12.0, "", higher_is_better=False, kind="work")
    return TestResult(nodeid=nodeid, tier="smoke", metrics={"work.ops": metric})


@pytest.mark.parametrize("stack", [None, STACK], ids=["machine", "work"])
def test_write_refuses_another_projects_file_and_leaves_it(
    tmp_path: Path, stack: dict[str, str] | None
) -> None:
    path = tmp_path / "cpu.json"
    facts = {"device": DEVICE, "fingerprint": {}, "stack": stack}
    write(path, results=[_result()], project=ALPHA, **facts)
    before = path.read_bytes()
    assert load(path, "cpu", ALPHA).project == "alpha"

    with pytest.raises(BaselineError) as err:
        write(path, results=[_result("t.py::test_b")], project=BETA, **facts)
    message = str(err.value)
    assert f"baseline file {path} belongs to project 'alpha', not to this project 'beta'" in (
        message
    )
    assert "--llmperf-baselines=DIR" in message and "--llmperf-project=alpha" in message
    assert path.read_bytes() == before
    with pytest.raises(BaselineError, match="belongs to project 'alpha'"):
        load(path, "cpu", BETA)
    assert load(path, "cpu").project == "alpha"  # no project asked: read as before

    # the same project, spelled as pip would (PEP 503), and an API call naming none
    write(path, results=[_result("t.py::test_c")], project=Project("ALPHA", "x"), **facts)
    write(path, results=[_result("t.py::test_d")], **facts)
    loaded = load(path, "cpu", ALPHA)
    assert loaded.project == "alpha" and len(loaded.tests) == 3


@pytest.mark.parametrize("bad", [42, "", "   ", ["alpha"], "x" * 201])
def test_a_malformed_project_field_names_the_file(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "cpu.json"
    write(path, device=DEVICE, fingerprint={}, results=[_result()], project=ALPHA)
    data = json.loads(path.read_text())
    data["project"] = bad
    path.write_text(json.dumps(data))
    text = path.read_text()
    with pytest.raises(BaselineError, match=f"baseline file {path} has a project"):
        load(path, "cpu")
    with pytest.raises(BaselineError):
        write(path, device=DEVICE, fingerprint={}, results=[_result()], project=ALPHA)
    assert path.read_text() == text


def test_the_shipped_baselines_have_no_project_and_stay_valid() -> None:
    """The CI's ``pytest --llmperf tests/benchmarks --llmperf-gate=work`` reads these
    without re-recording them."""
    project = find_project(REPO)
    assert project.name == "pytest-llmperf"
    work = load(REPO / "baselines" / "work" / "cpu.json", "cpu", project)
    assert work is not None and work.project is None and work.tests
    for path in (REPO / "baselines").glob("*.json"):
        machine = load(path, None, project)
        assert machine is not None and machine.project is None


def test_find_project_prefers_the_option_then_the_package_name_then_the_rootdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "checkout-7"
    root.mkdir()
    assert find_project(root) == Project("checkout-7", f"the name of the rootdir {root}")
    (root / "setup.cfg").write_text("[metadata]\nname = from-cfg\n")
    assert find_project(root).name == "from-cfg"
    (root / "pyproject.toml").write_text('[tool.poetry]\nname = "from-poetry"\n')
    assert find_project(root).name == "from-poetry"
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\n\n[project]\nversion = "1"\nname = "My_Model"\n'
    )
    found = find_project(root)
    assert found.name == "My_Model" and found.owns("my-model") and not found.owns("my-models")
    assert found.source == f"the name in {root / 'pyproject.toml'}"
    assert find_project(root, "given", "ini option llmperf_project") == Project(
        "given", "ini option llmperf_project"
    )
    # Python 3.10 has no tomllib: the name is read from the table plainly
    monkeypatch.setitem(sys.modules, "tomllib", None)
    assert find_project(root).name == "My_Model"
    (root / "pyproject.toml").write_text("not toml [")
    assert find_project(root).name == "from-cfg"


@pytest.mark.parametrize("value", ["", "   ", "a\tb", "x" * 201])
def test_a_bad_project_option_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    from pytest_llmperf.config import RunOptions

    with pytest.raises(ValueError, match="--llmperf-project: .* is not a project name"):
        RunOptions.from_pytest_config(pytester.parseconfig(f"--llmperf-project={value}"))
