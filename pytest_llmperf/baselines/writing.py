"""Writing a baseline file: merged under a lock with what is already there, checked for
non-finite numbers, and renamed over the old file, so concurrent writers, partial
refreshes and an interrupted write never lose an entry or leave a broken file."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..results import TestResult
from .checks import _Bad, _show, _sweep
from .entries import test_entry
from .project import Project
from .reading import load
from .schema import SCHEMA, SCHEMA_VERSION, BaselineError


def _finite_float(x: Any) -> bool:
    """What the writer stores as a number: anything ``float()`` takes but text, if finite."""
    if isinstance(x, (str, bytes)):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError, OverflowError):
        return False


def _check_writable(path: Path, results: list[TestResult], **facts: Any) -> None:
    """Refuse what would be written as ``NaN``/``Infinity`` (invalid JSON to strict readers,
    and a baseline that hides every regression), naming the file, test and metric."""
    head = f"llmperf: not writing baseline file {path} (left untouched):"
    try:
        for key, value in facts.items():
            _sweep(value, key)
    except _Bad as exc:
        raise BaselineError(f"{head} {exc}") from None
    for r in results:
        for name, m in sorted(r.metrics.items()):
            fields = [("value", m.value), ("tolerance", m.tolerance)]
            fields += [(f"samples[{i}]", x) for i, x in enumerate(m.samples)]
            fields += [(f"normalized_samples[{i}]", x) for i, x in enumerate(m.normalized_samples)]
            for where, x in fields:
                if not (where == "tolerance" and x is None) and not _finite_float(x):
                    raise BaselineError(
                        f"{head} test {r.nodeid!r}, metric {name!r}: {where} is {_show(x)}, "
                        "not a finite number; a baseline holds only finite numbers (NaN and "
                        "Infinity hide any change, and strict JSON readers reject them)"
                    )
        try:
            _sweep(r.params, "params")
            _sweep(r.work, "work")
        except _Bad as exc:
            raise BaselineError(f"{head} test {r.nodeid!r}: {exc}") from None


def dumps(data: dict[str, Any]) -> str:
    """The file's text: sorted keys, fixed indentation; never ``NaN`` or ``Infinity``."""
    try:
        return json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    except ValueError as exc:  # a non-finite float the checks before did not see
        raise BaselineError(f"llmperf: not written as JSON: {exc}") from None
    except RecursionError:
        raise BaselineError("llmperf: not written as JSON: nested too deeply") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """An exclusive lock on the baseline directory, so concurrent writers merge one at a
    time; locking the directory itself leaves no lock file behind. Yields whether the
    lock is held (not on Windows, where rename is still atomic)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: rename is still atomic
        yield False
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _file_mode(path: Path) -> int:
    """Keep an existing file's mode; a new one gets what the umask allows."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _refuse_read_only(path: Path, target: Path) -> None:
    """A file the user made read-only stays as it is: the rename that replaces it would
    ignore the file's mode (only the directory's counts), so look at the mode here."""
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        return
    if mode & 0o222 == 0:
        why = f"is read-only (mode {mode:04o})"
    elif not os.access(target, os.W_OK):
        why = f"is not writable by this user (mode {mode:04o})"
    else:
        return
    if path.is_symlink():
        why = f"(a link to {target}) {why}"
    raise BaselineError(
        f"llmperf: baseline file {path} {why}, so it was not refreshed and was left untouched. "
        f"Make it writable (chmod u+w {path}) to refresh it, or leave out "
        "--llmperf-update-baselines."
    )


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temporaries(target: Path) -> None:
    """Remove what a killed write of this file left (as large as the file itself):
    ``.<name>.XXXXXXXX.tmp``, the name ``mkstemp`` gives ours, and nothing of any other name
    (another file's temporaries, a user's ``.<name>.notes.tmp``).

    Called only while holding the directory lock, which makes every match stale: a writer
    of ours creates its temporary after taking the lock and renames or removes it before
    letting go, so while we hold the lock no writer of ours is mid-write, and a match was
    left by one that died holding it (SIGKILL, power loss). That rests on every writer
    taking the same lock: the lock is on the directory that holds the file itself (a
    symlink is resolved first, so writers through a link and writers of the target lock
    the same directory; older versions wrote through a link into the link's directory,
    which is not cleaned), and ``flock`` holds across processes and, on Linux NFS, across
    hosts. Where ``flock`` does nothing (some FUSE or SMB mounts) concurrent merges are
    unsafe anyway. Without fcntl (Windows) nothing is removed; should mkstemp's names ever
    change, nothing matches: both fail safe, leaving files rather than removing them."""
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"[a-z0-9_]{8}\.tmp")
    with os.scandir(target.parent) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def write(
    path: Path,
    *,
    device: dict[str, Any],
    fingerprint: dict[str, Any],
    results: list[TestResult],
    pool: int = 1,
    stack: dict[str, Any] | None = None,
    project: Project | None = None,
) -> int:
    """Merge ``results`` into the file at ``path``; returns how many entries were written.

    Entries of tests that did not run are kept. ``stack`` (a work file's) is the
    dispatch context stamped on each entry written: the entry goes beside the test's
    entries of other contexts and replaces the one of the same context (and a version 1
    entry, whose context is unknown), so a refresh on an AVX512_VNNI CPU or under a new
    torch never relabels what another recorded. Raises
    BaselineError, leaving the file as it was, if the existing file is corrupt,
    belongs to another device or to another ``project``, or is read-only, or a result
    holds a non-finite number. The file records ``project``'s name (a file that named
    none is adopted); with ``project`` None the file's own stays as it was.
    A symlinked file is written through: its target is replaced, the link stays.
    """
    _check_writable(path, results, device=device, fingerprint=fingerprint, stack=stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A link to a shared file: the target is what must change (replacing the link with a
    # plain file would leave the shared target stale), and its directory is what to lock.
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target) as locked:
        existing = load(path, device.get("key"), project)
        _refuse_read_only(path, target)
        tests = dict(existing.tests) if existing else {}
        if stack is not None:
            from ..measure.dispatch import context_id

            key = context_id(stack)
        for r in results:
            if stack is None:
                tests[r.nodeid] = test_entry(r, tests.get(r.nodeid), pool)
                continue
            contexts = dict(tests.get(r.nodeid, {}).get("contexts", {}))
            contexts[key] = {**test_entry(r, contexts.get(key), pool), "stack": stack}
            tests[r.nodeid] = {"contexts": contexts}
        data = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "device": device,
            "fingerprint": fingerprint,
            "tests": tests,
        }
        # A file of this project keeps its name as recorded (no churn in review); one that
        # named none is adopted.
        name = (existing.project if existing else None) or (project.name if project else None)
        if name is not None:
            data["project"] = name
        try:
            text = dumps(data)
        except BaselineError as exc:
            raise BaselineError(f"{exc} (baseline file {path}, left untouched)") from None
        if locked:
            _remove_stale_temporaries(target)
        mode = _file_mode(target)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return len(results)
