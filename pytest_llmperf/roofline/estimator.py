"""Roofline estimate of runtime, memory and energy for the suite's LLM families.

For each operation of a model the estimator counts FLOPs and the bytes it must
move through device memory, and charges ``max(FLOPs / peak FLOP/s, bytes /
bandwidth)`` seconds; the runtime is the sum over operations (reference 000's
method). Memory = weights + activations + KV cache (+ gradients and AdamW state
when training). Energy = runtime x board power, as reference 000 computes it.
The shapes come from ``shapes.py`` (no model needs to be built, nor torch imported).

Counting conventions (checked against ``torch.utils.flop_counter.FlopCounterMode``):
a matmul of (m x k) by (k x n) is ``2 m k n`` FLOPs; attention is ``4 b h s_q s_k d``
for the two products, counted over the full (not causally halved) score matrix as
FlopCounterMode does; backward is twice the forward. Element-wise operations
(norms, activations, RoPE, residual adds) add their bytes and a few FLOPs per
element; they are listed separately from ``matmul_flops``. Bytes assume each
operation reads its inputs and writes its outputs once (ideally fused kernels);
eager PyTorch moves more for the element-wise parts, which is most of the
estimate's error for small models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .device_specs import DTYPE_BYTES, canonical_dtype
from .device_specs import lookup as lookup_spec
from .shapes import ModelShape, get_model

MODES = ("forward", "prefill", "train", "decode", "generate")
_MODE_ALIASES = {
    "fwd": "forward",
    "forward+backward": "train",
    "fwd+bwd": "train",
    "fwd_bwd": "train",
    "forward_backward": "train",
    "training": "train",
    "generation": "generate",
}
#: Device names that mean "measure this machine" rather than a datasheet.
_TORCH_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps", "meta")


# --------------------------------------------------------------------------- ops


@dataclass
class Op:
    """One operation: FLOPs and bytes, ``count`` times (e.g. once per layer)."""

    name: str
    kind: str  # matmul | attention | elementwise | memory | optimizer
    flops: float
    bytes: float
    count: int = 1
    mm_flops: float = 0.0  # the part FlopCounterMode counts (matmuls, attention)
    dims: tuple[int, ...] = ()  # matmul (m, k, n) for the backward
    kernels: int = 1  # eager kernel launches per repetition

    def total(
        self, peaks: Any, overhead: tuple[float, bool] = (0.0, True)
    ) -> tuple[float, float, float, str]:
        """(flops, bytes, seconds, bound) over all ``count`` repetitions.

        ``overhead`` = (seconds per kernel launch, overlapped): an accelerator
        launches asynchronously, so launches hide behind execution (max); a CPU
        executes in the launching thread, so they add.
        """
        t_c = self.flops / peaks.flops_per_s
        t_m = self.bytes / peaks.bytes_per_s
        bound = "compute" if t_c >= t_m else "memory"
        t = max(t_c, t_m)
        per_launch, overlapped = overhead
        if per_launch > 0:
            t_l = self.kernels * per_launch
            if overlapped:
                if t_l > t:
                    bound = "launch"
                t = max(t, t_l)
            else:
                t += t_l
        return self.flops * self.count, self.bytes * self.count, t * self.count, bound


def _mm(name: str, m: int, k: int, n: int, e: float, count: int = 1, bias: bool = False,
        kernels: int = 1) -> Op:  # fmt: skip
    f = 2.0 * m * k * n
    b = (m * k + k * n + m * n + (n if bias else 0)) * e
    return Op(name, "matmul", f + (m * n if bias else 0), b, count, f, (m, k, n), kernels)


def _ew(name: str, elems: float, reads: int, writes: int, flops_per: float, e: float,
        count: int = 1, extra_bytes: float = 0.0, kernels: int = 1) -> Op:  # fmt: skip
    b = (reads + writes) * elems * e + extra_bytes
    return Op(name, "elementwise", flops_per * elems, b, count, kernels=kernels)


def _forward_ops(m: ModelShape, b: int, s: int, s_k: int, e: float, *, cache: bool,
                 logits_all: bool = True) -> list[Op]:  # fmt: skip
    """Ops of one forward over ``s`` new tokens per sequence attending ``s_k`` keys."""
    d, f, v, kv, L = m.d_model, m.d_ff, m.vocab_size, m.kv_dim, m.n_layers
    T = b * s
    # Kernel counts are those of the suite's eager models (an fp32 RMSNorm is ~7
    # kernels, RoPE on q and k ~16); they only matter with a launch overhead.
    ops = [Op("embedding", "memory", 0.0, 2 * T * d * e + T * 8)]
    if m.family == "opt":
        ops.append(_ew("positions", T * d, 2, 1, 1, e, kernels=3))
    opt = m.family == "opt"
    norm_flops = 7 if opt else 4
    norm_k = 1 if opt else 7
    ops.append(
        _ew("norm", T * d, 1, 1, norm_flops, e, 2 * L, extra_bytes=2 * d * e, kernels=norm_k)
    )
    if opt:  # separate q, k, v projections with biases
        ops.append(_mm("q_proj", T, d, d, e, L, bias=True))
        ops.append(_mm("kv_proj", T, d, 2 * kv, e, L, bias=True, kernels=2))
    else:
        ops.append(_mm("qkv_proj", T, d, d + 2 * kv, e, L))
        ops.append(_ew("rope", T * (d + kv), 1, 1, 3, e, L, kernels=16))
    if cache:
        ops.append(Op("kv_cache_write", "memory", 0.0, 2 * 2 * T * kv * e, L, kernels=2))
    h, hd = m.n_heads, m.head_dim
    attn_f = 4.0 * b * h * s * s_k * hd
    softmax_f = 5.0 * b * h * s * s_k
    attn_b = (2 * T * d + 2 * b * s_k * kv) * e
    attn_k = 4 if m.kv_heads == m.n_heads else 6  # sdpa + layout copies (+ GQA repeats)
    ops.append(
        Op(
            "attention",
            "attention",
            attn_f + softmax_f,
            attn_b,
            L,
            attn_f,
            (b, h, s, s_k, hd),
            attn_k,
        )
    )
    ops.append(_mm("out_proj", T, d, d, e, L, bias=m.bias))
    ops.append(_ew("residual", T * d, 2, 1, 1, e, 2 * L))
    if opt:
        ops.append(_mm("fc1", T, d, f, e, L, bias=True))
        ops.append(_ew("relu", T * f, 1, 1, 1, e, L))
        ops.append(_mm("fc2", T, f, d, e, L, bias=True))
    else:
        ops.append(_mm("w1_w3", T, d, 2 * f, e, L, kernels=2))
        ops.append(_ew("silu_mul", T * f, 2, 1, 5, e, L, kernels=2))
        ops.append(_mm("w2", T, f, d, e, L))
    ops.append(_ew("final_norm", T * d, 1, 1, norm_flops, e, extra_bytes=2 * d * e, kernels=norm_k))
    ops.append(_mm("lm_head", T if logits_all else b, d, v, e))
    return ops


def _backward_ops(fwd: list[Op], e: float) -> list[Op]:
    """Backward of each forward op: 2x FLOPs; matmuls as the dX and dW products."""
    out = []
    for op in fwd:
        if op.kind == "matmul":
            m_, k, n = op.dims
            out.append(Op(f"{op.name}.grad_input", "matmul", 2.0 * m_ * k * n,
                          (m_ * n + n * k + m_ * k) * e, op.count, 2.0 * m_ * k * n,
                          kernels=op.kernels))  # fmt: skip
            out.append(Op(f"{op.name}.grad_weight", "matmul", 2.0 * m_ * k * n,
                          (k * m_ + m_ * n + k * n) * e, op.count, 2.0 * m_ * k * n,
                          kernels=op.kernels))  # fmt: skip
        elif op.kind == "attention":
            out.append(Op(f"{op.name}.grad", "attention", 2 * op.flops, 2 * op.bytes, op.count,
                          2 * op.mm_flops, kernels=2 * op.kernels))  # fmt: skip
        else:
            out.append(Op(f"{op.name}.grad", op.kind, 2 * op.flops, 2 * op.bytes, op.count,
                          kernels=2 * op.kernels))  # fmt: skip
    return out


# --------------------------------------------------------------------------- estimate


@dataclass
class OpCost:
    name: str
    kind: str
    count: int
    flops: float
    bytes: float
    seconds: float
    bound: str
    mm_flops: float = 0.0


def _costs(ops: list[Op], peaks: Any, overhead: tuple[float, bool] = (0.0, True)) -> list[OpCost]:
    out = []
    for op in ops:
        f_, b_, s_, bound = op.total(peaks, overhead)
        out.append(OpCost(op.name, op.kind, op.count, f_, b_, s_, bound, op.mm_flops * op.count))
    return out


@dataclass
class Estimate:
    """The estimate of one workload; times in seconds, memory in bytes, energy in J."""

    model: str
    mode: str
    batch: int
    seq_len: int
    gen_len: int
    kv_len: int
    dtype: str
    device: str
    peaks_source: str
    flops_per_s: float
    bytes_per_s: float
    power_w: float | None
    flops: float
    matmul_flops: float
    bytes: float
    runtime_s: float
    memory: dict[str, float]
    phases: dict[str, float] = field(default_factory=dict)
    ops: list[OpCost] = field(default_factory=list)

    @property
    def memory_bytes(self) -> float:
        return sum(self.memory.values())

    @property
    def runtime_ms(self) -> float:
        return self.runtime_s * 1e3

    @property
    def memory_gb(self) -> float:
        """Memory in GB of 1e9 bytes."""
        return self.memory_bytes / 1e9

    @property
    def energy_j(self) -> float | None:
        """runtime x board power (None when the power is unknown, e.g. a calibrated CPU)."""
        return None if self.power_w is None else self.runtime_s * self.power_w

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            runtime_ms=self.runtime_ms,
            energy_j=self.energy_j,
            memory_bytes=self.memory_bytes,
            memory_gb=self.memory_gb,
        )
        return d


@dataclass(frozen=True)
class _Workload:
    """One estimate's checked inputs: what the phase and memory helpers read."""

    shape: ModelShape
    mode: str
    batch: int
    seq_len: int
    gen_len: int
    kv_len: int  # tokens in the KV cache at the end (a decode step attends these + itself)
    e: float  # bytes per element of the dtype
    logits_all: bool
    optimizer: bool


def _normalize_mode(mode: str) -> str:
    key = mode.lower()
    key = _MODE_ALIASES.get(key, key)
    if key not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")
    return key


def _workload(shape: ModelShape, mode: str, dtype: str, batch: int, seq_len: int,
              gen_len: int, kv_len: int | None, logits: str, optimizer: bool) -> _Workload:  # fmt: skip
    if batch < 1 or seq_len < 1:
        raise ValueError("batch and seq_len must be >= 1")
    if mode == "generate" and gen_len < 1:
        raise ValueError("mode 'generate' needs gen_len >= 1")
    cached = {
        "prefill": seq_len,
        "decode": seq_len if kv_len is None else kv_len,
        "generate": seq_len + gen_len,
    }.get(mode, 0)
    return _Workload(shape, mode, batch, seq_len, gen_len, cached, DTYPE_BYTES[dtype],
                     logits == "all", optimizer)  # fmt: skip


def _decode_step_ops(w: _Workload, cached: int) -> list[Op]:
    """One new token per sequence attending ``cached`` tokens plus itself."""
    return _forward_ops(w.shape, w.batch, 1, cached + 1, w.e, cache=True)


def _sum_steps(steps: list[list[OpCost]]) -> list[OpCost]:
    """The costs of many decode steps summed per op (the op list of one step)."""
    total: dict[str, OpCost] = {}
    for step in steps:
        for c in step:
            acc = total.setdefault(
                c.name, replace(c, flops=0.0, bytes=0.0, seconds=0.0, mm_flops=0.0)
            )
            acc.flops += c.flops
            acc.bytes += c.bytes
            acc.seconds += c.seconds
            acc.mm_flops += c.mm_flops
    return list(total.values())


def _phase_costs(w: _Workload, peaks: Any, overhead: tuple[float, bool]) -> dict[str, list[OpCost]]:
    """The priced ops of each phase of the workload, phases in execution order."""

    def priced(ops: list[Op]) -> list[OpCost]:
        return _costs(ops, peaks, overhead)

    if w.mode == "decode":
        return {"decode": priced(_decode_step_ops(w, w.kv_len))}
    fwd = _forward_ops(w.shape, w.batch, w.seq_len, w.seq_len, w.e,
                       cache=w.mode in ("prefill", "generate"), logits_all=w.logits_all)  # fmt: skip
    if w.mode == "generate":  # the prefill yields the first new token
        steps = [priced(_decode_step_ops(w, w.seq_len + i)) for i in range(w.gen_len - 1)]
        return {"prefill": priced(fwd), "decode": _sum_steps(steps)}
    if w.mode != "train":
        return {"forward": priced(fwd)}
    T, V = w.batch * w.seq_len, w.shape.vocab_size
    fwd.append(Op("cross_entropy", "elementwise", 5.0 * T * V, T * V * (w.e + 3 * 4)))
    phases = {"forward": priced(fwd), "backward": priced(_backward_ops(fwd, w.e))}
    if w.optimizer:  # AdamW: read p, g, m, v; write p, m, v (states in the param dtype)
        P = w.shape.num_parameters()
        phases["optimizer"] = priced([Op("adamw", "optimizer", 15.0 * P, 7 * P * w.e)])
    return phases


def _memory(w: _Workload) -> dict[str, float]:
    """Bytes resident at the peak: weights, activations, and KV cache or training state."""
    shape, e = w.shape, w.e
    d, f, T, P = shape.d_model, shape.d_ff, w.batch * w.seq_len, shape.num_parameters()
    memory: dict[str, float] = {"weights": P * e}
    if w.mode == "train":
        saved_per_layer = 7 * d + 3 * shape.kv_dim + (f if shape.family == "opt" else 4 * f)
        logits_b = T * shape.vocab_size * (e + 2 * 4)  # logits, fp32 copy and log-softmax
        memory["activations"] = T * e * shape.n_layers * saved_per_layer + logits_b
        memory["gradients"] = P * e
        if w.optimizer:
            memory["optimizer"] = 2 * P * e
        return memory
    t_act = w.batch if w.mode == "decode" else T
    mlp_live = d + (2 * f if shape.family == "opt" else 3 * f)
    attn_live = 3 * d + 3 * shape.kv_dim
    n_logits = t_act if (w.logits_all or w.mode == "decode") else w.batch
    memory["activations"] = t_act * d * e + max(
        t_act * mlp_live * e, t_act * attn_live * e, n_logits * shape.vocab_size * e
    )
    if w.mode in ("prefill", "decode", "generate"):
        kv_token = 2 * shape.n_layers * shape.kv_dim * e  # K and V bytes per cached token
        memory["kv_cache"] = kv_token * w.batch * (w.kv_len + (1 if w.mode == "decode" else 0))
    return memory


def _is_torch_device(name: str) -> bool:
    return name.split(":")[0].lower() in _TORCH_DEVICE_TYPES


def _on_cpu(device: Any) -> bool:
    return getattr(device, "type", None) == "cpu" or str(device).lower().startswith("cpu")


def resolve_peaks(device: Any = None, dtype: Any = "fp32") -> Any:
    """Peaks for a device given as a datasheet name ("RTX A5000"), "cpu"/a torch device
    (calibrated, or datasheet for a known accelerator), or a ``Peaks``-like object."""
    if device is not None and hasattr(device, "flops_per_s"):
        return device
    key = canonical_dtype(dtype)
    if isinstance(device, str) and not _is_torch_device(device):
        return lookup_spec(device).peaks(key)
    from .calibration import device_peaks  # measures: imports torch

    return device_peaks(device, key)


def estimate(
    model: str | ModelShape,
    *,
    mode: str = "forward",
    batch: int = 1,
    seq_len: int = 512,
    gen_len: int = 0,
    kv_len: int | None = None,
    dtype: Any = "bf16",
    device: Any = "cpu",
    power_w: float | None = None,
    optimizer: bool = True,
    logits: str = "all",
    launch_overhead_s: float = 0.0,
    launch_overlap: bool | None = None,
) -> Estimate:
    """Estimate one workload of ``model`` on ``device``.

    Modes: ``forward`` (one causal forward over ``batch x seq_len``, no cache),
    ``prefill`` (the same, writing a KV cache), ``train`` (forward + backward, plus
    an AdamW step unless ``optimizer=False``), ``decode`` (one token per sequence
    attending ``kv_len`` cached tokens plus itself; default ``kv_len = seq_len``),
    ``generate`` (prefill of ``seq_len`` then ``gen_len - 1`` decode steps: the
    prefill yields the first new token, as gpt-fast and FlexGen count).

    ``device``: a datasheet name ("RTX A5000", "NVIDIA H100 80GB HBM3"), ``"cpu"``
    or a torch device (calibrated peaks), or a ``Peaks``. ``power_w`` overrides
    the board power used for energy. ``logits="last"`` computes the LM head for
    the last position only.

    ``launch_overhead_s`` (default 0: the pure roofline) charges each eager kernel
    launch that many seconds (``calibration.measure_launch_overhead``): added on a
    CPU, overlapped (max) on an accelerator (``launch_overlap`` overrides). Small
    models at small batch are launch-bound, which a roofline alone cannot see.
    """
    shape = get_model(model)
    mode = _normalize_mode(mode)
    key = canonical_dtype(dtype)
    peaks = resolve_peaks(device, key)
    w = _workload(shape, mode, key, batch, seq_len, gen_len, kv_len, logits, optimizer)
    if launch_overlap is None:
        launch_overlap = not _on_cpu(device)
    phases = _phase_costs(w, peaks, (float(launch_overhead_s), bool(launch_overlap)))
    costs = [replace(c, name=f"{phase}.{c.name}") for phase, cs in phases.items() for c in cs]
    phase_s = {phase: sum(c.seconds for c in cs) for phase, cs in phases.items()}
    return Estimate(
        model=shape.name,
        mode=mode,
        batch=batch,
        seq_len=seq_len,
        gen_len=gen_len,
        kv_len=w.kv_len,
        dtype=key,
        device=getattr(peaks, "device_name", "") or str(device),
        peaks_source=peaks.source,
        flops_per_s=peaks.flops_per_s,
        bytes_per_s=peaks.bytes_per_s,
        power_w=power_w if power_w is not None else getattr(peaks, "power_w", None),
        flops=sum(c.flops for c in costs),
        matmul_flops=sum(c.mm_flops for c in costs),
        bytes=sum(c.bytes for c in costs),
        runtime_s=sum(phase_s.values()),
        memory=_memory(w),
        phases=phase_s,
        ops=costs,
    )


def error_pct(measured: float, estimated: float) -> float:
    """Reference 000's error: (measured - estimated) / measured x 100."""
    if measured == 0:
        return math.nan
    return (measured - estimated) / measured * 100.0
