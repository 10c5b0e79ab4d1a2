"""Writing a report or an export: its missing directories created, failures named.

The session turns the OSError into an ERROR line and a failed run (a CI gate that
silently lost its report is a broken gate), so the error here must say which file
and why.
"""

from __future__ import annotations

import errno
import traceback
from pathlib import Path


def write_text(path: str | Path, text: str, *, append: bool = False) -> None:
    """Write (or append) ``text`` to ``path`` as UTF-8.

    A missing directory is created (``--llmperf-report=reports/run.md`` works in a
    fresh checkout), except when appending: a file to append to (GitHub's step
    summary) is the caller's, and a missing directory means a wrong path. A parent
    that is a file raises NotADirectoryError saying so (mkdir's own error is
    "File exists").
    """
    path = Path(path)
    if not append:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise NotADirectoryError(
                errno.ENOTDIR, "a parent is a file, not a directory", exc.filename
            ) from None
    with open(path, "a" if append else "w", encoding="utf-8") as fh:
        fh.write(text)


def failure_reason(exc: BaseException) -> str:
    """Why a write failed, for the ERROR line: an OSError's own text (it names the file
    and the errno), else the exception with where it was raised (a conftest's report
    hook that raised is found from this line)."""
    if isinstance(exc, OSError):
        return str(exc)
    reason = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        reason += f" (raised at {frames[-1].filename}:{frames[-1].lineno})"
    return reason
