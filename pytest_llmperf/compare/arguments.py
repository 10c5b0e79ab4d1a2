"""Each worker's command line, working directory and selection.

The candidate worker runs the run's own arguments where the run started. The
reference worker must run the *same selection in its own tree*: every path the
run names inside the candidate's repository (test paths, ``-c``, ``--rootdir``,
``-o pythonpath=...``) becomes the same path in the reference worktree; a test
path the reference lacks is left out (its tests are new), and a node id
(``file.py::test``) is given as its file and selected by the worker itself, so a
test that exists only in the working tree is not a usage error on the reference
side that would leave every other test uncompared.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import flag, without_options
from .worktree import Worktree

#: Options of the run a worker must not see: the controller's own (comparing, reports,
#: pytest's JUnit XML) and parallelism (pytest-xdist's).
_DROP_WITH_VALUE = {
    *(flag(suffix) for suffix in ("compare", "report", "benchmark-json", "bmf")),
    "--junitxml",
    "--junit-xml",
    "-n",
    "--numprocesses",
    "--dist",
    "--maxprocesses",
    "--tx",
}
_DROP_FLAGS = {flag("update-baselines"), flag("strict"), "--looponfail", "-f"}


def worker_args(args: Iterable[str]) -> list[str]:
    """The run's arguments for a worker: its selection and options, without what only the
    controller does (comparing, reports, xdist), collection errors reported, not fatal."""
    kept = without_options(args, _DROP_WITH_VALUE, _DROP_FLAGS)
    # -n2, -nauto: xdist's short form with its value attached
    kept = [a for a in kept if not (len(a) > 2 and a[:2] == "-n" and a[2:].isalnum())]
    return [*kept, flag(""), "--continue-on-collection-errors"]


def _cache_off(args: Sequence[str]) -> bool:
    pairs = zip(args, [*args[1:], ""], strict=True)
    return any(a == "-pno:cacheprovider" or (a, b) == ("-p", "no:cacheprovider") for a, b in pairs)


@dataclass
class Side:
    """One worker's command line, where it starts, and the tests it selects itself."""

    args: list[str]
    cwd: Path
    #: [real path, "Class::test[id]" or ""] per test path named (None: pytest's own).
    select: list[list[str]] | None = None
    #: The run named test paths and this tree has none of them: nothing to collect.
    empty: bool = False
    #: The test paths named that this tree lacks.
    dropped: list[str] = field(default_factory=list)


def candidate_side(args: Sequence[str], here: Path, cache: Path) -> Side:
    return Side(_with_cache(worker_args(args), cache), here)


def _with_cache(args: list[str], cache: Path) -> list[str]:
    """A cache of the worker's own: its ``lastfailed`` must not overwrite the run's (the
    controller's), which records the verdicts the user saw."""
    return args if _cache_off(args) else [*args, "-o", f"cache_dir={cache}"]


def reference_side(
    args: Sequence[str], positional: Sequence[str], here: Path, tree: Worktree, cache: Path
) -> Side:
    """The run's arguments with every path into the candidate's repository moved to the
    reference worktree (see the module docstring)."""
    mirror = tree.mirror(here)
    # Started outside the repository: the same directory; else its mirror where REF has it.
    cwd = here if mirror is None else mirror if mirror.is_dir() else tree.path
    # Relative option values resolve against the worker's directory: right only where it
    # mirrors the run's.
    relative = cwd != mirror
    pending = list(positional)
    out: list[str] = []
    select: list[list[str]] = []
    dropped: list[str] = []
    named = False
    for token in worker_args(args):
        if pending and token == pending[0]:
            pending.pop(0)
            path, _, rest = token.partition("::")
            full = here / path
            if not full.exists():  # --pyargs names, or a path that is nowhere
                out.append(token)
                continue
            named = True
            target = tree.mirror(full)
            if target is None:  # outside the repository: the same path on both sides
                target = full.resolve()
            elif not target.exists():
                dropped.append(token)
                continue
            if str(target) not in out:
                out.append(str(target))
            select.append([os.path.realpath(target), rest])
            continue
        out.append(_moved_value(token, here, tree, relative))
    return Side(
        _with_cache(out, cache),
        cwd,
        select=select if any(rest for _, rest in select) else None,
        empty=named and not select,
        dropped=dropped,
    )


def _moved_value(token: str, here: Path, tree: Worktree, relative: bool) -> str:
    """An option (``-c X``'s X, ``--rootdir=X``, ``pythonpath=X Y``) with each path into the
    candidate's repository that the reference has moved there."""
    prefix, eq, value = token.partition("=")
    if not eq:
        prefix, value = "", token
    parts = value.split(" ")
    for i, part in enumerate(parts):
        if not part or not (os.path.isabs(part) or relative):
            continue
        full = here / part
        target = tree.mirror(full) if full.exists() else None
        if target is not None and target.exists():
            parts[i] = str(target)
    return prefix + eq + " ".join(parts)
