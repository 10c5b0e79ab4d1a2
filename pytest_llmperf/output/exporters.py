"""Results for the tools users already run.

- :func:`write_benchmark_json`: pytest-benchmark's JSON schema, so
  ``pytest-benchmark compare PATH`` (and ``--histogram``) work on a run;
- :func:`write_bmf`: Bencher Metric Format for continuous-benchmarking history;
- :func:`junit_properties`: every metric as a JUnit XML ``<property>`` (naming rule below);
- :func:`github_step_summary` / :func:`write_github_step_summary`: a verdict
  table for the GitHub Actions job summary.

Every JSON file goes through ``json_report.dumps`` (strict JSON, no NaN/Infinity).

JUnit property names (stable; CI dashboards key on them):

- a metric's value is a plain number in the unit the metric was recorded in, never
  scaled, and that unit ends the name: ``llmperf.<metric>_<unit>``, the unit spelled by
  :func:`unit_suffix` (``/`` -> ``_per_``, ``%`` -> ``pct``, ``µ`` -> ``u``, any other
  run of characters that is not a letter or digit -> ``_``, case kept):
  ``llmperf.time_s = 0.00216804``, ``llmperf.throughput_tokens_per_s = 1.18147e+06``,
  ``llmperf.peak_memory_B = 45056``. A dimensionless metric (a count, a fraction) has no
  unit part: ``llmperf.work.ops = 6``, ``llmperf.mfu = 0.42``;
- the baseline's value is the same name plus ``.baseline``:
  ``llmperf.time_s.baseline = 0.00108402``;
- numbers are integral values exactly, others with six significant digits, ``nan`` /
  ``inf`` when not finite (:func:`junit_number`);
- facts that are not numbers are strings under their own names: ``llmperf.verdict``
  (``pass``, ``regression``, ...), ``llmperf.status`` (``ok``, ``oom``), and
  ``llmperf.fingerprint.<key>`` = ``old -> new`` per environment difference from the
  baseline's.

No torch import here.
"""

from __future__ import annotations

import math
import os
import platform
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import units
from ..judge.outcome import Verdict
from ..results import Metric, TestResult
from .files import write_text
from .json_report import dumps, jsonable
from .markdown import escape, render_table
from .tables import counts_line, detail_lines, fingerprint_changes, summary_table

#: Where the time samples for pytest-benchmark's ``stats`` come from, in order: a call's
#: round time, else a generation's end-to-end latency (``llmperf.generation``: one
#: generation per round, no ``time`` metric).
_TIME_METRICS = ("time", "e2e_latency")


def _time_metric(result: TestResult) -> Metric | None:
    """The result's ``time`` metric, else a ``<name>.time`` one (the candidate of an A/B
    first); else the same for a generation's ``e2e_latency``."""
    for tail in _TIME_METRICS:
        if tail in result.metrics:
            return result.metrics[tail]
        timed = [m for name, m in result.metrics.items() if name.endswith("." + tail)]
        for m in timed:
            if m.name.endswith(f".candidate.{tail}"):
                return m
        if timed:
            return timed[0]
    return None


def _finite_samples(metric: Metric) -> list[float]:
    return [float(x) for x in metric.samples if units.finite(x)]


def _seconds(metric: Metric) -> list[float]:
    """The per-round samples in seconds; the central value alone when there are none."""
    xs = _finite_samples(metric)
    if not xs and units.finite(metric.value):
        xs = [float(metric.value)]
    return [units.convert(x, metric.unit or "s", "s") for x in xs]


def benchmark_stats(samples: list[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` dict of per-round seconds, computed by its own ``Stats``."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for x in samples:
        stats.update(x)
    out = stats.as_dict()
    out["data"] = list(stats.data)
    out["iterations"] = 1
    return out


def _split_nodeid(nodeid: str) -> tuple[str, str | None]:
    name = nodeid.rsplit("::", 1)[-1]
    match = re.search(r"\[(.*)\]$", name)
    return name, (match.group(1) if match else None)


def _machine_info(session: dict) -> dict[str, Any]:
    """pytest-benchmark's machine_info keys (without the slow cpuinfo probe) + llmperf's device."""
    device = session.get("device") or {}
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": platform.python_version(),
        "python_version": platform.python_version(),
        "python_build": list(platform.python_build()),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": {
            "arch": platform.machine(),
            "brand_raw": platform.processor() or platform.machine(),
            "count": os.cpu_count(),
        },
        "llmperf_device": device,
        "llmperf_fingerprint": session.get("fingerprint") or {},
    }


def _commit_info() -> dict[str, Any]:
    try:
        from pytest_benchmark.utils import get_commit_info

        return get_commit_info()
    except Exception as exc:  # no git, or pytest-benchmark's helper changed
        return {
            "id": "unknown",
            "time": None,
            "author_time": None,
            "dirty": False,
            "project": Path.cwd().name,
            "branch": "(unknown)",
            "error": repr(exc),
        }


def _extra_info(result: TestResult, time_metric: Metric) -> dict[str, Any]:
    """Flat ``extra_info``: every metric's value, unit and baseline, plus verdict and status."""
    info: dict[str, Any] = {
        "llmperf.verdict": result.verdict,
        "llmperf.status": result.status,
        "llmperf.group": result.group,
        "llmperf.tier": result.tier,
        "llmperf.time_metric": time_metric.name,
    }
    if result.fingerprint_diff:
        info["llmperf.fingerprint_diff"] = result.fingerprint_diff
    for name, m in result.metrics.items():
        info[name] = m.value
        info[f"{name}.unit"] = m.unit
        info[f"{name}.higher_is_better"] = m.higher_is_better
        if name in result.baseline_values:
            info[f"{name}.baseline"] = result.baseline_values[name]
    return info


def benchmark_json(results: list[TestResult], session: dict) -> dict[str, Any]:
    """The document :func:`write_benchmark_json` writes."""
    try:
        from pytest_benchmark import __version__ as pb_version
    except Exception:
        pb_version = "5.3.1"
    benchmarks = []
    for r in results:
        tm = _time_metric(r)
        if tm is None:
            continue
        samples = _seconds(tm)
        if not samples:  # e.g. OOM before any round finished
            continue
        name, param = _split_nodeid(r.nodeid)
        benchmarks.append(
            {
                "group": r.group or None,
                "name": name,
                "fullname": r.nodeid,
                "params": dict(r.params) or None,
                "param": param,
                "extra_info": _extra_info(r, tm),
                "options": {
                    "disable_gc": False,
                    "timer": "pytest-llmperf (device-synchronized)",
                    "min_rounds": len(samples),
                    "max_time": None,
                    "min_time": None,
                    "warmup": r.params.get("num_warmups", None),
                },
                "stats": benchmark_stats(samples),
            }
        )
    return jsonable(
        {
            "machine_info": _machine_info(session),
            "commit_info": _commit_info(),
            "benchmarks": benchmarks,
            "datetime": datetime.now(timezone.utc).isoformat(),
            "version": pb_version,
        }
    )


def write_benchmark_json(path: str | Path, results: list[TestResult], session: dict) -> None:
    """pytest-benchmark's JSON (``--benchmark-json``) from each result's time samples.

    Results without a time metric or without samples (OOM) are left out.
    """
    write_text(path, dumps(benchmark_json(results, session), indent=4, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- Bencher


def measure_slug(metric_name: str) -> str:
    """Bencher measure slug of a metric name (lowercase, dashes, at most 64 characters).

    ``time`` maps to Bencher's built-in ``latency`` (ns) and ``throughput``
    to its built-in ``throughput``.
    """
    if metric_name == "time":
        return "latency"
    slug = re.sub(r"[^a-z0-9]+", "-", metric_name.lower()).strip("-") or "metric"
    return slug[:64].rstrip("-")


def bmf(results: list[TestResult]) -> dict[str, dict[str, dict[str, float]]]:
    """``{benchmark: {measure: {"value", "lower_value", "upper_value"}}}``.

    ``time`` is reported as ``latency`` in nanoseconds (Bencher's built-in
    unit); other metrics keep their recorded unit. Lower/upper values are the
    sample minimum and maximum when the metric has samples. A value that is not a
    finite number (also after the scaling to ns, which can overflow) is left out:
    Bencher needs a number, and NaN or Infinity is not JSON.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        measures: dict[str, dict[str, float]] = {}
        for name, m in r.metrics.items():
            if not units.finite(m.value):
                continue
            slug = measure_slug(name)
            scale = units.convert(1.0, m.unit or "s", "ns") if slug == "latency" else 1.0
            entry = {"value": float(m.value) * scale}
            xs = _finite_samples(m)
            if xs:
                entry["lower_value"] = min(xs) * scale
                entry["upper_value"] = max(xs) * scale
            entry = {k: v for k, v in entry.items() if units.finite(v)}
            if "value" in entry:
                measures[slug] = entry
        if measures:
            out[r.nodeid] = measures
    return out


def write_bmf(path: str | Path, results: list[TestResult]) -> None:
    """Bencher Metric Format JSON (``bencher run --adapter json --file PATH``)."""
    write_text(path, dumps(bmf(results), indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- JUnit


#: A unit's characters that a property name spells out; any other run of characters that
#: is not a letter or digit becomes one ``_``.
_UNIT_WORDS = (("/", "_per_"), ("%", "pct"), ("µ", "u"), ("μ", "u"))


def unit_suffix(unit: str) -> str:
    """A unit as the tail of a JUnit property name: ``tokens/s`` -> ``tokens_per_s``,
    ``%`` -> ``pct``, ``µs`` -> ``us``; case kept (``B``, ``GiB``, ``FLOP``); "" without
    a unit."""
    text = (unit or "").strip()
    for old, new in _UNIT_WORDS:
        text = text.replace(old, new)
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def junit_name(metric: Metric) -> str:
    """``llmperf.<metric name>_<unit suffix>``, or ``llmperf.<metric name>`` for a count or
    other dimensionless metric (:func:`unit_suffix`)."""
    suffix = unit_suffix(metric.unit)
    return f"llmperf.{metric.name}_{suffix}" if suffix else f"llmperf.{metric.name}"


def junit_number(value: Any) -> str:
    """A property value a machine parses as a number: an integral value exactly (``45056``),
    any other six significant digits (``0.00216804``, ``2.26493e+06``); ``nan``/``inf``
    for a value that is not finite (Python's, Java's and JavaScript's parsers read them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def junit_properties(result: TestResult) -> list[tuple[str, str]]:
    """The test's llmperf facts as JUnit XML ``(name, value)`` properties.

    The plugin adds them to ``item.user_properties``, which ``--junitxml`` writes as
    ``<property>`` elements of the test case; names and values follow the rule in this
    module's docstring: ``llmperf.time_s = 0.00216804``, ``llmperf.time_s.baseline``,
    ``llmperf.verdict = regression``.
    """
    props = [
        ("llmperf.verdict", str(result.verdict or "")),
        ("llmperf.status", str(result.status or "")),
    ]
    for name, m in result.metrics.items():
        key = junit_name(m)
        props.append((key, junit_number(m.value)))
        if name in result.baseline_values:
            props.append((f"{key}.baseline", junit_number(result.baseline_values[name])))
    for key, old, new in fingerprint_changes(result):
        props.append((f"llmperf.fingerprint.{key}", f"{old} -> {new}"))
    return props


# --------------------------------------------------------------------------- GitHub

ICONS = {
    Verdict.PASS: "✅",
    Verdict.IMPROVED: "🚀",
    Verdict.NO_BASELINE: "🆕",
    Verdict.INCONCLUSIVE: "⚠️",
    Verdict.REGRESSION: "❌",
}
#: The verdicts whose reasons the step summary spells out.
_EXPLAINED = (Verdict.REGRESSION, Verdict.INCONCLUSIVE)


def github_step_summary(results: list[TestResult], session: dict) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: counts, the verdict table and failure details.

    GitHub renders the HTML in it: every text from the run is escaped (``markdown.escape``).
    Tier and baseline file are set in ``<code>``, not a code span: a backslash escape is
    literal inside a code span, so an escaped name would show its backslashes (and a
    backtick in it would close the span).
    """
    device = session.get("device") or {}
    dev = escape(device.get("name", "?") if isinstance(device, Mapping) else device)
    tier = escape(session.get("tier") or "-")
    baselines = escape(session.get("baseline_file") or "-")
    lines = [
        "## pytest-llmperf",
        "",
        f"**{counts_line(results)}** on {dev}, tier <code>{tier}</code>, "
        f"baselines <code>{baselines}</code>",
        "",
    ]
    if results:
        table = summary_table(results)
        vi = table.columns.index("verdict")
        for row in table.rows:
            row[vi] = f"{ICONS.get(row[vi], '')} {row[vi]}".strip()
        lines += [render_table(table), ""]
        bad = [(r, ls) for r, ls in detail_lines(results) if r.verdict in _EXPLAINED]
        if bad:
            lines += ["<details><summary>Why</summary>", ""]
            for r, ls in bad:
                lines.append(f"- {escape(r.nodeid)}: **{r.verdict}**")
                lines += [f"  - {escape(line)}" for line in ls]
            lines += ["", "</details>", ""]
    return "\n".join(lines)


def write_github_step_summary(path: str | Path, results: list[TestResult], session: dict) -> None:
    """Append :func:`github_step_summary` to ``path`` (the file ``$GITHUB_STEP_SUMMARY``
    names); OSError naming it when it cannot be written."""
    write_text(path, github_step_summary(results, session) + "\n", append=True)


def append_github_step_summary(
    results: list[TestResult], session: dict, env: Mapping[str, str] = os.environ
) -> bool:
    """Append :func:`github_step_summary` to the file ``GITHUB_STEP_SUMMARY`` names.

    Returns False (and writes nothing) when the variable is unset or the file
    cannot be written (with a warning). The session calls
    :func:`write_github_step_summary` instead, which raises: a lost summary fails its run.
    """
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    try:
        write_github_step_summary(target, results, session)
    except OSError as exc:
        warnings.warn(
            f"pytest-llmperf: cannot append to GITHUB_STEP_SUMMARY {target!r}: {exc}", stacklevel=2
        )
        return False
    return True


__all__ = [
    "append_github_step_summary",
    "benchmark_json",
    "benchmark_stats",
    "bmf",
    "github_step_summary",
    "junit_name",
    "junit_number",
    "junit_properties",
    "measure_slug",
    "unit_suffix",
    "write_benchmark_json",
    "write_bmf",
    "write_github_step_summary",
]
