"""Acknowledged changes: a deliberate slowdown accepted, so the history gate stops failing it.

An acknowledgement names a test, a metric (or every metric of the test) and the commit
where the accepted change began, and accepts the level the series had when it was made:
from the last run before it on, the series is the new normal, and the history gate looks
only at those runs, as Bencher's and CodSpeed's acknowledged alerts do. A creep accepted
while it is still going on fails again once it has crept past the tolerance once more.
It is a file of its own (``store.append_ack``), so acknowledging never rewrites the
history.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Sequence
from typing import Any

from .series import Point

#: The fewest hex digits of a commit an acknowledgement may give.
MIN_SHA = 7


def matches(ack: dict[str, Any], test: str, metric: str) -> bool:
    return ack.get("test") == test and ack.get("metric") in (None, metric)


def same_commit(short: str | None, full: str | None) -> bool:
    """Whether an acknowledged commit (at least ``MIN_SHA`` hex digits) is this run's."""
    return bool(short and full and len(short) >= MIN_SHA and full.startswith(short))


def since(
    points: Sequence[Point], acks: Sequence[dict[str, Any]], test: str, metric: str
) -> list[Point]:
    """The points from the level accepted by the latest acknowledgement on: from the last run
    made before it (all of them when no acknowledgement names a commit of this series)."""
    start = 0
    for ack in acks:
        if not matches(ack, test, metric) or at(points, ack) is None:
            continue
        before = [i for i, p in enumerate(points) if p.epoch <= float(ack["epoch"])]
        if before:
            start = max(start, before[-1])
    return list(points[start:])


def at(points: Sequence[Point], ack: dict[str, Any]) -> int | None:
    """The index of the first run of the acknowledged commit, None when it has none here."""
    return next((i for i, p in enumerate(points) if same_commit(ack["commit"], p.commit)), None)


#: How far (in runs) an acknowledged commit may be from the start of the change it accepts:
#: where a creep began is an estimate, and it moves as runs are added.
NEAR = 3


def acknowledged(
    points: Sequence[Point],
    acks: Sequence[dict[str, Any]],
    test: str,
    metric: str,
    start: int,
    end: int,
) -> bool:
    """Whether a change over runs ``start`` .. ``end`` was acknowledged: by a record made
    after its last run, naming a commit within it or ``NEAR`` runs of its start."""
    for ack in acks:
        i = at(points, ack) if matches(ack, test, metric) else None
        if i is None or float(ack["epoch"]) < points[end].epoch:
            continue
        if start - NEAR <= i <= max(end, start + NEAR):
            return True
    return False


def new_ack(test: str, metric: str | None, commit: str, reason: str) -> dict[str, Any]:
    """An acknowledgement's record; ValueError for a commit too short to be unambiguous."""
    commit = commit.strip().lower()
    if len(commit) < MIN_SHA or any(c not in "0123456789abcdef" for c in commit):
        raise ValueError(
            f"--commit {commit!r}: give the commit's hash, {MIN_SHA} hex digits at least"
        )
    try:
        who = getpass.getuser()
    except Exception:  # no user name in a container: the record still says when
        who = None
    return {
        "test": test,
        "metric": metric,
        "commit": commit,
        "reason": reason,
        "epoch": time.time(),
        "by": who,
    }
