"""The probes' samples and A/A ratios turned into each gate's minimum detectable change."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import median

from ..baselines import run_spread
from ..judge.detectable import (
    paired_detectable,
    paired_shortfall,
    relative_spread,
    stored_detectable,
    stored_shortfall,
    too_few,
)


def between_drift(medians: Sequence[float]) -> float:
    """Run-to-run drift as the stored gate uses it for pooled runs (``baselines.run_spread``)."""
    return run_spread({"runs": [{"samples": [m]} for m in medians]})


def noise_summary(process_samples: Sequence[Sequence[float]], ratios: Sequence[float]) -> dict:
    """Each gate's minimum detectable change from the probes' samples and the A/A ratios.

    Stored gate: this run's samples against another fresh process's (its baseline),
    floored by the drift between process medians. Paired gate: the sign-test MDC of
    the ratios, floored by their offset from 1 (identical code, different process:
    a compare gate would report that offset as a change). Where too few processes,
    rounds or pairs were measured to judge anything, the detectable change is None and
    ``*_shortfall`` says so in the words the per-test notes use (``detectable.too_few``):
    a number from 3 pairs (``>= 5826.3%``) read as a measurement.
    """
    runs = [list(s) for s in process_samples if len(s) > 0]
    medians = [median(s) for s in runs]
    drift = between_drift(medians) if len(medians) >= 2 else None
    stored_mdcs = [
        stored_detectable(cur, base, drift or 0.0)
        for base, cur in zip(runs, runs[1:], strict=False)
    ]
    stored_known = [m for m in stored_mdcs if m is not None]
    stored = median(stored_known) if stored_known and drift is not None else None
    stored_short = ""
    if runs and len(runs) < 2:
        stored_short = too_few(len(runs), 2, "processes")
    elif runs and not stored_known:
        stored_short = stored_shortfall(min(runs, key=len))
    good = [r for r in ratios if r > 0 and math.isfinite(r)]
    paired_short = paired_shortfall(good) if good else ""
    paired_raw = None if paired_short else paired_detectable(good)
    ratio_mid = median(good) if good else None
    offset = abs(ratio_mid - 1.0) if ratio_mid is not None else None
    paired = max(paired_raw, offset) if paired_raw is not None and offset is not None else None
    return {
        "process_medians_s": medians,
        "rounds_per_process": [len(s) for s in runs],
        "within_process_spread": median(relative_spread(s) for s in runs) if runs else None,
        "between_process_drift": drift,
        "pairs": len(good),
        "ratio_median": ratio_mid,
        "ratio_spread": relative_spread(good) if good else None,
        "stored_detectable": stored,
        "stored_shortfall": stored_short,
        "paired_detectable_ratios": paired_raw,
        "paired_offset": offset,
        "paired_detectable": paired,
        "paired_shortfall": paired_short,
    }
