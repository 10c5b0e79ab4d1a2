"""Reference 003's quantization modes mapped onto torchao (``quantize_`` + configs).

Mode names are the ones in the reference file (torchao v0.6's generate.py):

=============  ============================================================
mode           torchao >= 0.16
=============  ============================================================
none / bf16    no quantization, bfloat16 weights
fp32           no quantization, float32 weights
int8wo         ``Int8WeightOnlyConfig()``
int8dq         ``Int8DynamicActivationInt8WeightConfig()``
int4wo-64      ``Int4WeightOnlyConfig(group_size=64)``: CUDA only. Its default
               "plain" packing needs the ``mslk`` kernel package; without it
               the "tile_packed_to_4d" packing (torch's tinygemm kernel, what
               v0.6's int4wo-64 ran) is used
float8wo       ``Float8WeightOnlyConfig()`` (not in the file; available now)
uintx-4-64     ``IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(64))``
uintx-2-8      ``IntxWeightOnlyConfig(weight_dtype=torch.int2, granularity=PerGroup(8))``
fp6            removed in torchao 0.16 (skip)
autoquant      removed in torchao 0.17 (skip)
sparse-marlin  CUDA only, removed by torchao 0.16 (skip)
=============  ============================================================

Which layers: every ``nn.Linear`` of the model, i.e. the attention and
feed-forward projections of all blocks *and* the output projection, as
torchao's benchmark did (``quantize_``'s default filter; its int8wo model size
13.21 -> 6.62 GB only adds up with the output layer quantized). The token
embedding is not a Linear and stays in the model dtype; it is excluded from
``model_size`` anyway.
"""

from __future__ import annotations

import functools
from typing import Any

from ..extras import missing

MODES = (
    "bf16",
    "fp32",
    "int8wo",
    "int8dq",
    "int4wo-64",
    "float8wo",
    "uintx-4-64",
    "uintx-2-8",
    "fp6",
    "autoquant",
    "sparse-marlin",
)

#: Modes that only set the dtype.
DTYPE_MODES = {"none": "bfloat16", "bf16": "bfloat16", "fp32": "float32"}

#: Modes the installed torchao no longer has: the reason names the version they went away in.
REMOVED = {
    "fp6": "fp6 (FPx weight-only) was removed in torchao 0.16",
    "autoquant": "autoquant was removed in torchao 0.17",
    "sparse-marlin": "sparse-marlin (2:4 sparse int4, CUDA only) was removed by torchao 0.16",
}


@functools.lru_cache(maxsize=1)
def torchao_version() -> str:
    try:
        import torchao
    except ImportError:
        return "not installed"
    return getattr(torchao, "__version__", "unknown")


def mode_dtype(mode: str) -> Any:
    """The model dtype for a mode: float32 for fp32, bfloat16 for everything else."""
    import torch

    return torch.float32 if mode == "fp32" else torch.bfloat16


def make_config(mode: str) -> Any:
    """The torchao config for a quantizing mode (None for dtype-only modes)."""
    if mode in DTYPE_MODES:
        return None
    if mode in REMOVED:
        raise ValueError(f"{REMOVED[mode]} (installed torchao {torchao_version()})")
    import torch

    why = missing("torchao", f"quantization mode {mode!r}")
    if why:
        raise ImportError(why)
    from torchao.quantization import (
        Float8WeightOnlyConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerGroup

    if mode == "int8wo":
        return Int8WeightOnlyConfig()
    if mode == "int8dq":
        return Int8DynamicActivationInt8WeightConfig()
    if mode.startswith("int4wo-"):
        packing = "plain" if _has_int4_kernels() else "tile_packed_to_4d"
        return Int4WeightOnlyConfig(group_size=int(mode.split("-")[1]), int4_packing_format=packing)
    if mode == "float8wo":
        return Float8WeightOnlyConfig()
    if mode.startswith("uintx-"):
        _, bits, group = mode.split("-")
        dtype = {1: torch.int1, 2: torch.int2, 3: torch.int3, 4: torch.int4}[int(bits)]
        return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=PerGroup(int(group)))
    raise ValueError(f"unknown quantization mode {mode!r}; known: {', '.join(MODES)}")


def _has_fp8(device: Any) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 9)
    return device.type == "cpu"


def _has_int4_kernels() -> bool:
    """Int4WeightOnlyConfig's default (plain) packing needs mslk in torchao 0.18."""
    import importlib.util

    return importlib.util.find_spec("mslk") is not None


def unavailable_reason(mode: str, device: Any) -> str | None:
    """Why ``mode`` cannot run on ``device`` with the installed torchao (None if it can)."""
    import torch

    device = torch.device(device)
    where = f"on {device.type}"
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    ao = f"torchao {torchao_version()}"
    if mode in DTYPE_MODES:
        return None
    if mode in REMOVED:
        return f"{REMOVED[mode]}; installed: {ao}"
    if mode not in MODES:
        return f"unknown quantization mode {mode!r}"
    why = missing("torchao", mode)
    if why:
        return why
    if mode.startswith("int4wo") and device.type != "cuda":
        return (
            f"{mode} (Int4WeightOnlyConfig) has no kernel {where} in {ao}: its packings "
            "need CUDA (tinygemm) or the mslk package (CUDA)"
        )
    if mode == "float8wo" and not _has_fp8(device):
        return f"float8wo needs float8 support (CUDA compute capability >= 8.9) {where}, {ao}"
    if device.type not in ("cpu", "cuda"):
        return f"{mode} is only tested on cpu and cuda in this suite, not {where} ({ao})"
    return None


def quantize(model: Any, mode: str) -> Any:
    """Convert ``model`` (in place) to ``mode``'s dtype and quantization; returns it.

    Quantizes every ``nn.Linear`` (blocks and output projection, see module doc).
    """
    import torch

    reason = unavailable_reason(mode, next(model.parameters()).device)
    if reason is not None:
        raise RuntimeError(reason)
    dtype = mode_dtype(mode)
    if next(model.parameters()).dtype != dtype:
        model.to(dtype)
    config = make_config(mode)
    if config is not None:
        from torchao.quantization import quantize_

        quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    return model
