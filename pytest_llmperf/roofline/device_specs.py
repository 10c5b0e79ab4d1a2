"""Datasheet peaks of common accelerators, looked up by the name torch reports.

Every figure is the vendor's *dense* peak (no 2:4 sparsity) for the matrix
(tensor-core) units; the GeForce cards are listed with FP32 accumulation, which
is what PyTorch's matmuls use. Bandwidth is in bytes/s, memory in bytes, power is
the board power (TDP/TGP) in watts. These numbers are upper bounds: real kernels
reach 60-90 % of them, which is why ``calibration.py`` can also measure them.

Each device also names its ``link`` to its peers (``interconnect.Link``): the
NVLink / Infinity Fabric of the SXM and OAM parts, PCIe (generation x 16 lanes)
for the rest. It is what the estimator prices collectives with when a workload
spans several devices of the kind (``estimate(..., devices=8)``).

No torch import here: the table is plain data, usable from the CLI and reports.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from .interconnect import Link, nvlink, pcie

T = 1e12
GB_S = 1e9
GIB = 2**30

#: Canonical dtype keys and the spellings accepted for them.
DTYPE_ALIASES: dict[str, str] = {
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "f32": "fp32",
    "tf32": "tf32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "f16": "fp16",
    "int8": "int8",
    "i8": "int8",
    "fp8": "fp8",
    "float8": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
}

#: Bytes per element of each canonical dtype.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "int8": 1,
    "fp8": 1,
}


def canonical_dtype(dtype: object) -> str:
    """``torch.bfloat16``, ``"bfloat16"``, ``"bf16"`` -> ``"bf16"`` (no torch import needed)."""
    text = str(dtype).lower().removeprefix("torch.")
    try:
        return DTYPE_ALIASES[text]
    except KeyError:
        known = ", ".join(sorted(set(DTYPE_ALIASES.values())))
        raise ValueError(f"unknown dtype {dtype!r}; known dtypes: {known}") from None


@dataclass(frozen=True)
class Peaks:
    """Peak FLOP/s (for one dtype) and bytes/s of a device, and where they come from:
    the roofline's two slopes.

    ``source`` is ``"datasheet: <name>"`` or ``"calibrated"``; ``power_w`` is the
    board power from the datasheet (None when unknown, e.g. a calibrated CPU);
    ``link`` the device's interconnect to its peers (None when unknown).
    """

    flops_per_s: float
    bytes_per_s: float
    source: str
    power_w: float | None = None
    device_name: str = ""
    link: Link | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator's datasheet: dense peak FLOP/s per dtype, bandwidth, memory, power,
    and the link it reaches its peers over (what a multi-device estimate prices)."""

    name: str
    flops: dict[str, float]
    bandwidth: float  # bytes/s
    memory: int  # bytes
    power: float  # W, board power
    link: Link  # to its peers in a multi-device box
    #: Each alias is a set of tokens that must all appear in the queried name;
    #: the alias with the most tokens wins (so "H100 PCIe" beats plain "H100").
    aliases: tuple[str, ...] = field(default=())

    def peak_flops(self, dtype: object = "fp32") -> float:
        """Dense peak FLOP/s for ``dtype``; a dtype the matrix units lack falls back sensibly.

        fp8 without fp8 units runs as bf16/fp16; bf16 on pre-Ampere parts as fp32
        (that is how PyTorch executes it, slowly); tf32 without tf32 units is fp32.
        """
        key = canonical_dtype(dtype)
        for candidate in _FALLBACK[key]:
            if candidate in self.flops:
                return self.flops[candidate]
        return self.flops["fp32"]

    def peaks(self, dtype: object = "fp32", device_name: str = "") -> Peaks:
        """The datasheet's roofline for ``dtype``; ``device_name`` defaults to the spec's name."""
        return Peaks(
            self.peak_flops(dtype),
            self.bandwidth,
            f"datasheet: {self.name}",
            self.power,
            device_name or self.name,
            self.link,
        )


_FALLBACK = {
    "fp32": ("fp32",),
    "tf32": ("tf32", "fp32"),
    "bf16": ("bf16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "int8": ("int8", "fp16", "bf16", "fp32"),
    "fp8": ("fp8", "bf16", "fp16", "fp32"),
}


def _f(
    fp32: float,
    tf32: float | None = None,
    bf16: float | None = None,
    fp16: float | None = None,
    int8: float | None = None,
    fp8: float | None = None,
) -> dict[str, float]:
    """Dense peaks in TFLOP/s per dtype -> FLOP/s, dtypes the part lacks left out."""
    vals = {"fp32": fp32, "tf32": tf32, "bf16": bf16, "fp16": fp16, "int8": int8, "fp8": fp8}
    return {k: v * T for k, v in vals.items() if v is not None}


#: The links of the table. PCIe is per the slot each card sits in (x16 of its
#: generation); NVLink / Infinity Fabric is the vendor's total of both directions.
_PCIE3, _PCIE4, _PCIE5 = pcie(3, 16), pcie(4, 16), pcie(5, 16)
_NVLINK2 = nvlink("NVLink 2 (6 links)", 300)
_NVLINK3 = nvlink("NVLink 3 (12 links)", 600)
_NVLINK4 = nvlink("NVLink 4 (18 links)", 900)
_NVLINK4_BRIDGE = nvlink("NVLink 4 bridge", 600)
_NVLINK5 = nvlink("NVLink 5 (18 links)", 1800)
_IF_MI250X = nvlink("Infinity Fabric (8 links)", 800)
_IF_MI300 = nvlink("Infinity Fabric (7 links)", 896)

# fmt: off
SPECS: tuple[DeviceSpec, ...] = (
    # NVIDIA data center (SXM unless named otherwise)
    DeviceSpec("A100 40GB", _f(19.5, 156, 312, 312, 624), 1555 * GB_S, 40 * GIB, 400,
               _NVLINK3, ("a100", "a100 40gb")),
    DeviceSpec("A100 80GB", _f(19.5, 156, 312, 312, 624), 2039 * GB_S, 80 * GIB, 400,
               _NVLINK3, ("a100 80gb", "a100 sxm4 80gb")),
    DeviceSpec("A100 80GB PCIe", _f(19.5, 156, 312, 312, 624), 1935 * GB_S, 80 * GIB, 300,
               _PCIE4, ("a100 80gb pcie",)),
    DeviceSpec("A10", _f(31.2, 62.5, 125, 125, 250), 600 * GB_S, 24 * GIB, 150, _PCIE4,
               ("a10",)),
    DeviceSpec("H100 SXM", _f(66.9, 494.7, 989.4, 989.4, 1978.9, 1978.9), 3350 * GB_S,
               80 * GIB, 700, _NVLINK4, ("h100", "h100 sxm", "h100 sxm5", "h100 hbm3")),
    DeviceSpec("H100 PCIe", _f(51.2, 378, 756, 756, 1513, 1513), 2000 * GB_S, 80 * GIB, 350,
               _PCIE5, ("h100 pcie",)),
    DeviceSpec("H100 NVL", _f(60, 417.5, 835, 835, 1670, 1670), 3900 * GB_S, 94 * GIB, 400,
               _NVLINK4_BRIDGE, ("h100 nvl",)),
    DeviceSpec("H200", _f(66.9, 494.7, 989.4, 989.4, 1978.9, 1978.9), 4800 * GB_S,
               141 * GIB, 700, _NVLINK4, ("h200", "h200 sxm")),
    DeviceSpec("B200", _f(75, 1100, 2250, 2250, 4500, 4500), 8000 * GB_S, 180 * GIB, 1000,
               _NVLINK5, ("b200",)),
    DeviceSpec("L4", _f(30.3, 60, 121, 121, 242, 242), 300 * GB_S, 24 * GIB, 72, _PCIE4,
               ("l4",)),
    DeviceSpec("L40", _f(90.5, 90.5, 181, 181, 362, 362), 864 * GB_S, 48 * GIB, 300, _PCIE4,
               ("l40",)),
    DeviceSpec("L40S", _f(91.6, 183, 362, 362, 733, 733), 864 * GB_S, 48 * GIB, 350, _PCIE4,
               ("l40s",)),
    DeviceSpec("V100", _f(15.7, fp16=125), 900 * GB_S, 32 * GIB, 300, _NVLINK2,
               ("v100", "v100 sxm2")),
    DeviceSpec("V100 PCIe", _f(14, fp16=112), 900 * GB_S, 32 * GIB, 250, _PCIE3,
               ("v100 pcie",)),
    DeviceSpec("T4", _f(8.1, fp16=65, int8=130), 320 * GB_S, 16 * GIB, 70, _PCIE3, ("t4",)),
    # NVIDIA workstation (Ampere RTX: tensor throughput at FP32 accumulate is not halved).
    # The A5000 / A6000 NVLink bridge joins two cards only: an 8-GPU box talks over PCIe.
    DeviceSpec("RTX A5000", _f(27.8, 55.6, 111.1, 111.1, 222.2), 768 * GB_S, 24 * GIB, 230,
               _PCIE4, ("a5000", "rtx a5000")),
    DeviceSpec("RTX A6000", _f(38.7, 77.4, 154.8, 154.8, 309.7), 768 * GB_S, 48 * GIB, 300,
               _PCIE4, ("a6000", "rtx a6000")),
    DeviceSpec("RTX 6000 Ada", _f(91.1, 182.1, 364.2, 364.2, 728.5, 728.5), 960 * GB_S,
               48 * GIB, 300, _PCIE4, ("6000 ada", "rtx 6000 ada")),
    # NVIDIA GeForce (tensor FLOP/s with FP32 accumulate, as PyTorch uses; no NVLink)
    DeviceSpec("RTX 3090", _f(35.6, 35.6, 71, 71, 284), 936 * GB_S, 24 * GIB, 350, _PCIE4,
               ("3090",)),
    DeviceSpec("RTX 4090", _f(82.6, 82.6, 165.2, 165.2, 660.6, 330.3), 1008 * GB_S, 24 * GIB,
               450, _PCIE4, ("4090",)),
    DeviceSpec("RTX 5090", _f(104.8, 104.8, 209.5, 209.5, 838, 419), 1792 * GB_S, 32 * GIB,
               575, _PCIE5, ("5090",)),
    # AMD Instinct (matrix-core dense peaks; Infinity Fabric links between the GPUs)
    DeviceSpec("MI250X", _f(95.7, bf16=383, fp16=383, int8=383), 3277 * GB_S, 128 * GIB, 560,
               _IF_MI250X, ("mi250x", "mi250")),
    DeviceSpec("MI300X", _f(163.4, 653.7, 1307.4, 1307.4, 2614.9, 2614.9), 5300 * GB_S,
               192 * GIB, 750, _IF_MI300, ("mi300x",)),
    DeviceSpec("MI325X", _f(163.4, 653.7, 1307.4, 1307.4, 2614.9, 2614.9), 6000 * GB_S,
               256 * GIB, 1000, _IF_MI300, ("mi325x",)),
)
# fmt: on

_NOISE = {"nvidia", "geforce", "tesla", "amd", "instinct", "radeon", "gpu", "graphics"}


def _tokens(text: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", text.lower()) if t and t not in _NOISE}


def known_devices() -> list[str]:
    """The datasheet names, in table order (the CLI's ``list``)."""
    return [s.name for s in SPECS]


def lookup(name: str) -> DeviceSpec:
    """The spec of a device named as torch reports it, or as a user types it.

    ``"NVIDIA H100 80GB HBM3"`` -> H100 SXM, ``"NVIDIA RTX A5000"`` and ``"a5000"``
    -> RTX A5000, ``"NVIDIA A100-SXM4-80GB"`` -> A100 80GB. Matching is on
    whole tokens (so "L40" never matches an "L40S"), the most specific alias
    winning. An unknown name raises ``ValueError`` listing the known devices.
    """
    query = _tokens(name)
    best: tuple[int, int] | None = None
    found: DeviceSpec | None = None
    for order, spec in enumerate(SPECS):
        for alias in (spec.name, *spec.aliases):
            need = _tokens(alias)
            if need and need <= query:
                score = (len(need), -order)
                if best is None or score > best:
                    best, found = score, spec
    if found is None:
        # Last resort: the same characters ignoring spaces ("rtxa5000").
        squashed = re.sub(r"[^a-z0-9]", "", name.lower())
        for spec in SPECS:
            for alias in (spec.name, *spec.aliases):
                if re.sub(r"[^a-z0-9]", "", alias.lower()) == squashed:
                    return spec
        close = difflib.get_close_matches(
            name.lower(), [s.name.lower() for s in SPECS], n=3, cutoff=0.5
        )
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"unknown device {name!r}{hint}; known devices: {', '.join(known_devices())}"
        )
    return found
