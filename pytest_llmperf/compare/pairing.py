"""The pairs of ``--llmperf-compare``: batches timed side by side, and what they decide.

Each pair times one batch of rounds on each tree, back to back, in an order drawn
at random per pair (A B, B A, ...), and keeps candidate / reference of *that*
pair's batch medians: whatever the machine does moves both batches of a pair
alike, and cancels in their ratio. Pairs go on until the interval of the median
ratio clears the tolerance (``paired_settled``), or the time budget (4 x
``max_time``) or ``MAX_PAIRS`` is spent, never before ``MIN_PAIRS``: fewer pairs
cannot decide anything.

The loop sees each tree as a ``Side`` (warm up, time one round, time a batch):
``WorkerSide`` is a worker process answering ``Remote.measure``; a test fakes a
side with a plain object whose batches take the times it chooses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random
from statistics import median
from typing import Any, Protocol

from ..judge.decision import MIN_PAIRS, Decision, decide_paired, paired_settled
from ..judge.verdict import tolerance_of
from ..measure.generation import RATES
from ..metrics import Kind
from ..results import Metric, TestResult

#: The cap on pairs; a batch's share of max_time.
MAX_PAIRS = 60
BATCH_SHARE = 1 / 20


@dataclass
class Batch:
    """One side's batch of a pair: its rounds' values, and a generation's per-round
    statistics (TTFT, TPOT, ITL) by name."""

    values: list[float]
    series: dict[str, list[float]] = field(default_factory=dict)


class Side(Protocol):
    """One tree as the pairs drive it. A side that cannot answer (its measurement raised,
    its worker died) says None (False), which ends the pairs."""

    def warmup(self) -> bool: ...

    def probe(self) -> float | None:
        """Seconds one round takes now, not kept."""
        ...

    def batch(self, n: int) -> Batch | None: ...


class WorkerSide:
    """A worker process as a ``Side``: each call one command and its reply. ``failed`` once
    it answered anything but "ok": that worker is not told to end the measurement."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.failed = False

    def _ask(self, **cmd: Any) -> dict[str, Any] | None:
        self.worker.send(**cmd)
        reply = self.worker.recv()
        if reply["event"] != "ok":
            self.failed = True
            return None
        return reply

    def warmup(self) -> bool:
        return self._ask(cmd="warmup") is not None

    def probe(self) -> float | None:
        reply = self._ask(cmd="rounds", n=1, keep=False)
        return None if reply is None else float(reply["seconds"])

    def batch(self, n: int) -> Batch | None:
        reply = self._ask(cmd="rounds", n=n)
        return None if reply is None else Batch(reply["values"], reply.get("series") or {})


@dataclass
class Pairs:
    """What one measurement's pairs gave: candidate / reference of each pair's batch
    medians, and the same ratio of each per-round statistic both sides reported."""

    ratios: list[float] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)

    def add(self, ref: Batch, cand: Batch) -> None:
        """One pair: its candidate batch over its own reference batch."""
        r, c = median(ref.values), median(cand.values)
        self.ratios.append(c / r if r > 0 else math.inf)
        self._add_series(ref.series, cand.series)

    def _add_series(self, ref: dict[str, list[float]], cand: dict[str, list[float]]) -> None:
        for key in sorted(set(ref) & set(cand)):
            r, c = median(ref[key]), median(cand[key])
            if r > 0:
                self.series.setdefault(key, []).append(c / r)


def drive(
    ref: Side,
    cand: Side,
    names: list[str],
    higher_is_better: bool,
    policy: Any,
    rng: Random,
    clock: Callable[[], float] = time.perf_counter,
) -> Pairs:
    """Warm-up of each side in turn, one round each to size the batches, then pairs until
    the decision is settled (the module docstring). A side that fails ends the pairs."""
    kind = Kind.RATIO if higher_is_better else Kind.TIME
    tolerance = policy.tolerance_for(names[-1], kind)
    pairs = Pairs()
    order = [ref, cand]
    rng.shuffle(order)
    if not all(side.warmup() for side in order):
        return pairs
    slowest = 1e-9
    for side in order:  # one round each, not kept: how long a round takes now
        seconds = side.probe()
        if seconds is None:
            return pairs
        slowest = max(slowest, seconds)
    n = max(1, min(1000, round(policy.max_time * BATCH_SHARE / slowest)))
    budget = 4 * policy.max_time
    start = clock()
    while True:
        rng.shuffle(order)
        batches = {}
        for side in order:
            batch = side.batch(n)
            if batch is None:
                return pairs
            batches[side is cand] = batch
        pairs.add(batches[False], batches[True])
        spent = len(pairs.ratios) >= MAX_PAIRS or clock() - start > budget
        if spent and len(pairs.ratios) >= MIN_PAIRS:
            break
        if paired_settled(pairs.ratios, tolerance, higher_is_better):
            break
    return pairs


def paired_decision(
    metric: Metric, reference: Metric, ratios: list[float], hib: bool, label: str
) -> Decision:
    """The paired decision of one metric from ratios of values of direction ``hib``
    (seconds, or an A/B speedup); a throughput is their inverse."""
    oriented = [1 / r if metric.higher_is_better != hib else r for r in ratios if r > 0]
    return decide_paired(
        metric.name,
        ratios=oriented,
        reference=reference.value,
        current=metric.value,
        tolerance=tolerance_of(metric),
        higher_is_better=bool(metric.higher_is_better),
        unit=metric.unit,
        reference_name=label,
    )


def paired_decisions(
    result: TestResult,
    reference: TestResult,
    pairs: dict[tuple[str, ...], tuple[list[float], bool]],
    series: dict[str, list[float]],
    label: str,
) -> dict[str, Decision]:
    """By metric name, the paired decisions of the candidate's timed metrics: per
    measurement, its first gated metric (by the names it reported, in order); per
    per-round statistic of a generation, that statistic and its rate."""
    decided: dict[str, Decision] = {}

    def pair(name: str, ratios: list[float], hib: bool) -> None:
        metric = result.metrics.get(name)
        if metric is None or not metric.gated or name not in reference.metrics or not ratios:
            return
        decided[name] = paired_decision(metric, reference.metrics[name], ratios, hib, label)

    for names, (ratios, hib) in pairs.items():
        name = next((n for n in names if n in result.metrics and result.metrics[n].gated), None)
        if name is not None:
            pair(name, ratios, hib)
    for name, ratios in series.items():
        pair(name, ratios, False)  # seconds: lower is better
        # Prefill and decode throughput are TTFT's and TPOT's inverses, pair by pair.
        prefix, _, key = name.rpartition(".")
        if key in RATES:
            pair(f"{prefix}.{RATES[key]}" if prefix else RATES[key], ratios, False)
    return decided
