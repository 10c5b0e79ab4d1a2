"""The history on disk: one JSON file per run, one per acknowledgement, never rewritten.

``DIR/runs/<time>-<commit>-<random>.json`` holds one run's record (``series.run_record``);
``DIR/acks/<time>-<random>.json`` one acknowledged change. A file is written whole under a
hidden temporary name and linked into place (``os.link`` refuses an existing name), so a
reader never sees half a record, two runners appending at once both land, and the
directory merges as a union wherever a team keeps it (a CI cache, an artifact, a git
branch: no two runs ever write the same file). Nothing here rewrites or deletes a file
it did not just create: a corrupt one is said by name and left as it is.

No torch import here.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "pytest-llmperf-history"
ACK_SCHEMA = "pytest-llmperf-history-ack"
SCHEMA_VERSION = 1
#: The history directory the ``history`` command reads when none is named.
DEFAULT_DIR = ".llmperf-history"
RUNS, ACKS = "runs", "acks"


class HistoryError(Exception):
    """A history that cannot be read or written: the message names the file and why."""


@dataclass
class History:
    """Every run (oldest first) and every acknowledgement of one history directory."""

    directory: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)


def _stamp(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(epoch)) + f"{epoch % 1:.6f}"[1:] + "Z"


def _write_new(folder: Path, stem: str, data: dict[str, Any]) -> Path:
    """``data`` as a new file ``folder/stem-<random>.json``: written whole under a hidden
    name, then linked into place, so no reader sees it half-written and no file is replaced."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryError(f"history: cannot create {folder}: {exc.strerror or exc}") from None
    try:
        text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold: nothing is written
        raise HistoryError(f"history: this run's record cannot be written as JSON: {exc}") from None
    tmp = folder / f".{stem}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        while True:
            path = folder / f"{stem}-{secrets.token_hex(4)}.json"
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise HistoryError(f"history: cannot write into {folder}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def append_run(directory: str | Path, record: dict[str, Any]) -> Path:
    """Add one run's record to the history; its file's path."""
    run = record["run"]
    commit = (run.get("commit") or "nocommit")[:12]
    stem = f"{_stamp(float(run['epoch']))}-{commit}"
    return _write_new(Path(directory) / RUNS, stem, record)


def append_ack(directory: str | Path, ack: dict[str, Any]) -> Path:
    """Add one acknowledgement; its file's path."""
    data = {"schema": ACK_SCHEMA, "schema_version": SCHEMA_VERSION, **ack}
    return _write_new(Path(directory) / ACKS, _stamp(float(ack["epoch"])), data)


def _load(path: Path, schema: str) -> dict[str, Any]:
    """One file's record; HistoryError naming the file for anything that is not one."""
    how = "move it out of the history directory (nothing there is ever rewritten)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"history: cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise HistoryError(f"history: {path} is not valid JSON ({exc}); {how}") from None
    if not isinstance(data, dict) or data.get("schema") != schema:
        raise HistoryError(f"history: {path} is not a {schema} file; {how}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise HistoryError(
            f"history: {path} has schema_version {version!r}; this pytest-llmperf reads "
            f"{SCHEMA_VERSION} (a newer plugin wrote it?)"
        )
    if schema == SCHEMA and not (
        isinstance(data.get("run"), dict)
        and isinstance(data["run"].get("epoch"), (int, float))
        and isinstance(data.get("tests"), dict)
    ):
        raise HistoryError(f"history: {path} lacks its run's time or its tests; {how}")
    return data


def read(directory: str | Path, *, missing_ok: bool = True) -> History:
    """The whole history, runs ordered by the time they ran. A directory that does not exist
    is an empty history (``missing_ok``), or a HistoryError naming it."""
    directory = Path(directory)
    if not directory.exists():
        if missing_ok:
            return History(directory)
        raise HistoryError(f"history: no history directory {directory}")
    if not directory.is_dir():
        raise HistoryError(f"history: {directory} is not a directory")

    def files(sub: str) -> list[Path]:
        folder = directory / sub
        return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))

    runs = []
    for path in files(RUNS):
        runs.append(_load(path, SCHEMA))
        runs[-1]["file"] = path.name
    runs.sort(key=lambda r: (float(r["run"]["epoch"]), r["file"]))
    acks = [_load(p, ACK_SCHEMA) for p in files(ACKS)]
    return History(directory, runs, acks)
