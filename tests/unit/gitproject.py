"""Real git projects for the ``--llmperf-compare`` tests: a repository, its files, and the
failure text of one test in pytest's output."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def section(out: str, test: str) -> str:
    """The failure (or error) text of one test in pytest's output."""
    start = out.index(f"_ {test} _")
    end = out.find("\n_", start + 1)
    return out[start : end if end > 0 else len(out)]
