"""The token table: one row per generation measured (``llmperf.generation``), its TTFT,
TPOT, ITL percentiles, throughputs and tokens, each beside its baseline."""

from __future__ import annotations

from .. import units
from ..results import Metric, Status, TestResult
from .result_reads import short_name
from .table_model import Table, make_table, with_baselines

#: The token table's columns: (metric name after the measurement's prefix, heading), the
#: metrics ``measure.generation.generation_metrics`` records; prefill only when some
#: generation gave its prompt length.
TOKEN_COLUMNS = (
    ("ttft", "TTFT"),
    ("tpot", "TPOT"),
    ("itl_p50", "ITL p50"),
    ("itl_p90", "ITL p90"),
    ("itl_p99", "ITL p99"),
    ("itl_tail", "p99/p50"),
    ("itl_max", "ITL max"),
    ("prefill_throughput", "prefill"),
    ("decode_throughput", "decode"),
    ("throughput", "throughput"),
    ("e2e_latency", "end to end"),
    ("output_tokens", "tokens"),
)
_OPTIONAL_TOKEN_COLUMNS = ("prefill_throughput",)


def token_metrics(result: TestResult) -> dict[str, dict[str, Metric]]:
    """Per generation measured (``result.tokens``): its token metrics by column key."""
    out = {}
    for name in result.tokens:
        prefix = f"{name}." if name else ""
        found = {
            key: result.metrics[prefix + key]
            for key, _ in TOKEN_COLUMNS
            if prefix + key in result.metrics
        }
        if found:
            out[name] = found
    return out


def token_metric_names(result: TestResult) -> set[str]:
    """The full names of the metrics :func:`token_table` shows for ``result``."""
    return {
        (f"{name}." if name else "") + key
        for name, found in token_metrics(result).items()
        for key in found
    }


def token_table(results: list[TestResult]) -> Table | None:
    """One row per generation measured (``llmperf.generation``, each side of a
    generation A/B): TTFT, TPOT, ITL percentiles, throughputs, tokens. None without any.

    Rows per measurement rather than columns per metric name: a group's results table
    would otherwise grow eleven columns per generation (``s.reference.itl_p99``, ...).
    A project's report section can add it beside its own tables.
    """
    rows = [
        (r, name, found, r.tokens.get(name) or {})
        for r in results
        for name, found in token_metrics(r).items()
    ]
    if not rows:
        return None
    shown = [
        (key, title)
        for key, title in TOKEN_COLUMNS
        if key not in _OPTIONAL_TOKEN_COLUMNS or any(key in f for _, _, f, _ in rows)
    ]
    with_base = {
        key
        for key, _ in shown
        for r, _, found, _ in rows
        if key in found and found[key].name in r.baseline_values
    }
    table_rows = []
    for r, name, found, record in rows:
        gens = record.get("generations") if isinstance(record, dict) else None
        cells = [short_name(r.nodeid), name or "-", units.number(gens)]
        oom = r.status == Status.OOM
        for key, _ in shown:
            m = found.get(key)
            if key in with_base:
                base = r.baseline_values.get(m.name) if m is not None else None
                cells.append("-" if base is None else units.quantity(base, m.unit))
            cells.append("-" if m is None or oom else units.quantity(m.value, m.unit))
        table_rows.append(cells)
    titles = [title for _, title in shown]
    columns = ["test", "measurement", "generations"]
    columns += with_baselines(titles, [title for key, title in shown if key in with_base])
    note = (
        "Per generation: TTFT from the call to the first token, TPOT the mean interval "
        "after it, ITL percentiles over every interval of every generation, tokens per "
        "generation (median, every sequence of the batch); throughputs in tokens/s; "
        "a baseline beside each metric that has one."
    )
    return make_table("Token latency", columns, table_rows, note)
