"""Roofline estimate of runtime, memory and energy for the suite's LLM families.

For each operation of a model the estimator counts FLOPs and the bytes it must
move through device memory, and charges ``max(FLOPs / peak FLOP/s, bytes /
bandwidth)`` seconds; the runtime is the sum over operations (reference 000's
method). Memory = weights + activations + KV cache (+ gradients and AdamW state
when training). Energy = runtime x board power, as reference 000 computes it.

Families (shapes are plain dataclasses, so no model needs to be built):

* ``cs336``: the CS336 Transformer LM: RMSNorm, RoPE, SwiGLU, untied head, no biases.
* ``llama``: Llama / gpt-fast: as cs336 plus grouped-query attention (``n_kv_heads``).
  The AICrossSim CLM models are this family (see ``CLM_SOURCE``).
* ``opt``: OPT: LayerNorm, ReLU MLP, biases everywhere, learned positions, tied head.

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

FAMILIES = ("cs336", "llama", "opt")
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


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class ModelShape:
    """The dimensions the estimate needs. ``n_kv_heads`` None = multi-head attention."""

    name: str
    family: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    n_kv_heads: int | None = None
    max_positions: int = 2048  # OPT's learned position table
    tied_embeddings: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.d_model % self.n_heads or self.n_heads % self.kv_heads:
            raise ValueError(f"{self.name}: inconsistent heads for d_model {self.d_model}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def bias(self) -> bool:
        return self.family == "opt"

    def num_parameters(self) -> int:
        d, f, v, kv = self.d_model, self.d_ff, self.vocab_size, self.kv_dim
        if self.family == "opt":
            attn = 2 * d * d + 2 * d * kv + 2 * d + 2 * kv  # q,k,v,out + biases
            mlp = 2 * d * f + f + d
            norms = 2 * 2 * d
            per_layer = attn + mlp + norms
            embed = v * d + (self.max_positions + 2) * d
            final = 2 * d
        else:
            per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
            embed = v * d
            final = d
        head = 0 if self.tied_embeddings else v * d
        return embed + self.n_layers * per_layer + final + head


def torchtitan_ffn_dim(
    dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None
) -> int:
    """SwiGLU hidden size as torchtitan / Meta's Llama code derive it from ``dim``."""
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


#: Where the AICrossSim CLM shapes come from.
CLM_SOURCE = (
    "AICrossSim/NewComputeBench src/aixsim_models/llm/model_flavors.py (torchtitan llama3 "
    "ModelArgs, multiple_of=128, ffn_dim_multiplier=1.3, rope_theta=10000, untied output); "
    "vocab 49152 of HuggingFaceTB/cosmo2-tokenizer (docs/model-list.md) is an assumption"
)
CLM_VOCAB = 49152


def _clm(name: str, dim: int, n_layers: int, n_heads: int, n_kv_heads: int) -> ModelShape:
    return ModelShape(
        name,
        "llama",
        CLM_VOCAB,
        dim,
        n_layers,
        n_heads,
        torchtitan_ffn_dim(dim, 128, 1.3),
        n_kv_heads,
        description=f"AICrossSim {name} (Llama-3 architecture, GQA)",
    )


_CS336 = {  # d_model, d_ff, num_layers, num_heads (reference README, 001/002)
    "small": (768, 3072, 12, 12),
    "medium": (1024, 4096, 24, 16),
    "large": (1280, 5120, 36, 20),
    "xl": (1600, 6400, 48, 25),
    "2.7b": (2560, 10240, 32, 32),
}

MODELS: dict[str, ModelShape] = {
    s.name: s
    for s in (
        ModelShape(
            "opt-1.3b",
            "opt",
            50272,
            2048,
            24,
            32,
            8192,
            tied_embeddings=True,
            description="facebook/opt-1.3b",
        ),  # fmt: skip
        ModelShape(
            "opt-6.7b",
            "opt",
            50272,
            4096,
            32,
            32,
            16384,
            tied_embeddings=True,
            description="facebook/opt-6.7b",
        ),  # fmt: skip
        _clm("clm-60m", 384, 22, 6, 2),
        _clm("clm-200m", 768, 24, 12, 4),
        _clm("clm-400m", 960, 30, 15, 5),
        _clm("clm-1.1b", 1536, 32, 24, 8),
        ModelShape(
            "llama-2-7b", "llama", 32000, 4096, 32, 32, 11008, 32, description="Llama-2-7b-chat-hf"
        ),  # fmt: skip
        ModelShape(
            "llama-3-8b", "llama", 128256, 4096, 32, 32, 14336, 8, description="Meta-Llama-3-8B"
        ),  # fmt: skip
        ModelShape(
            "llama-3.1-8b", "llama", 128256, 4096, 32, 32, 14336, 8, description="Meta-Llama-3.1-8B"
        ),  # fmt: skip
        *(
            ModelShape(
                f"cs336-{k}", "cs336", 10000, d, n, h, f, description=f"CS336 Transformer LM {k}"
            )  # fmt: skip
            for k, (d, f, n, h) in _CS336.items()
        ),
    )
}

_ALIASES = {
    "llama-2-7b-chat-hf": "llama-2-7b",
    "llama-2-7b-chat": "llama-2-7b",
    "meta-llama-3-8b": "llama-3-8b",
    "meta-llama-3.1-8b": "llama-3.1-8b",
    **{k: f"cs336-{k}" for k in _CS336},
}


def known_models() -> list[str]:
    return list(MODELS)


def get_model(name: str | ModelShape) -> ModelShape:
    """A model shape by name: ``"opt-1.3b"``, ``"facebook/opt-1.3b"``, ``"AICrossSim/clm-60m"``,
    ``"Meta-Llama-3-8B"``, ``"cs336-small"`` / ``"small"``. Unknown -> ValueError with the list."""
    if isinstance(name, ModelShape):
        return name
    key = name.strip().lower().rsplit("/", 1)[-1]
    key = _ALIASES.get(key, key)
    try:
        return MODELS[key]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(known_models())}"
        ) from None


def shape_from_config(cfg: Any, name: str | None = None) -> ModelShape:
    """The ``ModelShape`` of a config object of the suite's models
    (``TransformerLMConfig``, ``LlamaConfig``, ``OPTConfig``), read by attribute names."""
    if hasattr(cfg, "d_model") and hasattr(cfg, "d_ff"):  # CS336 TransformerLMConfig
        return ModelShape(name or "cs336-custom", "cs336", cfg.vocab_size, cfg.d_model,
                          cfg.num_layers, cfg.num_heads, cfg.d_ff)  # fmt: skip
    if hasattr(cfg, "intermediate_size") and hasattr(cfg, "n_kv_heads"):  # LlamaConfig
        return ModelShape(name or getattr(cfg, "name", "llama-custom"), "llama", cfg.vocab_size,
                          cfg.dim, cfg.n_layers, cfg.n_heads, cfg.intermediate_size,
                          cfg.n_kv_heads)  # fmt: skip
    if hasattr(cfg, "ffn") and hasattr(cfg, "hidden"):  # OPTConfig
        return ModelShape(name or getattr(cfg, "name", "opt-custom"), "opt", cfg.vocab_size,
                          cfg.hidden, cfg.num_layers, cfg.num_heads, cfg.ffn,
                          max_positions=cfg.max_position_embeddings,
                          tied_embeddings=True)  # fmt: skip
    raise TypeError(f"cannot read a model shape from {type(cfg).__name__}")


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


def _normalize_mode(mode: str) -> str:
    key = mode.lower()
    key = _MODE_ALIASES.get(key, key)
    if key not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")
    return key


def resolve_peaks(device: Any = None, dtype: Any = "fp32") -> Any:
    """Peaks for a device given as a datasheet name ("RTX A5000"), "cpu"/a torch device
    (calibrated, or datasheet for a known accelerator), or a ``Peaks``-like object."""
    from .calibration import Peaks

    if device is not None and hasattr(device, "flops_per_s"):
        return device
    key = canonical_dtype(dtype)
    if isinstance(device, str) and device.split(":")[0].lower() not in (
        "cpu",
        "cuda",
        "xpu",
        "mps",
        "meta",
    ):
        spec = lookup_spec(device)
        return Peaks(
            spec.peak_flops(key), spec.bandwidth, f"datasheet: {spec.name}", spec.power, spec.name
        )
    from .calibration import device_peaks

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
    or a torch device (calibrated peaks), or a ``calibration.Peaks``. ``power_w``
    overrides the board power used for energy. ``logits="last"`` computes the LM
    head for the last position only.

    ``launch_overhead_s`` (default 0: the pure roofline) charges each eager kernel
    launch that many seconds (``calibration.measure_launch_overhead``): added on a
    CPU, overlapped (max) on an accelerator (``launch_overlap`` overrides). Small models at small batch are
    launch-bound, which a roofline alone cannot see.
    """
    shape = get_model(model)
    mode = _normalize_mode(mode)
    key = canonical_dtype(dtype)
    e = DTYPE_BYTES[key]
    peaks = resolve_peaks(device, key)
    power = power_w if power_w is not None else getattr(peaks, "power_w", None)
    if batch < 1 or seq_len < 1:
        raise ValueError("batch and seq_len must be >= 1")
    if mode == "generate" and gen_len < 1:
        raise ValueError("mode 'generate' needs gen_len >= 1")
    logits_all = logits == "all"
    if launch_overlap is None:
        launch_overlap = not (_is_cpu(device) or str(device).lower().startswith("cpu"))
    ovh = (float(launch_overhead_s), bool(launch_overlap))
    P = shape.num_parameters()
    kv_token = 2 * shape.n_layers * shape.kv_dim * e  # K and V bytes per cached token

    phases: dict[str, list[OpCost]] = {}
    if mode in ("forward", "prefill", "train"):
        fwd = _forward_ops(
            shape, batch, seq_len, seq_len, e, cache=mode == "prefill", logits_all=logits_all
        )
        if mode == "train":
            T, V = batch * seq_len, shape.vocab_size
            fwd.append(Op("cross_entropy", "elementwise", 5.0 * T * V, T * V * (e + 3 * 4)))
            phases["forward"] = _costs(fwd, peaks, ovh)
            phases["backward"] = _costs(_backward_ops(fwd, e), peaks, ovh)
            if optimizer:  # AdamW: read p, g, m, v; write p, m, v (states in the param dtype)
                phases["optimizer"] = _costs(
                    [Op("adamw", "optimizer", 15.0 * P, 7 * P * e)], peaks, ovh
                )
        else:
            phases["forward"] = _costs(fwd, peaks, ovh)
        kv_len_out = seq_len if mode == "prefill" else 0
    elif mode == "decode":
        L = seq_len if kv_len is None else kv_len
        phases["decode"] = _costs(_forward_ops(shape, batch, 1, L + 1, e, cache=True), peaks, ovh)
        kv_len_out = L
    else:  # generate
        pre = _forward_ops(shape, batch, seq_len, seq_len, e, cache=True, logits_all=logits_all)
        phases["prefill"] = _costs(pre, peaks, ovh)
        steps: dict[str, OpCost] = {}
        for i in range(gen_len - 1):
            for c in _costs(
                _forward_ops(shape, batch, 1, seq_len + i + 1, e, cache=True), peaks, ovh
            ):
                acc = steps.setdefault(
                    c.name, replace(c, flops=0.0, bytes=0.0, seconds=0.0, mm_flops=0.0)
                )
                acc.flops += c.flops
                acc.bytes += c.bytes
                acc.seconds += c.seconds
                acc.mm_flops += c.mm_flops
        phases["decode"] = list(steps.values())
        kv_len_out = seq_len + gen_len

    # ---- time, FLOPs, bytes
    costs: list[OpCost] = []
    phase_s: dict[str, float] = {}
    for phase, cs in phases.items():
        phase_s[phase] = sum(c.seconds for c in cs)
        costs.extend(replace(c, name=f"{phase}.{c.name}") for c in cs)
    tot_f = sum(c.flops for c in costs)
    tot_b = sum(c.bytes for c in costs)
    mm_f = sum(c.mm_flops for c in costs)
    tot_s = sum(phase_s.values())

    # ---- memory
    d, f, T = shape.d_model, shape.d_ff, batch * seq_len
    memory: dict[str, float] = {"weights": P * e}
    if mode == "train":
        kv = shape.kv_dim
        saved_per_layer = 7 * d + 3 * kv + (f if shape.family == "opt" else 4 * f)
        logits_b = T * shape.vocab_size * (e + 2 * 4)  # logits, fp32 copy and log-softmax
        memory["activations"] = T * e * shape.n_layers * saved_per_layer + logits_b
        memory["gradients"] = P * e
        if optimizer:
            memory["optimizer"] = 2 * P * e
    else:
        t_act = batch if mode == "decode" else T
        mlp_live = d + (2 * f if shape.family == "opt" else 3 * f)
        attn_live = 3 * d + 3 * shape.kv_dim
        n_logits = t_act if (logits_all or mode == "decode") else batch
        memory["activations"] = t_act * d * e + max(
            t_act * mlp_live * e, t_act * attn_live * e, n_logits * shape.vocab_size * e
        )
        if mode in ("prefill", "decode", "generate"):
            memory["kv_cache"] = kv_token * batch * (kv_len_out + (1 if mode == "decode" else 0))

    return Estimate(
        model=shape.name,
        mode=mode,
        batch=batch,
        seq_len=seq_len,
        gen_len=gen_len,
        kv_len=kv_len_out,
        dtype=key,
        device=getattr(peaks, "device_name", "") or str(device),
        peaks_source=peaks.source,
        flops_per_s=peaks.flops_per_s,
        bytes_per_s=peaks.bytes_per_s,
        power_w=power,
        flops=tot_f,
        matmul_flops=mm_f,
        bytes=tot_b,
        runtime_s=tot_s,
        memory=memory,
        phases=phase_s,
        ops=costs,
    )


def _is_cpu(device: Any) -> bool:
    return getattr(device, "type", None) == "cpu"


def error_pct(measured: float, estimated: float) -> float:
    """Reference 000's error: (measured - estimated) / measured x 100."""
    if measured == 0:
        return math.nan
    return (measured - estimated) / measured * 100.0
