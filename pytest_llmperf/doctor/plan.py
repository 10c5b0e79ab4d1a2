"""What doctor measures: the reference workload and how long it times it (full or ``--quick``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..judge.decision import MIN_PAIRS

#: Reference workload: TransformerLM config, context length, batch (5-10 ms on 2 CPU cores).
WORKLOAD = ("tiny-large", 128, 2)


@dataclass(frozen=True)
class Plan:
    """How much doctor measures: the default run takes about a minute, ``--quick`` seconds."""

    processes: int  # fresh processes, each timed once (the first two also pair up)
    warmup_s: float  # warm-up before a process's timed window
    window_s: float  # timed window per process (the plugin's default max_time is 1 s)
    pairs: int  # A/A pairs of batches
    pair_rounds: int  # rounds per batch of a pair
    pairs_budget_s: float  # stop pairing after this long (a loaded machine is slow) ...
    min_pairs: int  # ... but not before this many pairs
    energy_changes: int  # energy counter updates to wait for
    energy_timeout_s: float
    busy_sample_s: float  # /proc/stat window before the probes start
    hard_limit_s: float  # probes still running after this long are killed


FULL = Plan(processes=8, warmup_s=0.5, window_s=1.0, pairs=150, pair_rounds=6,
            pairs_budget_s=20.0, min_pairs=8, energy_changes=6, energy_timeout_s=3.0,
            busy_sample_s=1.0, hard_limit_s=300.0)  # fmt: skip
QUICK = Plan(processes=2, warmup_s=0.1, window_s=0.3, pairs=12, pair_rounds=3,
             pairs_budget_s=1.5, min_pairs=MIN_PAIRS, energy_changes=3, energy_timeout_s=1.0,
             busy_sample_s=0.2, hard_limit_s=90.0)  # fmt: skip
