"""Reference 000's x8 rows beside the estimator for N devices, and how far the
estimate moves with the workload the reference does not state.

    python scripts/evidence/reference_x8.py            # the table and the sensitivity grid
    python scripts/evidence/reference_x8.py --quick    # the same (it takes a second): for CI

Exits 1 when an estimate is not a positive finite number.

Torch-free: the estimator alone (datasheet RTX A5000, PCIe 4.0 x16 link).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "benchmarks")]

from reference_report import REFERENCE_WORKLOAD, REFERENCE_X8  # noqa: E402

from pytest_llmperf.roofline.estimator import error_pct, estimate  # noqa: E402

#: model: x1 runtime estimated / measured ms and memory measured GB, from
#: ../shared/reference/000 (the x8 figures are the report's, ``REFERENCE_X8``).
REFERENCE_X1 = {"opt-1.3b": (693.77, 740.79, 5.52), "opt-6.7b": (3275.30, 3300.85, 15.47)}
REFERENCE = {
    model: ((*REFERENCE_X1[model][:2], e8, m8), (REFERENCE_X1[model][2], mem8))
    for model, e8, m8, mem8 in REFERENCE_X8
}
DEVICE = "RTX A5000"


def row(model: str, devices: int, parallel: str, prompt: int, new: int, batch: int = 1):
    """The report's assumed workload with another prompt, new-token count or batch."""
    workload = {**REFERENCE_WORKLOAD, "batch": batch, "seq_len": prompt, "gen_len": new}
    return estimate(model, device=DEVICE, devices=devices, parallel=parallel, **workload)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the same run: it is quick already")
    ap.parse_args()
    bad = []
    print(f"Assumed workload (reference_report.REFERENCE_WORKLOAD): {REFERENCE_WORKLOAD}\n")
    print(f"{'model':9} {'devices':>7} {'par':>3} {'est ms':>9} {'ref est':>9} {'ref meas':>9} "
          f"{'err %':>7} {'mem/dev':>8} {'mem all':>8} {'ref mem':>8} {'err %':>7}")  # fmt: skip
    for model, ((e1, m1, e8, m8), (mem1, mem8)) in REFERENCE.items():
        for devices, parallel, ref_e, ref_m, ref_mem in (
            (1, "tp", e1, m1, mem1),
            (8, "tp", e8, m8, mem8),
            (8, "pp", e8, m8, mem8),
        ):
            w = REFERENCE_WORKLOAD
            est = row(model, devices, parallel, w["seq_len"], w["gen_len"], w["batch"])
            total = est.memory_gb * devices
            if not all(math.isfinite(x) and x > 0 for x in (est.runtime_ms, total)):
                bad.append(f"{model} x{devices} {parallel}: {est.runtime_ms} ms, {total} GB")
            print(f"{model:9} {devices:7} {parallel:>3} {est.runtime_ms:9.1f} {ref_e:9.1f} "
                  f"{ref_m:9.1f} {error_pct(ref_m, est.runtime_ms):7.1f} {est.memory_gb:8.2f} "
                  f"{total:8.2f} {ref_mem:8.2f} {error_pct(ref_mem, total):7.1f}")  # fmt: skip
    print("\nSensitivity: x8 tp runtime ms (x1 in brackets) by prompt x new tokens, batch 1")
    for model in REFERENCE:
        print(f"\n{model}: " + "".join(f"{'new ' + str(n):>22}" for n in (100, 200, 400)))
        for prompt in (32, 128, 512):
            cells = []
            for new in (100, 200, 400):
                x8 = row(model, 8, "tp", prompt, new).runtime_ms
                x1 = row(model, 1, "tp", prompt, new).runtime_ms
                cells.append(f"{x8:10.0f} [{x1:8.0f}]")
            print(f"  prompt {prompt:4}  " + "  ".join(cells))
    print("\nLatency per ring step (PCIe assumption 10 us): x8 tp runtime ms")
    for model in REFERENCE:
        cells = []
        for lat in (5e-6, 10e-6, 20e-6):
            est = estimate(model, device=DEVICE, devices=8, parallel="tp",
                           link_latency_s=lat, **REFERENCE_WORKLOAD)  # fmt: skip
            cells.append(f"{lat * 1e6:.0f} us: {est.runtime_ms:.0f}")
        print(f"  {model}: " + ", ".join(cells))
    for line in bad:
        print("not a positive finite estimate:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
