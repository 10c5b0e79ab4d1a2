"""Reference 000's x8 rows beside the estimator for N devices, and how far the
estimate moves with the workload the reference does not state.

    python scripts/reference_x8.py            # the table and the sensitivity grid

Torch-free: the estimator alone (datasheet RTX A5000, PCIe 4.0 x16 link).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_llmperf.roofline.estimator import error_pct, estimate  # noqa: E402

#: model: (x1 estimated, x1 measured, x8 estimated, x8 measured) runtime ms;
#: (x1 measured, x8 measured) memory GB; from ../shared/reference/000.
REFERENCE = {
    "opt-1.3b": ((693.77, 740.79, 1311.08, 1415.36), (5.52, 4.98)),
    "opt-6.7b": ((3275.30, 3300.85, 4241.64, 4287.28), (15.47, 16.03)),
}
DEVICE = "RTX A5000"


def row(model: str, devices: int, parallel: str, prompt: int, new: int, batch: int = 1):
    return estimate(model, mode="generate", batch=batch, seq_len=prompt, gen_len=new,
                    dtype="fp16", device=DEVICE, devices=devices, parallel=parallel)  # fmt: skip


def main() -> int:
    print("Assumed workload: batch 1, prompt 128, 200 new tokens, fp16 (generate)\n")
    print(f"{'model':9} {'devices':>7} {'par':>3} {'est ms':>9} {'ref est':>9} {'ref meas':>9} "
          f"{'err %':>7} {'mem/dev':>8} {'mem all':>8} {'ref mem':>8} {'err %':>7}")  # fmt: skip
    for model, ((e1, m1, e8, m8), (mem1, mem8)) in REFERENCE.items():
        for devices, parallel, ref_e, ref_m, ref_mem in (
            (1, "tp", e1, m1, mem1),
            (8, "tp", e8, m8, mem8),
            (8, "pp", e8, m8, mem8),
        ):
            est = row(model, devices, parallel, 128, 200)
            total = est.memory_gb * devices
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
            est = estimate(model, mode="generate", batch=1, seq_len=128, gen_len=200,
                           dtype="fp16", device=DEVICE, devices=8, parallel="tp",
                           link_latency_s=lat)  # fmt: skip
            cells.append(f"{lat * 1e6:.0f} us: {est.runtime_ms:.0f}")
        print(f"  {model}: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
