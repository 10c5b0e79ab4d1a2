"""Metric names a gate or tolerance may give, and the check that each can match a metric.

A name matches a metric in full, by a dotted tail or by its kind (``metric_keys``).
Run-level names (``--llmperf-gate``, ``--llmperf-tolerance`` keys) are checked against
every metric the plugin takes; a marker's against the metrics its test yielded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..metrics import Kind
from .tolerances import DEFAULT_TOLERANCES


def metric_keys(name: str, kind: str) -> list[str]:
    """What a tolerance or gate may name a metric by: ``decode.work.ops``, ``work.ops``,
    ``ops``, then its kind."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))] + ([kind] if kind else [])


#: Metrics the plugin takes only on some devices or stacks (the allocator's reserved peak on
#: accelerators, RSS on the CPU, NVML energy, MFU/MBU where a peak is known, compile and
#: kernel counts): naming one in a marker is no typo on a machine that lacks it.
OPTIONAL_METRICS = (
    "peak_memory_reserved",
    "peak_rss",
    "energy",
    "mfu",
    "mbu",
    "work.graphs",
    "work.graph_breaks",
    "work.recompiles",
    "work.kernels",
    "work.allocator_growth",
)


#: Every metric the plugin itself takes, name -> kind, on any device: with the kinds, what
#: a run-level name (``--llmperf-gate``, ``--llmperf-tolerance`` keys) may name. A metric
#: may carry a measurement's prefix (``decode.throughput``, ``ab.speedup``,
#: ``ab.reference.time``). Kept true by tests/unit/test_run_options.py, which checks every
#: metric that real runs yield (and the work signature's totals) against it.
PLUGIN_METRICS: dict[str, Kind] = {
    # a measured call (measure/sequence.py)
    "time": Kind.TIME,
    "throughput": Kind.THROUGHPUT,
    "peak_memory": Kind.MEMORY,
    "peak_rss": Kind.MEMORY,
    "peak_memory_reserved": Kind.MEMORY,
    "energy": Kind.ENERGY,
    "mfu": Kind.EFFICIENCY,
    "mbu": Kind.EFFICIENCY,
    # the work signature (measure/work.py, WorkSignature.totals)
    "work.ops": Kind.WORK,
    "work.flops": Kind.WORK,
    "work.bytes": Kind.WORK,
    "work.syncs": Kind.WORK,
    "work.copies": Kind.WORK,
    "work.tensor_peak": Kind.WORK,
    "work.retained": Kind.WORK,
    "work.growth": Kind.WORK,
    "work.allocator_growth": Kind.WORK,
    "work.graphs": Kind.WORK,
    "work.graph_breaks": Kind.WORK,
    "work.recompiles": Kind.WORK,
    "work.kernels": Kind.WORK,
    # a generation (measure/generation.py)
    "ttft": Kind.TIME,
    "prefill_throughput": Kind.THROUGHPUT,
    "tpot": Kind.TIME,
    "decode_throughput": Kind.THROUGHPUT,
    "itl_p50": Kind.TIME,
    "itl_p90": Kind.TIME,
    "itl_p99": Kind.TAIL,
    "itl_tail": Kind.TAIL,
    "itl_max": Kind.TAIL,
    "e2e_latency": Kind.TIME,
    "output_tokens": Kind.OTHER,
    # an A/B (llmperf.ab: NAME.speedup, and for generations the paired token ratios)
    "speedup": Kind.RATIO,
    "ttft_speedup": Kind.RATIO,
    "itl_speedup": Kind.RATIO,
    "itl_p99_speedup": Kind.TAIL,
}


def unknown_names(names: Iterable[str], metrics: Mapping[str, str]) -> list[str]:
    """Those of ``names`` that match none of ``metrics`` (name -> kind) by full name, dotted
    tail or kind, and are neither a known kind nor an optional metric (``OPTIONAL_METRICS``,
    bare or behind a prefix this test's metrics use)."""
    known = set(DEFAULT_TOLERANCES)
    prefixes = {""}
    for name, kind in metrics.items():
        known.update(metric_keys(name, kind))
        parts = name.split(".")
        prefixes.update(".".join(parts[:i]) + "." for i in range(1, len(parts)))
    for optional in OPTIONAL_METRICS:
        known.update(metric_keys(optional, ""))
        known.update(prefix + optional for prefix in prefixes)
    return [n for n in names if n not in known]


def unknown_run_names(names: Iterable[str]) -> list[str]:
    """Those of ``names`` that no test's metric could match: neither a kind nor a metric of
    ``PLUGIN_METRICS`` in full, by a dotted tail (``ops``) or behind a measurement's prefix
    (``decode.work.ops``). Run-level names apply to every test, so whether a test has the
    metric is not asked here (the marker's names are checked per test)."""
    tails = {key for metric in PLUGIN_METRICS for key in metric_keys(metric, "")}
    unknown = []
    for name in names:
        parts = name.split(".")
        known = name in DEFAULT_TOLERANCES or name in tails
        if not known and all(parts):
            known = any(".".join(parts[i:]) in PLUGIN_METRICS for i in range(1, len(parts)))
        if not known:
            unknown.append(name)
    return unknown


def check_run_names(names: Iterable[str], where: str) -> tuple[str, ...]:
    """``names`` (a gate's, or a tolerance's keys) if each can name a metric; otherwise a
    ValueError naming the option, the bad names and the valid ones."""
    names = tuple(names)
    bad = unknown_run_names(names)
    if not bad:
        return names
    plural = "s" if len(bad) > 1 else ""
    raise ValueError(
        f"{where}: unknown metric name{plural} or kind{plural} "
        f"{', '.join(map(repr, bad))}. Valid: a kind ({', '.join(DEFAULT_TOLERANCES)}) or "
        f"a metric the plugin takes ({', '.join(PLUGIN_METRICS)}), in full, by a dotted "
        "tail (ops for work.ops) or behind a measurement's name (decode.throughput, "
        "ab.speedup). A metric a test records itself (llmperf.record('weights', ...)) is "
        "named at run level by its kind, or per test with @pytest.mark.llmperf(gate=..., "
        "tolerance=...)"
    )


#: Why a kind gates nothing on a device where it is measured, and what gates in its place.
_NOT_GATED_HERE = {
    ("cpu", "memory"): (
        "on the CPU a call's RSS moved 10-25% between identical runs, so it informs; "
        "work.tensor_peak and work.retained (kind work) gate the call's tensor memory "
        "exactly"
    ),
}


def ungated_names(
    source: str,
    names: Iterable[str],
    metrics: Iterable[Any],
    device: str,
    asks: Callable[[str, str], bool] | None = None,
    scope: str = "this test",
) -> list[str]:
    """Notes for the ``names`` a gate (``source``: the marker's, ``--llmperf-gate``) asks for
    that gate nothing among ``metrics`` on this ``device`` type: measured but not gated
    here (memory on the CPU), or not measured here (energy without NVML). A name that
    matches nothing anywhere is a typo, an error elsewhere (``unknown_names``). ``asks``:
    whether the test's whole policy asks for a metric (a marker's gate within the run's):
    one the other level leaves out is not this name's to gate. ``scope``: whose metrics
    these are ("this test", "this run")."""
    metrics = list(metrics)
    out = []
    for name in names:
        matched = [m for m in metrics if name in metric_keys(m.name, m.kind)]
        asked = [m for m in matched if asks is None or asks(m.name, m.kind)]
        if any(m.gated for m in asked) or (matched and not asked):
            continue
        if asked:
            reasons = {_NOT_GATED_HERE.get((device, str(m.kind)), "") for m in asked}
            why = "; ".join(sorted(reasons - {""}))
            shown = ", ".join(sorted({m.name for m in asked})[:6])
            out.append(
                f"{source} names {name!r}, but nothing it names in {scope} is gated on this "
                f"device ({device}): {shown} reported only" + (f" ({why})" if why else "")
            )
        else:
            out.append(
                f"{source} names {name!r}, which {scope} measured no metric of on this "
                f"device ({device}): it gated nothing"
            )
    return out
