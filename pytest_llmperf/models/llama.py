"""A gpt-fast style Llama decoder with a static KV cache (reference 003).

One short file in the manner of pytorch-labs/gpt-fast ``model.py`` and the copy
torchao kept in ``torchao/_models/llama`` until v0.16: RMSNorm, RoPE (with the
Llama 3.1 frequency scaling), grouped-query attention over a preallocated KV
cache (bf16/fp32, or int8 with per-token absmax scales), SwiGLU feed-forward,
and ``generate`` = prefill + token-by-token decode with top-k multinomial
sampling.

Weights are random: decode speed does not depend on their values. ``build``
constructs the model directly on the target device in the target dtype, so a 7B
bf16 model never needs 27 GB of fp32 CPU memory first. The released models'
dimensions come from ``roofline/shapes.py``, the table the estimator prices.

The causal mask comes in two flavours, as in torchao's benchmark:

* default: an ``L x L`` boolean buffer (``L`` = cache length) indexed by the
  current positions; at L = 131072 that buffer alone is 17 GB;
* ``linear_causal_mask=True``: a ``(1, 1, T, L)`` mask built from the positions
  of the current step only (``(1, 1, 1, L)`` while decoding), which is why peak
  memory falls at large caches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..roofline.shapes import get_model, shape_from_config
from . import on_device

# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class LlamaConfig:
    name: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int
    vocab_size: int
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    block_size: int = 4096  # longest context the model was trained for
    # Llama 3.1 RoPE scaling: (factor, low_freq_factor, high_freq_factor, original_max_pos)
    rope_scaling: tuple[float, float, float, int] | None = None

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> LlamaConfig:
        """A named config: the real shapes, or ``"tiny-<name>"`` for the smoke tier;
        ``overrides`` replace fields."""
        try:
            config = CONFIGS[name]
        except KeyError:
            raise ValueError(f"unknown Llama config {name!r}; known: {sorted(CONFIGS)}") from None
        return replace(config, **overrides) if overrides else config


def _named(name: str, **knobs: Any) -> LlamaConfig:
    """The config of a released model: dimensions from the estimator's shape table
    (``roofline/shapes.py``), the rest (RoPE, context) from ``knobs``."""
    shape = get_model(name)
    return LlamaConfig(name=name, dim=shape.d_model, n_layers=shape.n_layers,
                       n_heads=shape.n_heads, n_kv_heads=shape.kv_heads,
                       intermediate_size=shape.d_ff, vocab_size=shape.vocab_size,
                       **knobs)  # fmt: skip


_LLAMA2_7B = _named("Llama-2-7b-chat-hf")
_LLAMA3_8B = _named("Meta-Llama-3-8B", rope_base=500000.0, block_size=8192)
_LLAMA31_8B = _named(
    "Meta-Llama-3.1-8B",
    rope_base=500000.0,
    block_size=131072,
    rope_scaling=(8.0, 1.0, 4.0, 8192),
)


def _tiny(cfg: LlamaConfig) -> LlamaConfig:
    """Same architecture (GQA ratio, rope base/scaling), shapes small enough for a CPU.

    Dimensions stay multiples of 64 so group-wise weight quantization applies.
    """
    kv_ratio = cfg.n_heads // cfg.n_kv_heads
    return replace(
        cfg,
        name=f"tiny-{cfg.name}",
        dim=128,
        n_layers=2,
        n_heads=4,
        n_kv_heads=max(1, 4 // kv_ratio),
        intermediate_size=384 if kv_ratio == 1 else 448,
        vocab_size=2048 if cfg.vocab_size < 100_000 else 4096,
    )


CONFIGS: dict[str, LlamaConfig] = {c.name: c for c in (_LLAMA2_7B, _LLAMA3_8B, _LLAMA31_8B)} | {
    f"tiny-{c.name}": _tiny(c) for c in (_LLAMA2_7B, _LLAMA3_8B, _LLAMA31_8B)
}


# --------------------------------------------------------------------------- KV caches


class KVCache(nn.Module):
    """Static cache of shape (batch, kv_heads, max_seq_length, head_dim)."""

    def __init__(
        self,
        max_batch_size: int,
        max_seq_length: int,
        n_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        self._allocate((max_batch_size, n_heads, max_seq_length, head_dim), dtype)

    def _allocate(self, shape: tuple[int, int, int, int], dtype: torch.dtype) -> None:
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype))
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype))

    def update(self, input_pos: Tensor, k_val: Tensor, v_val: Tensor) -> tuple[Tensor, Tensor]:
        self.k_cache[:, :, input_pos] = k_val
        self.v_cache[:, :, input_pos] = v_val
        return self.k_cache, self.v_cache


def quantize_per_token_absmax(t: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 over the last dim: ``t ~= q * scale`` (torchao's per-token absmax)."""
    scale = t.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-5) / 127.0
    q = torch.round(t.float() / scale).clamp(-127, 127).to(torch.int8)
    return q, scale.to(t.dtype)


class Int8KVCache(KVCache):
    """int8 cache with one scale per (batch, head, position), like torchao's
    ``AffineQuantizedKVCache``. ``update`` dequantizes the whole cache into a
    temporary of the model dtype (the cost that makes it slower) and writes the
    current step's keys/values into it unquantized."""

    def _allocate(self, shape: tuple[int, int, int, int], dtype: torch.dtype) -> None:
        super()._allocate(shape, torch.int8)
        scale_shape = (*shape[:3], 1)  # the scales are in the model dtype
        self.register_buffer("k_scale", torch.ones(scale_shape, dtype=dtype))
        self.register_buffer("v_scale", torch.ones(scale_shape, dtype=dtype))

    def update(self, input_pos: Tensor, k_val: Tensor, v_val: Tensor) -> tuple[Tensor, Tensor]:
        qk, k_scale = quantize_per_token_absmax(k_val)
        qv, v_scale = quantize_per_token_absmax(v_val)
        self.k_cache[:, :, input_pos] = qk
        self.k_scale[:, :, input_pos] = k_scale
        self.v_cache[:, :, input_pos] = qv
        self.v_scale[:, :, input_pos] = v_scale
        k_out = self.k_cache * self.k_scale
        v_out = self.v_cache * self.v_scale
        k_out[:, :, input_pos] = k_val
        v_out[:, :, input_pos] = v_val
        return k_out, v_out


# --------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return out.type_as(x) * self.weight


def _scale_rope(freqs: Tensor, scaling: tuple[float, float, float, int]) -> Tensor:
    """Llama 3.1: stretch low frequencies by ``factor``, blend the middle band."""
    factor, low_ff, high_ff, old_len = scaling
    wavelen = 2 * math.pi / freqs
    smooth = ((old_len / wavelen - low_ff) / (high_ff - low_ff)).clamp(0, 1)
    blended = (1 - smooth) * freqs / factor + smooth * freqs
    return torch.where(
        wavelen < old_len / high_ff,
        freqs,
        torch.where(wavelen > old_len / low_ff, freqs / factor, blended),
    )


def precompute_freqs_cis(
    cfg: LlamaConfig, seq_len: int, dtype: torch.dtype = torch.bfloat16
) -> Tensor:
    """(seq_len, head_dim // 2, 2) cos/sin table, as gpt-fast stores it."""
    half = cfg.head_dim // 2
    freqs = 1.0 / (cfg.rope_base ** (torch.arange(0, half, dtype=torch.float32) * 2 / cfg.head_dim))
    if cfg.rope_scaling is not None:
        freqs = _scale_rope(freqs, cfg.rope_scaling)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), freqs)
    return torch.stack([angles.cos(), angles.sin()], dim=-1).to(dtype)


def apply_rotary_emb(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """x: (B, T, H, D); freqs_cis: (T, D/2, 2)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    fc = freqs_cis.view(1, xs.size(1), 1, xs.size(3), 2).float()
    out = torch.stack(
        [
            xs[..., 0] * fc[..., 0] - xs[..., 1] * fc[..., 1],
            xs[..., 1] * fc[..., 0] + xs[..., 0] * fc[..., 1],
        ],
        dim=-1,
    )
    return out.flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        kv_dim = cfg.n_kv_heads * cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, cfg.dim + 2 * kv_dim, bias=False)  # fused, as gpt-fast
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.kv_cache: KVCache | None = None  # or its Int8KVCache subclass

    def forward(
        self, x: Tensor, freqs_cis: Tensor, mask: Tensor | None, input_pos: Tensor | None
    ) -> Tensor:
        B, T, _ = x.shape
        kv_dim = self.n_kv_heads * self.head_dim
        q, k, v = self.wqkv(x).split([self.n_heads * self.head_dim, kv_dim, kv_dim], dim=-1)
        q = apply_rotary_emb(q.view(B, T, self.n_heads, self.head_dim), freqs_cis)
        k = apply_rotary_emb(k.view(B, T, self.n_kv_heads, self.head_dim), freqs_cis)
        q, k, v = (
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.view(B, T, -1, self.head_dim).transpose(1, 2),
        )
        if input_pos is not None and self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
        # GQA by repetition, as torchao's benchmarked model did (its memory included)
        rep = self.n_heads // self.n_kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(
        self, x: Tensor, freqs_cis: Tensor, mask: Tensor | None, input_pos: Tensor | None
    ) -> Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis, mask, input_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.config = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # Plain attributes (not buffers), as in gpt-fast: set by setup_caches.
        self.freqs_cis: Tensor | None = None
        self.causal_mask: Tensor | None = None
        self.max_batch_size = self.max_seq_length = -1
        self.kv_cache_quantization = self.linear_causal_mask = False

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    def setup_caches(
        self,
        max_batch_size: int,
        max_seq_length: int,
        *,
        kv_cache_quantization: bool = False,
        linear_causal_mask: bool = False,
    ) -> None:
        """Allocate the static caches (a no-op when the current ones already fit)."""
        opts = (kv_cache_quantization, linear_causal_mask)
        if (
            self.max_seq_length >= max_seq_length
            and self.max_batch_size >= max_batch_size
            and opts == (self.kv_cache_quantization, self.linear_causal_mask)
        ):
            return
        cfg, device, dtype = self.config, self.norm.weight.device, self.dtype
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        self.kv_cache_quantization, self.linear_causal_mask = opts
        cache_cls = Int8KVCache if kv_cache_quantization else KVCache
        for layer in self.layers:
            layer.attention.kv_cache = None  # free the old cache before allocating
            with torch.device(device):  # allocate in place, never via host memory
                layer.attention.kv_cache = cache_cls(
                    max_batch_size, max_seq_length, cfg.n_kv_heads, cfg.head_dim, dtype
                )
        self.freqs_cis = precompute_freqs_cis(cfg, max_seq_length, dtype).to(device)
        self.causal_mask = None
        if not linear_causal_mask:
            self.causal_mask = torch.ones(
                max_seq_length, max_seq_length, dtype=torch.bool, device=device
            ).tril_()  # in place: one L x L buffer at the peak, not two

    def free_caches(self) -> None:
        """Drop the KV caches and masks (the next ``setup_caches`` allocates afresh)."""
        for layer in self.layers:
            layer.attention.kv_cache = None
        self.freqs_cis = self.causal_mask = None
        self.max_batch_size = self.max_seq_length = -1

    def forward(self, idx: Tensor, input_pos: Tensor | None = None) -> Tensor:
        """Logits (B, T, vocab). With ``input_pos`` the KV cache is used and updated;
        without it this is a plain causal forward over ``idx`` alone."""
        if input_pos is None:
            freqs = precompute_freqs_cis(self.config, idx.size(1), self.dtype).to(idx.device)
            mask = None
        else:
            assert self.freqs_cis is not None, "call setup_caches() first"
            freqs = self.freqs_cis[input_pos]
            if self.linear_causal_mask:  # (1, 1, T, L): only the current positions' rows
                cols = torch.arange(self.max_seq_length, device=idx.device)
                mask = (cols[None, :] <= input_pos[:, None])[None, None]
            else:  # rows of the L x L buffer
                mask = self.causal_mask[None, None, input_pos]
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x, freqs, mask, input_pos)
        return self.output(self.norm(x))


def build(
    config: LlamaConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Llama:
    """A randomly initialised Llama (torch seeded with ``seed``) in eval mode without
    gradients, created directly on ``device`` in ``dtype`` (None: bfloat16, as gpt-fast
    runs it); ``"meta"`` allocates nothing."""
    torch.manual_seed(seed)
    with on_device(device, dtype or torch.bfloat16):
        model = Llama(config)
    return model.eval().requires_grad_(False)


def num_parameters(config: LlamaConfig) -> int:
    """Parameters of the model ``build`` makes (untied output projection)."""
    return shape_from_config(config).num_parameters()


# --------------------------------------------------------------------------- generation


def multinomial_sample_one_no_sync(probs: Tensor) -> Tensor:
    """Exponential-race sampling: same distribution as multinomial, no host sync."""
    q = torch.empty_like(probs).exponential_(1)
    return torch.argmax(probs / q, dim=-1, keepdim=True).to(torch.int)


def logits_to_probs(logits: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    logits = logits / max(temperature, 1e-5)
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = torch.where(logits < v[..., -1:], -float("inf"), logits)
    return F.softmax(logits, dim=-1)


def sample(logits: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    """Next token ids (B, 1) from the logits of the last position."""
    probs = logits_to_probs(logits[:, -1].float(), temperature, top_k)
    return multinomial_sample_one_no_sync(probs)


def prefill(model: Llama, x: Tensor, input_pos: Tensor, **sampling: Any) -> Tensor:
    return sample(model(x, input_pos), **sampling)


def decode_one_token(model: Llama, x: Tensor, input_pos: Tensor, **sampling: Any) -> Tensor:
    return sample(model(x, input_pos), **sampling)


def compiled_decode_one_token(device: torch.device | str) -> Callable[..., Tensor]:
    """gpt-fast's ``--compile``: the decode step through torch.compile (CUDA graphs on CUDA)."""
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else None
    return torch.compile(decode_one_token, mode=mode, fullgraph=True)


@torch.no_grad()
def random_prompt(model: Llama, length: int, device: torch.device | str) -> Tensor:
    """A fixed random prompt (seed 0) of ``length`` tokens: speed does not depend on it."""
    return torch.randint(
        0, model.config.vocab_size, (length,), generator=torch.Generator().manual_seed(0)
    ).to(device)


def generate(
    model: Llama,
    prompt: Tensor,
    max_new_tokens: int,
    *,
    top_k: int | None = 200,
    temperature: float = 0.8,
    cache_size: int | None = None,
    kv_cache_quantization: bool = False,
    linear_causal_mask: bool = False,
    decode_fn: Callable[..., Tensor] | None = None,
    callback: Callable[[Tensor], Any] | None = None,
) -> Tensor:
    """Prefill ``prompt`` (1-D, or (B, T)) and decode ``max_new_tokens`` one at a time.

    Returns (B, T + max_new_tokens) token ids. The caller fixes the seed.
    ``cache_size`` (default: prompt + new tokens) is the static KV cache length.
    ``callback(token)`` runs after each new token (gpt-fast's hook): ``llmperf.tick``
    marks it for TTFT and inter-token latency.
    """
    idx = prompt.view(1, -1) if prompt.dim() == 1 else prompt
    B, T = idx.shape
    seq_len = cache_size or T + max_new_tokens
    assert seq_len >= T + max_new_tokens, "cache_size too small for prompt + new tokens"
    model.setup_caches(
        B,
        seq_len,
        kv_cache_quantization=kv_cache_quantization,
        linear_causal_mask=linear_causal_mask,
    )
    decode = decode_fn or decode_one_token
    sampling = {"temperature": temperature, "top_k": top_k}
    out = torch.empty(B, T + max_new_tokens, dtype=idx.dtype, device=idx.device)
    out[:, :T] = idx
    input_pos = torch.arange(T, device=idx.device)
    tok = prefill(model, idx, input_pos, **sampling)
    out[:, T : T + 1] = tok
    if callback is not None:
        callback(tok)
    input_pos = torch.tensor([T], device=idx.device)
    for i in range(1, max_new_tokens):
        tok = decode(model, tok, input_pos, **sampling).clone()
        out[:, T + i : T + i + 1] = tok
        input_pos += 1
        if callback is not None:
            callback(tok)
    return out


# --------------------------------------------------------------------------- sizes


def _flat_nbytes(t: Tensor) -> int:
    """Bytes of a tensor; for tensor subclasses (torchao quantized weights) the sum
    over their inner tensors from ``__tensor_flatten__``."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (Tensor, nn.Parameter):
        inner, _ = t.__tensor_flatten__()
        return sum(_flat_nbytes(getattr(t, name)) for name in inner)
    return t.numel() * t.element_size()


def model_size_gb(model: nn.Module) -> float:
    """Reference 003's ``model_size``: bytes of all parameters and buffers, except
    embeddings and the KV caches (so it does not depend on ``cache_size``), with
    quantized tensors counted by their components, / 1e9.

    Llama-2-7B bf16 -> 13.21 GB, Meta-Llama-3-8B bf16 -> 15.01 GB (the output
    projection is counted, the token embedding is not).
    """
    total = 0
    for module in model.modules():
        if isinstance(module, (nn.Embedding, KVCache)):  # Int8KVCache is a KVCache
            continue
        for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
            total += _flat_nbytes(t)
    return total / 1e9


def cache_nbytes(model: Llama) -> dict[str, int]:
    """Analytic bytes of what ``setup_caches`` allocated: KV cache (+ scales) and mask."""
    kv = sum(
        b.numel() * b.element_size()
        for layer in model.layers
        if layer.attention.kv_cache is not None
        for b in layer.attention.kv_cache.buffers()
    )
    mask = 0 if model.causal_mask is None else model.causal_mask.numel()
    return {"kv_cache": kv, "causal_mask": mask, "total": kv + mask}
