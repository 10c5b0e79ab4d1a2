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
from .series import Series, collect, short_sha
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
        f"{len(pts)} runs {short_sha(pts[0]['commit'])} .. {short_sha(pts[-1]['commit'])}, "
        f"{noise}"
    )
    lines = [head + (f"  ({item['why_not']})" if item["why_not"] else "")]
    for c in item["changes"]:
        where = (
            f"at {short_sha(c['commit'])} (run {c['index'] + 1})"
            if c["kind"] == "step"
            else f"over runs {c['index'] + 1}..{c['end_index'] + 1}, "
            f"{short_sha(c['commit'])} .. {short_sha(c['end_commit'])}"
        )
        verdict = "regression" if c["regression"] else "improvement"
        if c["acknowledged"]:
            verdict += ", acknowledged"
        if c.get("shared_with"):
            verdict += (
                f"; {c['shared_with']} of {c['shared_of']} other tests moved the same way at "
                "these runs" + (": the machine?" if machine_like(c) else "")
            )
        lines.append(
            f"  {c['kind']:5s} {where}: {units.quantity(c['before'], item['unit'])} -> "
            f"{units.quantity(c['after'], item['unit'])} ({units.change(c['change'])}, "
            f"tolerance {units.percent(item['tolerance'])}): {verdict}"
        )
    return lines


def analysed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The chosen series' facts, each timed change marked with how many other tests of the
    same machine, tier and metric moved the same way at the same runs (``shared``): those
    other tests are analysed too, chosen or not."""
    history = read(args.directory, missing_ok=False)
    every = collect(history.runs)
    done: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    def facts_of(s: Series) -> dict[str, Any]:
        if s.key not in done:
            s.points = s.points[-args.window :]
            found = analyse(s.values, s.higher_is_better, s.tolerance, exact=s.exact)
            done[s.key] = facts(s, found, history.acks)
        return done[s.key]

    out = []
    for s in select(every, args):
        item = facts_of(s)
        if not item["exact"]:
            peers = [
                facts_of(p)
                for p in every.values()
                if (p.metric, p.where, p.tier) == (s.metric, s.where, s.tier) and p.test != s.test
            ]
            shared(item, peers)
        out.append(item)
    return out


#: How many runs apart two changes' first runs may be to count as the same moment.
SAME_RUNS = 2


def shared(item: dict[str, Any], peers: list[dict[str, Any]]) -> None:
    """For each change of a timed series, how many of ``peers`` (the other tests' series of
    the same metric, machine and tier) changed the same way within ``SAME_RUNS`` runs of its
    first run (``shared_with`` of ``shared_of``). A change most of at least two others share
    is the machine's (a spell of another tenant's load, a new clock), not one test's code:
    the flat controls make it visible. It is said, never hidden."""
    pts = item["points"]
    for change in item["changes"]:
        lo = pts[max(change["index"] - SAME_RUNS, 0)]["epoch"]
        hi = pts[min(change["index"] + SAME_RUNS, len(pts) - 1)]["epoch"]
        up = change["after"] > change["before"]
        change["shared_of"] = len(peers)
        change["shared_with"] = sum(
            any(
                (c["after"] > c["before"]) == up and lo <= p["points"][c["index"]]["epoch"] <= hi
                for c in p["changes"]
            )
            for p in peers
        )


def machine_like(change: dict[str, Any]) -> bool:
    """Whether most of at least two other tests moved with ``change``."""
    of = change.get("shared_of", 0)
    return of >= 2 and 2 * change.get("shared_with", 0) > of


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
