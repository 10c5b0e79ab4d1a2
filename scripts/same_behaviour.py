"""Show that a refactor changed no verdict and no report: two trees, the same results.

Timings move between any two runs, so two runs are compared on what must not move
(each test's status, verdict, its metrics' names, kinds, units, directions and
gating, every work count and every verdict line that names no timing), and the
reports are compared on the *same* results: one run's JSON report rendered to
Markdown, HTML and JSON by each tree's own code (the suite's report hooks
included) must give the same bytes.

    # a JSON report of the shipped suite from each tree, then:
    python scripts/same_behaviour.py --old-tree /tmp/old --old-report old.json --new-report new.json
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Renders ``argv[2]`` (a JSON report) into ``argv[3]`` with the package found first on
#: ``sys.path`` (``argv[1]``) and the suite's report hooks registered, as a run has them.
RENDER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, str(Path(sys.argv[1]) / "tests" / "benchmarks"))
import pluggy
from pytest_llmperf import hookspec
from pytest_llmperf.output.report import write_report
from pytest_llmperf.results import TestResult
import conftest
pm = pluggy.PluginManager("pytest")
pm.add_hookspecs(hookspec)
pm.register(conftest)
data = json.loads(Path(sys.argv[2]).read_text())
results = [TestResult.from_dict(r) for r in data["results"]]
for suffix in (".md", ".html", ".json"):
    write_report(Path(sys.argv[3]) / f"report{suffix}", results, data["session"], pm.hook)
"""

#: A number with a unit of time, or a change or p-value: what a rerun moves.
TIMING = re.compile(r"[-+]?\d[\d.,]*(e-?\d+)?\s*(%|s|ms|us|ns|x|tokens/s|/s)?\b")


def render(tree: Path, report: Path, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", RENDER, str(tree), str(report), str(out)], check=True)
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


def stable(result: dict) -> dict:
    """What a rerun on the same machine must reproduce exactly."""
    return {
        "status": result["status"],
        "verdict": result["verdict"],
        "metrics": {
            name: [m["kind"], m["unit"], m["higher_is_better"], m["gated"]]
            + ([m["value"]] if m["kind"] == "work" else [])
            for name, m in sorted(result["metrics"].items())
        },
        "work": result["work"],
        "lines": [TIMING.sub("#", line) for line in result["verdict_lines"]],
        "missing": result["missing_baselines"],
        "work_gate": result["work_gate"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="checkout of the old commit")
    parser.add_argument("--old-report", type=Path, required=True, help="JSON report of a run on it")
    parser.add_argument("--new-report", type=Path, required=True, help="JSON report of this tree")
    args = parser.parse_args()
    old = {r["nodeid"]: r for r in json.loads(args.old_report.read_text())["results"]}
    new = {r["nodeid"]: r for r in json.loads(args.new_report.read_text())["results"]}
    failures = 0
    if set(old) != set(new):
        print(
            f"tests differ: only old {sorted(set(old) - set(new))}, only new "
            f"{sorted(set(new) - set(old))}"
        )
        failures += 1
    for nodeid in sorted(set(old) & set(new)):
        a, b = stable(old[nodeid]), stable(new[nodeid])
        for key in a:
            if a[key] != b[key]:
                failures += 1
                print(f"{nodeid}: {key} differs:\n  old {a[key]}\n  new {b[key]}")
    print(f"runs: {len(set(old) & set(new))} tests compared, {failures} differences")
    with tempfile.TemporaryDirectory() as tmp:
        before = render(args.old_tree, args.old_report, Path(tmp) / "old")
        after = render(REPO, args.old_report, Path(tmp) / "new")
    for name in before:
        if before[name] != after.get(name):
            failures += 1
            diff = difflib.unified_diff(
                before[name].splitlines(), after.get(name, "").splitlines(), lineterm="", n=1
            )
            print(f"{name} differs:\n" + "\n".join(list(diff)[:40]))
        else:
            print(f"{name}: the same {len(before[name]):,} bytes from both trees")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
