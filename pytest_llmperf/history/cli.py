"""``python -m pytest_llmperf history``: each test's series over commits, with its change
points and creep, as text, ``--json`` facts and an ``--html`` page of trend plots; and
``history ack``, which accepts a deliberate change so the history gate stops failing it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import units
from ..extras import missing
from . import acks
from .changes import Analysis, Change, analyse
from .series import Series, collect
from .store import DEFAULT_DIR, HistoryError, append_ack, read

#: The most recent runs of each series the command analyses unless told otherwise.
DEFAULT_WINDOW = 100


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pytest_llmperf history",
        description="Each test's series over the runs in a history (written by "
        "pytest --llmperf --llmperf-history=DIR), its steps and creep. "
        "'history ack DIR --test ID --commit SHA' accepts a deliberate change.",
    )
    ap.add_argument("directory", nargs="?", default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    ap.add_argument("--test", action="append", default=[], help="tests whose id contains this")
    ap.add_argument("--metric", action="append", default=[], help="only this metric (repeat)")
    ap.add_argument("--all", action="store_true", help="every metric, not only the gated ones")
    ap.add_argument(
        "--window", type=int, default=DEFAULT_WINDOW, help="the last N runs of each series"
    )
    ap.add_argument("--html", metavar="PATH", help="write a page of trend plots")
    ap.add_argument("--json", metavar="PATH", help="write the series and changes as JSON")
    return ap


def ack_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pytest_llmperf history ack",
        description="Accept a change (a deliberate slowdown): from COMMIT's first run on, "
        "the history gate takes the test's series as the new normal.",
    )
    ap.add_argument("directory", nargs="?", default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    ap.add_argument("--test", required=True, help="the test's id, as the failure names it")
    ap.add_argument("--metric", help="only this metric (default: every metric of the test)")
    ap.add_argument("--commit", required=True, help="where the change began (its hash)")
    ap.add_argument("--reason", default="", help="why it is accepted, kept with it")
    return ap


def select(series: dict[Any, Series], args: argparse.Namespace) -> list[Series]:
    out = [
        s
        for s in series.values()
        if (args.all or s.gated or s.metric in args.metric)
        and (not args.metric or s.metric in args.metric)
        and (not args.test or any(t in s.test for t in args.test))
    ]
    return sorted(out, key=lambda s: s.key)


def facts(s: Series, analysis: Analysis, ack_list: list[dict[str, Any]]) -> dict[str, Any]:
    """One series and its changes as plain data: what ``--json`` writes and the page plots."""

    def change(c: Change) -> dict[str, Any]:
        a, b = s.points[c.start], s.points[c.end]
        acked = acks.acknowledged(s.points, ack_list, s.test, s.metric, c.start, c.end)
        return {
            "kind": c.kind,
            "index": c.start,
            "end_index": c.end,
            "commit": a.commit,
            "end_commit": b.commit,
            "epoch": a.epoch,
            "before": c.before,
            "after": c.after,
            "change": c.change if units.finite(c.change) else None,
            "regression": c.regression,
            "acknowledged": acked,
        }

    return {
        "test": s.test,
        "metric": s.metric,
        "where": s.where,
        "tier": s.tier,
        "unit": s.unit,
        "kind": s.kind,
        "higher_is_better": s.higher_is_better,
        "tolerance": s.tolerance,
        "gated": s.gated,
        "basis": s.basis,
        "noise": analysis.noise,
        "exact": analysis.exact,
        "why_not": analysis.why_not,
        "points": [
            {"commit": p.commit, "dirty": p.dirty, "epoch": p.epoch, "value": p.value, "std": p.std}
            for p in s.points
        ],
        "changes": [change(c) for c in analysis.changes],
    }


def text(item: dict[str, Any]) -> list[str]:
    """A series in a few lines: what it is, then each change."""
    pts = item["points"]
    noise = "exact" if item["exact"] else f"noise {units.percent(item['noise'])}"
    head = (
        f"{item['test']}  {item['metric']}  ({item['where']}, {item['tier']})  "
        f"{len(pts)} runs {(pts[0]['commit'] or '?')[:8]} .. {(pts[-1]['commit'] or '?')[:8]}, "
        f"{noise}"
    )
    lines = [head + (f"  ({item['why_not']})" if item["why_not"] else "")]
    for c in item["changes"]:
        where = (
            f"at {(c['commit'] or '?')[:8]} (run {c['index'] + 1})"
            if c["kind"] == "step"
            else f"over runs {c['index'] + 1}..{c['end_index'] + 1}, "
            f"{(c['commit'] or '?')[:8]} .. {(c['end_commit'] or '?')[:8]}"
        )
        verdict = "regression" if c["regression"] else "improvement"
        if c["acknowledged"]:
            verdict += ", acknowledged"
        if c.get("shared_with"):
            verdict += (
                f"; {c['shared_with']} of {c['shared_of']} other tests moved the same way at "
                "these runs" + (": the machine?" if 2 * c["shared_with"] > c["shared_of"] else "")
            )
        lines.append(
            f"  {c['kind']:5s} {where}: {units.quantity(c['before'], item['unit'])} -> "
            f"{units.quantity(c['after'], item['unit'])} ({units.change(c['change'])}, "
            f"tolerance {units.percent(item['tolerance'])}): {verdict}"
        )
    return lines


def analysed(args: argparse.Namespace) -> list[dict[str, Any]]:
    history = read(args.directory, missing_ok=False)
    out = []
    for s in select(collect(history.runs), args):
        s.points = s.points[-args.window :]
        out.append(
            facts(
                s, analyse(s.values, s.higher_is_better, s.tolerance, exact=s.exact), history.acks
            )
        )
    shared(out)
    return out


def _moved(item: dict[str, Any], change: dict[str, Any]) -> tuple[float, float, bool]:
    """The times of the runs a change spans (with one run either side) and which way the
    value went."""
    pts = item["points"]
    lo, hi = max(change["index"] - 1, 0), min(change["end_index"] + 1, len(pts) - 1)
    return pts[lo]["epoch"], pts[hi]["epoch"], change["after"] > change["before"]


def shared(items: list[dict[str, Any]]) -> None:
    """For each change of a timed series, how many of the other timed series of the same
    machine and tier changed the same way at the same runs (``shared_with`` of
    ``shared_of``). A change most of them share is the machine's (a spell of another
    tenant's load, a new clock), not one test's code: the flat controls make it visible.
    It is said, never hidden."""
    timed = [i for i in items if not i["exact"]]
    for item in timed:
        peers = [
            j
            for j in timed
            if j is not item
            and (j["where"], j["tier"]) == (item["where"], item["tier"])
            and j["test"] != item["test"]
        ]
        for change in item["changes"]:
            t0, t1, up = _moved(item, change)
            change["shared_of"] = len({j["test"] for j in peers})
            change["shared_with"] = len(
                {
                    j["test"]
                    for j in peers
                    for c in j["changes"]
                    if (c["after"] > c["before"]) == up
                    and t0 <= j["points"][c["index"]]["epoch"] <= t1
                }
            )


def main(argv: list[str]) -> int:
    """``history [DIR]`` and ``history ack``; a history that cannot be read exits 2, named."""
    if argv[:1] == ["ack"]:
        return ack(argv[1:])
    args = parser().parse_args(argv)
    if args.window < 3:
        parser().error(f"--window {args.window}: at least 3 runs")
    why = missing("ruptures", "python -m pytest_llmperf history")
    if why:
        print(f"python -m pytest_llmperf history: error: {why}", file=sys.stderr)
        return 2
    try:
        items = analysed(args)
    except HistoryError as exc:
        print(f"python -m pytest_llmperf history: error: {exc}", file=sys.stderr)
        return 2
    changed = [i for i in items if i["changes"]]
    for item in changed + [i for i in items if not i["changes"]]:
        print("\n".join(text(item)))
    regressions = sum(
        c["regression"] and not c["acknowledged"] for i in items for c in i["changes"]
    )
    print(
        f"\n{len(items)} series, {len(changed)} with changes, {regressions} unacknowledged "
        f"regression{'s' if regressions != 1 else ''} ({args.directory})"
    )
    data = {"directory": str(args.directory), "series": items}
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    if args.html:
        from .page import render

        Path(args.html).write_text(render(data), encoding="utf-8")
        print(f"wrote {args.html}")
    return 0


def ack(argv: list[str]) -> int:
    args = ack_parser().parse_args(argv)
    try:
        record = acks.new_ack(args.test, args.metric, args.commit, args.reason)
        history = read(args.directory, missing_ok=False)  # never into a broken history
        runs = [
            r
            for r in history.runs
            if args.test in r["tests"] and acks.same_commit(record["commit"], r["run"]["commit"])
        ]
        if not runs:
            raise ValueError(
                f"no run of {args.test!r} at commit {record['commit']} in {args.directory}: "
                "give the test id and a commit as the history gate's failure names them"
            )
        if args.metric and not any(args.metric in r["tests"][args.test]["metrics"] for r in runs):
            raise ValueError(f"{args.test!r} has no metric {args.metric!r} at that commit")
        path = append_ack(args.directory, record)
    except (ValueError, HistoryError) as exc:
        print(f"python -m pytest_llmperf history ack: error: {exc}", file=sys.stderr)
        return 2
    what = f"{args.metric} of " if args.metric else ""
    print(f"acknowledged {what}{args.test} from commit {record['commit']}: {path}")
    return 0
