"""The ops of a model's forward and backward, and what each costs on a device.

For each operation the roofline counts FLOPs and the bytes it must move through
device memory; ``Op.total`` charges ``max(FLOPs / peak FLOP/s, bytes / bandwidth)``
seconds (plus kernel launches, when a launch overhead is given), and a collective
the seconds of its link. ``price`` turns a list of ``Op`` into ``OpCost`` rows.

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

from dataclasses import dataclass, replace
from typing import Any

from .interconnect import Link, all_reduce_s
from .shapes import ModelShape
from .workload import Part


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


def forward_ops(m: ModelShape, b: int, s: int, s_k: int, e: float, *, cache: bool,
                logits_all: bool = True, part: Part | None = None) -> list[Op]:  # fmt: skip
    """Ops of one forward over ``s`` new tokens per sequence attending ``s_k`` keys,
    on the device that holds ``part`` of the model (default: all of it)."""
    part = part or Part(m.n_layers)
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


def collective(name: str, nbytes: float, seconds: float, count: int = 1) -> Op:
    """A communication op: ``count`` messages of ``nbytes``, each ``seconds`` on the link."""
    return Op(name, "collective", 0.0, nbytes, count, kernels=0, link_s=seconds)


def tp_all_reduces(tokens: int, m: ModelShape, e: float, part: Part, link: Link) -> list[Op]:
    """Megatron's two all-reduces per layer (after out_proj, after fc2 / w2) of one
    forward over ``tokens``; the backward has two of the same size (``backward_ops``)."""
    if part.tp == 1:
        return []
    nbytes = tokens * m.d_model * e
    t = all_reduce_s(nbytes, part.tp, link)
    return [
        collective("all_reduce.attention", nbytes, t, part.layers),
        collective("all_reduce.mlp", nbytes, t, part.layers),
    ]


def backward_ops(fwd: list[Op], e: float) -> list[Op]:
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


@dataclass
class OpCost:
    """One op priced: its totals over all ``count`` repetitions and what bound it."""

    name: str
    kind: str
    count: int
    flops: float
    bytes: float
    seconds: float
    bound: str
    mm_flops: float = 0.0


def price(ops: list[Op], peaks: Any, overhead: tuple[float, bool] = (0.0, True)) -> list[OpCost]:
    """Each op's cost on a device of ``peaks`` (``overhead``: as ``Op.total`` takes it)."""
    out = []
    for op in ops:
        f_, b_, s_, bound = op.total(peaks, overhead)
        out.append(OpCost(op.name, op.kind, op.count, f_, b_, s_, bound, op.mm_flops * op.count))
    return out


def sum_steps(steps: list[list[OpCost]]) -> list[OpCost]:
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
