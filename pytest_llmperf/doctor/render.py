"""The report as text: workload, noise, each gate's smallest visible change, facts, advice."""

from __future__ import annotations

from statistics import median

from ..judge.detectable import can_see
from .verdict import RECOMMENDATION


def _pct(x: float | None, digits: int = 1) -> str:
    return "unknown" if x is None else f"{x:.{digits}%}"


def _text(report: dict) -> str:
    noise, gates, tol = report["noise"], report["gates"], report["tolerance"]
    w = report["workload"]
    lines = [
        f"pytest-llmperf doctor ({report['wall_s']:.0f} s{', quick' if report['quick'] else ''})",
        "",
    ]
    med = noise["process_medians_s"]
    per_call = f": {median(med) * 1e3:.2f} ms per call" if med else ""
    threads = f"{w['threads']} thread{'s' * (w['threads'] != 1)}"
    lines.append(f"workload  {w['description']} on {w['device']}, {threads}{per_call}")
    if med:
        rounds = noise["rounds_per_process"]
        lines.append(
            f"noise     within a process {_pct(noise['within_process_spread'])} "
            f"(robust spread, ~{median(rounds):.0f} rounds in {w['window_s']:g} s)"
        )
        lines.append(
            f"          between {len(med)} processes {_pct(noise['between_process_drift'])} "
            f"(medians {min(med) * 1e3:.2f}-{max(med) * 1e3:.2f} ms)"
        )
    if noise["pairs"]:
        lines.append(
            f"          A/A pairs: ratio median {noise['ratio_median']:.3f}, "
            f"spread {_pct(noise['ratio_spread'])} over {noise['pairs']} pairs"
        )
    if noise.get("error"):
        lines.append(f"          measurement failed: {noise['error']}")
    lines += ["", f"gates (tolerance {_pct(tol, 0)}): smallest change each can see here"]
    for gate, label in (
        ("stored", "stored baseline"),
        ("compare", "A/B (--llmperf-compare)"),
        ("work", "work signature"),
    ):
        g = gates[gate]
        if gate == "work":
            seen = "exact: counts, not times"
        elif g.get("why") or g["detectable"] is None:
            # The words every place uses (judge.detectable.can_see), never a number from
            # too few samples.
            seen = can_see(None, g.get("why", ""))
        else:
            seen = f">= {_pct(g['detectable'])}"
            if gate == "stored" and noise["between_process_drift"] is not None:
                seen += f" (floor: drift between runs {_pct(noise['between_process_drift'])})"
            if gate == "compare" and noise["paired_offset"] is not None:
                seen += f" (A/A offset {_pct(noise['paired_offset'])})"
        verdict = (
            "fit"
            if g["fit"]
            else "cannot judge any change"
            if g.get("why")
            else "not fit"
            if g["detectable"] is None
            else "cannot see its tolerance"
        )
        lines.append(f"  {label:<24} {seen}: {verdict}")
    lines += ["", "machine"]
    for key, fact_ in report["facts"].items():
        lines.append(f"  {key.replace('_', ' '):<22} {fact_['text']}")
    if report["advice"]:
        lines += ["", "advice"] + [f"  - {a}" for a in report["advice"]]
    asked = report["gate"]
    verdict = "fit" if report["exit_status"] == 0 else "not fit"
    lines += [
        "",
        f"recommendation: {RECOMMENDATION[report['recommendation']]}",
        f"gate asked: {asked} -> {verdict} (exit {report['exit_status']})",
    ]
    return "\n".join(lines)
