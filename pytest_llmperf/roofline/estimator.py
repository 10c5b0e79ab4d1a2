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

N devices (``devices=N``, ``parallel=`` ``"tp"``, ``"pp"`` or ``"dp"``): each device
is priced on its own share of the work with the same op list, and communication
is priced over the device's link (``device_specs``: PCIe or NVLink, or a ``Link``
the caller gives, e.g. ``calibration.measure_link``) with the ring formulas of
``interconnect.py``, never with the device peaks. It shows as ops of kind
``collective`` in ``ops`` and ``phases``. ``tp`` is Megatron's tensor parallel:
q/k/v and fc1 (w1/w3) column-parallel, out_proj and fc2 (w2) row-parallel, heads
and KV cache split, embeddings, norms, residuals and the LM head replicated, two
all-reduces of ``tokens x d_model`` per layer in every forward (two more in the
backward). ``pp`` is a GPipe pipeline: contiguous stages, ``(m + N - 1)`` slots of
the slowest stage per micro-batch plus one send (the idle part is the op
``pipeline.bubble``), and each decode step of a generation goes through the
stages in turn. ``dp`` gives each device ``ceil(batch / N)`` sequences and, when
training, one all-reduce of all gradients after the backward. FLOPs, bytes and
memory are those of one device (the busiest); runtime is the job's; energy
counts every board for the whole runtime (``energy_j_per_device``: one board, as
reference 000's x8 rows report). One device is the ``N = 1`` case of the same
path, with no communication and the numbers of a single-device estimate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .device_specs import DTYPE_BYTES, canonical_dtype
from .device_specs import lookup as lookup_spec
from .interconnect import Link, all_reduce_s, send_s, with_overrides
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
#: How a workload is split over several devices, and the words for them.
PARALLEL = {"tp": "tensor parallel", "pp": "pipeline parallel", "dp": "data parallel"}
_PARALLEL_ALIASES = {"tensor": "tp", "pipeline": "pp", "data": "dp"}


# --------------------------------------------------------------------------- ops


@dataclass
class Op:
    """One operation: FLOPs and bytes, ``count`` times (e.g. once per layer)."""

    name: str
    kind: str  # matmul | attention | elementwise | memory | optimizer | collective
    flops: float
    bytes: float
    count: int = 1
    mm_flops: float = 0.0  # the part FlopCounterMode counts (matmuls, attention)
    dims: tuple[int, ...] = ()  # matmul (m, k, n) for the backward
    kernels: int = 1  # eager kernel launches per repetition
    link_s: float = 0.0  # a collective's seconds per repetition, priced on the link

    def total(
        self, peaks: Any, overhead: tuple[float, bool] = (0.0, True)
    ) -> tuple[float, float, float, str]:
        """(flops, bytes, seconds, bound) over all ``count`` repetitions.

        ``overhead`` = (seconds per kernel launch, overlapped): an accelerator
        launches asynchronously, so launches hide behind execution (max); a CPU
        executes in the launching thread, so they add. A collective's time is its
        ``link_s`` (the interconnect's, not the device peaks'); its bytes are the message.
        """
        if self.kind == "collective":
            return 0.0, self.bytes * self.count, self.link_s * self.count, "link"
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


@dataclass(frozen=True)
class _Part:
    """The share of the model one device computes: ``layers`` decoder layers, the
    embeddings when ``first``, the final norm and LM head when ``last``, each layer's
    heads and MLP split ``tp`` ways (Megatron). The whole model is ``_Part(n_layers)``."""

    layers: int
    first: bool = True
    last: bool = True
    tp: int = 1


def _forward_ops(m: ModelShape, b: int, s: int, s_k: int, e: float, *, cache: bool,
                 logits_all: bool = True, part: _Part | None = None) -> list[Op]:  # fmt: skip
    """Ops of one forward over ``s`` new tokens per sequence attending ``s_k`` keys,
    on the device that holds ``part`` of the model (default: all of it)."""
    part = part or _Part(m.n_layers)
    d, f, v, kv, L, n = m.d_model, m.d_ff, m.vocab_size, m.kv_dim, part.layers, part.tp
    d_n, f_n, kv_n = d // n, f // n, kv // n  # the tensor-parallel shard of each dim
    T = b * s
    # Kernel counts are those of the suite's eager models (an fp32 RMSNorm is ~7
    # kernels, RoPE on q and k ~16); they only matter with a launch overhead.
    opt = m.family == "opt"
    ops = []
    if part.first:
        ops.append(Op("embedding", "memory", 0.0, 2 * T * d * e + T * 8))
        if opt:
            ops.append(_ew("positions", T * d, 2, 1, 1, e, kernels=3))
    norm_flops = 7 if opt else 4
    norm_k = 1 if opt else 7
    ops.append(
        _ew("norm", T * d, 1, 1, norm_flops, e, 2 * L, extra_bytes=2 * d * e, kernels=norm_k)
    )
    if opt:  # separate q, k, v projections with biases
        ops.append(_mm("q_proj", T, d, d_n, e, L, bias=True))
        ops.append(_mm("kv_proj", T, d, 2 * kv_n, e, L, bias=True, kernels=2))
    else:
        ops.append(_mm("qkv_proj", T, d, d_n + 2 * kv_n, e, L))
        ops.append(_ew("rope", T * (d_n + kv_n), 1, 1, 3, e, L, kernels=16))
    if cache:
        ops.append(Op("kv_cache_write", "memory", 0.0, 2 * 2 * T * kv_n * e, L, kernels=2))
    h, hd = m.n_heads // n, m.head_dim
    attn_f = 4.0 * b * h * s * s_k * hd
    softmax_f = 5.0 * b * h * s * s_k
    attn_b = (2 * T * d_n + 2 * b * s_k * kv_n) * e
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
    ops.append(_mm("out_proj", T, d_n, d, e, L, bias=m.bias))
    ops.append(_ew("residual", T * d, 2, 1, 1, e, 2 * L))
    if opt:
        ops.append(_mm("fc1", T, d, f_n, e, L, bias=True))
        ops.append(_ew("relu", T * f_n, 1, 1, 1, e, L))
        ops.append(_mm("fc2", T, f_n, d, e, L, bias=True))
    else:
        ops.append(_mm("w1_w3", T, d, 2 * f_n, e, L, kernels=2))
        ops.append(_ew("silu_mul", T * f_n, 2, 1, 5, e, L, kernels=2))
        ops.append(_mm("w2", T, f_n, d, e, L))
    if part.last:
        ops.append(_ew("final_norm", T * d, 1, 1, norm_flops, e, extra_bytes=2 * d * e,
                       kernels=norm_k))  # fmt: skip
        ops.append(_mm("lm_head", T if logits_all else b, d, v, e))
    return ops


def _collective(name: str, nbytes: float, seconds: float, count: int = 1) -> Op:
    """A communication op: ``count`` messages of ``nbytes``, each ``seconds`` on the link."""
    return Op(name, "collective", 0.0, nbytes, count, kernels=0, link_s=seconds)


def _tp_all_reduces(tokens: int, m: ModelShape, e: float, part: _Part, link: Link) -> list[Op]:
    """Megatron's two all-reduces per layer (after out_proj, after fc2 / w2) of one
    forward over ``tokens``; the backward has two of the same size (``_backward_ops``)."""
    if part.tp == 1:
        return []
    nbytes = tokens * m.d_model * e
    t = all_reduce_s(nbytes, part.tp, link)
    return [
        _collective("all_reduce.attention", nbytes, t, part.layers),
        _collective("all_reduce.mlp", nbytes, t, part.layers),
    ]


def _backward_ops(fwd: list[Op], e: float) -> list[Op]:
    """Backward of each forward op: 2x FLOPs; matmuls as the dX and dW products;
    a tensor-parallel all-reduce is mirrored by one of the same size."""
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
        elif op.kind == "collective":  # the backward all-reduces the input gradients
            out.append(op)
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
    """The estimate of one workload; times in seconds, memory in bytes, energy in J.

    On several devices ``flops``, ``bytes`` (device memory traffic) and ``memory``
    are one device's, the busiest; ``runtime_s`` is the job's, of which
    ``communication_s`` is spent in collectives (``communication_bytes``: their
    messages) and ``bubble_s`` idle in a pipeline's fill and drain.
    """

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
    devices: int = 1
    parallel: str = ""  # "tp" | "pp" | "dp"; "" on one device
    link: str = ""  # Link.describe() of the interconnect priced; "" on one device
    communication_s: float = 0.0
    communication_bytes: float = 0.0
    bubble_s: float = 0.0
    micro_batches: int = 0  # pipeline parallel only

    @property
    def memory_bytes(self) -> float:
        return sum(self.memory.values())

    @property
    def runtime_ms(self) -> float:
        return self.runtime_s * 1e3

    @property
    def memory_gb(self) -> float:
        """Memory in GB of 1e9 bytes (of one device when there are several)."""
        return self.memory_bytes / 1e9

    @property
    def energy_j(self) -> float | None:
        """runtime x board power x devices: every board draws its power for the whole
        runtime (None when the power is unknown, e.g. a calibrated CPU)."""
        return None if self.power_w is None else self.runtime_s * self.power_w * self.devices

    @property
    def energy_j_per_device(self) -> float | None:
        """runtime x board power: one board's share (reference 000's x8 rows report this)."""
        return None if self.power_w is None else self.runtime_s * self.power_w

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            runtime_ms=self.runtime_ms,
            energy_j=self.energy_j,
            energy_j_per_device=self.energy_j_per_device,
            memory_bytes=self.memory_bytes,
            memory_gb=self.memory_gb,
        )
        return d


@dataclass(frozen=True)
class _Workload:
    """One estimate's checked inputs: what the phase and memory helpers read."""

    shape: ModelShape
    mode: str
    batch: int  # sequences one device runs (data parallel: its share)
    seq_len: int
    gen_len: int
    kv_len: int  # tokens in the KV cache at the end (a decode step attends these + itself)
    e: float  # bytes per element of the dtype
    logits_all: bool
    optimizer: bool


@dataclass(frozen=True)
class _Plan:
    """How the work is spread: ``parts`` holds one ``_Part`` per pipeline stage, else
    the one share every device computes (the whole model, or a tensor-parallel shard)."""

    devices: int
    parallel: str  # "" on one device
    parts: tuple[_Part, ...]
    link: Link | None = None
    micro_batches: int = 0  # pipeline parallel only


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
    if kv_len is not None and kv_len < 0:  # a negative cache priced negative work
        raise ValueError(f"kv_len must be >= 0, got {kv_len!r}")
    cached = {
        "prefill": seq_len,
        "decode": seq_len if kv_len is None else kv_len,
        "generate": seq_len + gen_len,
    }.get(mode, 0)
    return _Workload(shape, mode, batch, seq_len, gen_len, cached, DTYPE_BYTES[dtype],
                     logits == "all", optimizer)  # fmt: skip


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plan(shape: ModelShape, batch: int, devices: Any, parallel: Any,
          micro_batches: Any) -> _Plan:  # fmt: skip
    """The split of ``shape`` over ``devices``, or a ValueError naming the value and its limit."""
    if not _whole_number(devices) or devices < 1:
        raise ValueError(f"devices must be a whole number >= 1, got {devices!r}")
    key = str(parallel).lower()
    key = _PARALLEL_ALIASES.get(key, key)
    if key not in PARALLEL:
        raise ValueError(
            f"unknown parallel mode {parallel!r}; known: tp (tensor), pp (pipeline), dp (data)"
        )
    if micro_batches is not None:
        if key != "pp":
            raise ValueError(
                f"micro_batches={micro_batches!r} applies to pipeline parallel (parallel='pp') "
                f"only, not {PARALLEL[key]}"
            )
        if not _whole_number(micro_batches) or not 1 <= micro_batches <= batch:
            raise ValueError(
                f"micro_batches must be a whole number from 1 to the batch ({batch}), "
                f"got {micro_batches!r}"
            )
    L = shape.n_layers
    if devices == 1:  # nothing to split: the single-device estimate, whatever the mode
        return _Plan(1, "", (_Part(L),))
    over = f"{PARALLEL[key]} over {devices} devices"
    if key == "tp":
        for count, what in (
            (shape.n_heads, f"{shape.n_heads} attention heads"),
            (shape.kv_heads, f"{shape.kv_heads} key/value heads (split, not replicated)"),
            (shape.d_ff, f"an MLP width (d_ff) of {shape.d_ff}"),
        ):
            if count % devices:
                raise ValueError(
                    f"{shape.name} has {what}: {over} needs a device count that divides {count}"
                )
        return _Plan(devices, "tp", (_Part(L, tp=devices),))
    if key == "pp":
        if devices > L:
            raise ValueError(
                f"{shape.name} has {L} layers: {over} needs at most {L} devices "
                "(a stage holds one layer or more)"
            )
        q, r = divmod(L, devices)  # contiguous stages, the first ones one layer longer
        parts = tuple(
            _Part(q + (1 if i < r else 0), first=i == 0, last=i == devices - 1)
            for i in range(devices)
        )
        return _Plan(devices, "pp", parts, micro_batches=micro_batches or batch)
    if batch < devices:
        raise ValueError(
            f"{over} needs batch >= {devices} (a sequence per device at least), got batch {batch}"
        )
    return _Plan(devices, "dp", (_Part(L),))


def _part_parameters(shape: ModelShape, part: _Part) -> int:
    """Parameters the device computing ``part`` holds (all of them for the whole model).

    Tensor parallel splits q/k/v/out and the MLP weights (and the biases of the
    column-parallel ones); a pipeline's last stage holds its own copy of a tied LM head.
    """
    d, f, v, kv, L = shape.d_model, shape.d_ff, shape.vocab_size, shape.kv_dim, shape.n_layers
    opt = shape.family == "opt"
    total = shape.num_parameters()
    base = replace(shape, n_layers=0).num_parameters()  # embeddings, final norm, untied head
    per_layer = (total - base) // L
    embed = v * d + ((shape.max_positions + 2) * d if opt else 0)
    head = v * d
    final = base - embed - (0 if shape.tied_embeddings else head)
    sharded = 2 * d * d + 2 * d * kv + (d + 2 * kv + 2 * d * f + f if opt else 3 * d * f)
    n = part.layers * (per_layer - sharded + sharded // part.tp)
    if part.first:
        n += embed
    if part.last:
        n += final + (head if not shape.tied_embeddings or not part.first else 0)
    return n


def _decode_step_ops(w: _Workload, cached: int, part: _Part | None = None) -> list[Op]:
    """One new token per sequence attending ``cached`` tokens plus itself."""
    return _forward_ops(w.shape, w.batch, 1, cached + 1, w.e, cache=True, part=part)


def _cross_entropy(w: _Workload, batch: int) -> Op:
    T, V = batch * w.seq_len, w.shape.vocab_size
    return Op("cross_entropy", "elementwise", 5.0 * T * V, T * V * (w.e + 3 * 4))


def _adamw(w: _Workload, part: _Part) -> Op:
    """AdamW: read p, g, m, v; write p, m, v (states in the param dtype)."""
    P = _part_parameters(w.shape, part)
    return Op("adamw", "optimizer", 15.0 * P, 7 * P * w.e)


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


def _phase_costs(w: _Workload, peaks: Any, overhead: tuple[float, bool],
                 plan: _Plan) -> dict[str, list[OpCost]]:  # fmt: skip
    """The priced ops of each phase of the workload, phases in execution order."""

    def priced(ops: list[Op]) -> list[OpCost]:
        return _costs(ops, peaks, overhead)

    if plan.parallel == "pp":
        return _pipeline_phases(w, priced, plan)
    part, link = plan.parts[0], plan.link

    def comm(tokens: int) -> list[Op]:
        return _tp_all_reduces(tokens, w.shape, w.e, part, link)  # type: ignore[arg-type]

    if w.mode == "decode":
        return {"decode": priced(_decode_step_ops(w, w.kv_len, part) + comm(w.batch))}
    fwd = _forward_ops(w.shape, w.batch, w.seq_len, w.seq_len, w.e,
                       cache=w.mode in ("prefill", "generate"), logits_all=w.logits_all,
                       part=part) + comm(w.batch * w.seq_len)  # fmt: skip
    if w.mode == "generate":  # the prefill yields the first new token
        steps = [
            priced(_decode_step_ops(w, w.seq_len + i, part) + comm(w.batch))
            for i in range(w.gen_len - 1)
        ]
        return {"prefill": priced(fwd), "decode": _sum_steps(steps)}
    if w.mode != "train":
        return {"forward": priced(fwd)}
    fwd.append(_cross_entropy(w, w.batch))
    backward = _backward_ops(fwd, w.e)
    if plan.parallel == "dp":  # DDP: every gradient all-reduced once, after the backward
        nbytes = _part_parameters(w.shape, part) * w.e
        t = all_reduce_s(nbytes, plan.devices, link)  # type: ignore[arg-type]
        backward.append(_collective("all_reduce.gradients", nbytes, t))
    phases = {"forward": priced(fwd), "backward": priced(backward)}
    if w.optimizer:
        phases["optimizer"] = priced([_adamw(w, part)])
    return phases


def _micro_batch_sizes(batch: int, m: int) -> list[int]:
    """``batch`` sequences in ``m`` micro-batches as ``torch.tensor_split`` cuts them."""
    q, r = divmod(batch, m)
    return [q + 1] * r + [q] * (m - r)


def _pipeline_phases(w: _Workload, priced: Any, plan: _Plan) -> dict[str, list[OpCost]]:
    """GPipe: a pass of m micro-batches over N stages takes (m + N - 1) slots, each the
    slowest stage's time for the largest micro-batch plus one send of its activations.

    A phase's ops are the slowest stage's work on all micro-batches, its sends, and
    ``pipeline.bubble``: the rest of the slots, in which that stage waits. A decode
    step is one micro-batch through every stage in turn: the whole model's ops plus
    N - 1 sends.
    """
    N, link, e, d = plan.devices, plan.link, w.e, w.shape.d_model
    sizes = _micro_batch_sizes(w.batch, plan.micro_batches)
    cache = w.mode in ("prefill", "generate")

    def forward(part: _Part, b: int) -> list[Op]:
        ops = _forward_ops(w.shape, b, w.seq_len, w.seq_len, e, cache=cache,
                           logits_all=w.logits_all, part=part)  # fmt: skip
        if w.mode == "train" and part.last:
            ops.append(_cross_entropy(w, b))
        return ops

    def backward(part: _Part, b: int) -> list[Op]:
        return _backward_ops(forward(part, b), e)  # gradients go back as activations came

    def send(b: int, tokens_per_seq: int, count: int = 1) -> Op:
        nbytes = b * tokens_per_seq * d * e
        return _collective("send.stage", nbytes, send_s(nbytes, link), count)  # type: ignore[arg-type]

    def schedule(make: Any) -> list[OpCost]:
        times = [sum(c.seconds for c in priced(make(p, sizes[0]))) for p in plan.parts]
        slowest = plan.parts[times.index(max(times))]
        slot = max(times) + priced([send(sizes[0], w.seq_len)])[0].seconds
        work = _sum_steps([priced(make(slowest, b) + [send(b, w.seq_len)]) for b in sizes])
        idle = (len(sizes) + N - 1) * slot - sum(c.seconds for c in work)
        return [*work, OpCost("pipeline.bubble", "bubble", N - 1, 0.0, 0.0, idle, "idle")]

    def step(cached: int) -> list[OpCost]:
        return priced(_decode_step_ops(w, cached) + [send(w.batch, 1, N - 1)])

    if w.mode == "decode":
        return {"decode": step(w.kv_len)}
    if w.mode == "generate":
        decode = _sum_steps([step(w.seq_len + i) for i in range(w.gen_len - 1)])
        return {"prefill": schedule(forward), "decode": decode}
    if w.mode != "train":
        return {"forward": schedule(forward)}
    phases = {"forward": schedule(forward), "backward": schedule(backward)}
    if w.optimizer:  # every stage steps its own parameters at once: the largest decides
        busiest = max(plan.parts, key=lambda p: _part_parameters(w.shape, p))
        phases["optimizer"] = priced([_adamw(w, busiest)])
    return phases


def _memory(
    w: _Workload, part: _Part | None = None, act_batch: int | None = None
) -> dict[str, float]:
    """Bytes resident at the peak on the device holding ``part`` (default: the whole
    model): weights, activations of ``act_batch`` sequences (default: all of its
    batch), and KV cache or training state."""
    shape, e = w.shape, w.e
    part = part or _Part(shape.n_layers)
    n, L = part.tp, part.layers
    d, f, kv = shape.d_model, shape.d_ff, shape.kv_dim
    b = w.batch if act_batch is None else act_batch
    T, P = b * w.seq_len, _part_parameters(shape, part)
    opt = shape.family == "opt"
    memory: dict[str, float] = {"weights": P * e}
    if w.mode == "train":
        # norms' inputs and outputs are replicated; the rest of a layer's saved
        # tensors (q, k, v, attention output, MLP hidden) are split tensor-parallel
        saved_per_layer = 4 * d + (3 * d + 3 * kv + (f if opt else 4 * f)) // n
        logits_b = (
            T * shape.vocab_size * (e + 2 * 4) if part.last else 0
        )  # logits, fp32, log-softmax
        memory["activations"] = T * e * L * saved_per_layer + logits_b
        memory["gradients"] = P * e
        if w.optimizer:
            memory["optimizer"] = 2 * P * e
        return memory
    t_act = b if w.mode == "decode" else T
    if w.mode == "generate":  # a decode step's batch of tokens can exceed a micro-batch's
        t_act = max(t_act, w.batch)
    mlp_live = d + (2 * f if opt else 3 * f) // n
    attn_live = (3 * d + 3 * kv) // n
    n_logits = (t_act if (w.logits_all or w.mode == "decode") else b) if part.last else 0
    memory["activations"] = t_act * d * e + max(
        t_act * mlp_live * e, t_act * attn_live * e, n_logits * shape.vocab_size * e
    )
    if w.mode in ("prefill", "decode", "generate"):
        kv_token = 2 * L * (kv // n) * e  # K and V bytes per cached token
        memory["kv_cache"] = kv_token * w.batch * (w.kv_len + (1 if w.mode == "decode" else 0))
    return memory


def _plan_memory(w: _Workload, plan: _Plan) -> dict[str, float]:
    """Memory of the busiest device: a pipeline stage holds one micro-batch's live
    activations in inference, all of them in training (GPipe saves every one)."""
    if plan.parallel != "pp":
        return _memory(w, plan.parts[0])
    live = w.batch
    if w.mode not in ("train", "decode"):
        live = _micro_batch_sizes(w.batch, plan.micro_batches)[0]
    return max((_memory(w, p, live) for p in plan.parts), key=lambda mem: sum(mem.values()))


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


def _finite(value: Any, low: float, inclusive: bool) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value >= low if inclusive else value > low


def resolve_link(peaks: Any, devices: int, link: Link | None = None,
                 bandwidth: float | None = None, latency_s: float | None = None) -> Link | None:  # fmt: skip
    """The link a multi-device estimate prices: ``link``, else the device's own
    (``peaks.link``: a datasheet's), with a bandwidth (bytes/s) or latency (s) in
    place of its own; a bandwidth alone makes a link (latency 0 unless given).
    None on one device with nothing given; a ValueError when N > 1 has no link."""
    if bandwidth is not None and not _finite(bandwidth, 0.0, inclusive=False):
        raise ValueError(f"link_bandwidth must be a finite number > 0 (bytes/s), got {bandwidth!r}")
    if latency_s is not None and not _finite(latency_s, 0.0, inclusive=True):
        raise ValueError(
            f"link_latency_s must be a finite number >= 0 (seconds), got {latency_s!r}"
        )
    if link is not None and not isinstance(link, Link):
        raise ValueError(
            f"link must be an interconnect.Link (e.g. interconnect.pcie(4, 16)), got {link!r}"
        )
    base = link if link is not None else getattr(peaks, "link", None)
    if base is None:
        if bandwidth is None:
            if devices == 1:
                return None
            name = getattr(peaks, "device_name", "") or getattr(peaks, "source", "this device")
            raise ValueError(
                f"device {name!r} has no datasheet link: estimating {devices} devices needs "
                "link=Link(...) (e.g. calibration.measure_link()) or link_bandwidth= in bytes/s"
            )
        return Link("given link", float(bandwidth), float(latency_s or 0.0), "override")
    return with_overrides(base, bandwidth, latency_s)


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
    devices: int = 1,
    parallel: str = "tp",
    link: Link | None = None,
    link_bandwidth: float | None = None,
    link_latency_s: float | None = None,
    micro_batches: int | None = None,
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

    ``devices`` > 1 spreads the workload over that many devices of the kind,
    ``parallel`` ``"tp"`` (tensor), ``"pp"`` (pipeline, ``micro_batches`` of the
    batch, default one sequence each) or ``"dp"`` (data; ``batch`` is the global
    batch), communicating over ``link`` (default: the datasheet device's; a
    calibrated device needs one, or ``link_bandwidth``), whose bandwidth (bytes/s)
    and step latency (s) ``link_bandwidth`` / ``link_latency_s`` override. A split
    the model cannot take is a ValueError naming the value and its limit.
    """
    if power_w is not None and not _finite(power_w, 0.0, inclusive=False):
        raise ValueError(f"power_w must be a finite number > 0 (W), got {power_w!r}")
    shape = get_model(model)
    mode = _normalize_mode(mode)
    key = canonical_dtype(dtype)
    w = _workload(shape, mode, key, batch, seq_len, gen_len, kv_len, logits, optimizer)
    plan = _plan(shape, batch, devices, parallel, micro_batches)
    peaks = resolve_peaks(device, key)
    priced_link = resolve_link(peaks, plan.devices, link, link_bandwidth, link_latency_s)
    if plan.devices > 1:
        plan = replace(plan, link=priced_link)
    if plan.parallel == "dp":  # each device runs its share of the sequences
        w = replace(w, batch=-(-batch // plan.devices))
    if launch_overlap is None:
        launch_overlap = not _on_cpu(device)
    phases = _phase_costs(w, peaks, (float(launch_overhead_s), bool(launch_overlap)), plan)
    costs = [replace(c, name=f"{phase}.{c.name}") for phase, cs in phases.items() for c in cs]
    phase_s = {phase: sum(c.seconds for c in cs) for phase, cs in phases.items()}
    comm = [c for c in costs if c.kind == "collective"]
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
        bytes=sum(c.bytes for c in costs if c.kind != "collective"),
        runtime_s=sum(phase_s.values()),
        memory=_plan_memory(w, plan),
        phases=phase_s,
        ops=costs,
        devices=plan.devices,
        parallel=plan.parallel,
        link=plan.link.describe() if plan.link is not None else "",
        communication_s=sum((c.seconds for c in comm), 0.0),
        communication_bytes=sum((c.bytes for c in comm), 0.0),
        bubble_s=sum((c.seconds for c in costs if c.kind == "bubble"), 0.0),
        micro_batches=plan.micro_batches,
    )


def error_pct(measured: float, estimated: float) -> float:
    """Reference 000's error: (measured - estimated) / measured x 100."""
    if measured == 0:
        return math.nan
    return (measured - estimated) / measured * 100.0
