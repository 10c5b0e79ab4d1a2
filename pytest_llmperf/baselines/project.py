"""Project identity: which project a run records for, so two projects that share one
baselines directory never judge against or write over each other's entries."""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import MAX_PROJECT
from .schema import BaselineError


@dataclass(frozen=True)
class Project:
    """Which project a run records for: its ``name`` and, for messages, where it came from."""

    name: str
    source: str

    def owns(self, recorded: str) -> bool:
        """Whether a file's ``project`` is this one: names compare as package names do
        (PEP 503: case, and runs of ``-``, ``_`` and ``.``, do not matter)."""
        return normalize_project(recorded) == normalize_project(self.name)


def normalize_project(name: str) -> str:
    """A project name as PEP 503 compares distribution names: ``My_Model`` is ``my-model``."""
    return re.sub(r"[-_.\s]+", "-", name.strip()).lower()


def _pyproject_name(path: Path) -> str | None:
    """``[project] name`` (or Poetry's ``[tool.poetry] name``) of a pyproject.toml."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        import tomllib
    except ImportError:  # Python 3.10: the two tables' name lines, read plainly
        for table in ("project", "tool.poetry"):
            section = re.search(
                rf"^\[{re.escape(table)}\][ \t]*$(.*?)(?=^\[|\Z)", text, re.M | re.S
            )
            found = section and re.search(
                r"""^name\s*=\s*["']([^"'\n]+)["']""", section.group(1), re.M
            )
            if found:
                return found.group(1)
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None
    for table in (data.get("project"), data.get("tool", {}).get("poetry")):
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            return table["name"]
    return None


def _setup_cfg_name(path: Path) -> str | None:
    """``[metadata] name`` of a setup.cfg."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    return parser.get("metadata", "name", fallback=None)


def find_project(rootdir: Path, given: str | None = None, given_from: str = "") -> Project:
    """The project a run records for: ``given`` (``--llmperf-project``), else the package
    name in the rootdir's pyproject.toml or setup.cfg, else the rootdir's own name.

    Why these: the identity must be the same on every clone, runner and machine of one
    project, and differ between projects. The package name is the same wherever the
    project is checked out (a fork's CI included) and whatever its tests are (a hash of
    the test paths would change with every new test); the rootdir's absolute path differs
    between runners, and a git remote is absent from a tarball and differs on a fork. The
    rootdir's name is the fallback for a project with neither file; ``--llmperf-project``
    settles what these cannot (two checkouts of one name, a renamed project).
    """
    if given:
        return Project(given.strip(), given_from or "--llmperf-project")
    for filename, read in (("pyproject.toml", _pyproject_name), ("setup.cfg", _setup_cfg_name)):
        name = read(rootdir / filename)
        if name and name.strip() and len(name) <= MAX_PROJECT:
            return Project(name.strip(), f"the name in {rootdir / filename}")
    return Project(rootdir.name or str(rootdir), f"the name of the rootdir {rootdir}")


def other_project_error(path: Path, recorded: str, project: Project) -> BaselineError:
    """Why a file of another project is neither read nor written, and what to do."""
    return BaselineError(
        f"llmperf: baseline file {path} belongs to project {recorded!r}, not to this project "
        f"{project.name!r} ({project.source}). Two projects share this baselines directory; "
        "one project's entries are never judged against or written over by another's, so "
        "the file was neither used nor changed. Give this project a directory of its own "
        "with --llmperf-baselines=DIR (ini llmperf_baselines), or, if it is the same project "
        f"under a new name, run with --llmperf-project={recorded} (ini llmperf_project)."
    )
