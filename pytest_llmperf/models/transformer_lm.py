"""The CS336 Transformer LM (references 001/002), in one short file.

Same architecture as stanford-cs336 assignment2-systems ``cs336_basics/model.py``:
pre-norm blocks, RMSNorm (eps 1e-5, computed in float32), SwiGLU feed-forward
``w2(silu(w1 x) * w3 x)``, RoPE (theta 10000) on queries and keys, causal
multi-head attention, an untied LM head, and no biases anywhere. Weights are
random (truncated normal, as in the handout): speed does not depend on them.

Attention uses ``F.scaled_dot_product_attention(is_causal=True)`` where the
handout spells out softmax(QK^T / sqrt(d)) with a mask; the result is the same,
the memory is not (no (T x T) score matrix is kept), so fewer cells run out of
memory than in 002. The documented sizes are ``roofline/shapes.py``'s CS336 table,
the one the estimator prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..roofline.shapes import CS336_SIZES, CS336_VOCAB, shape_from_config
from . import on_device

#: The five documented sizes, d_model, d_ff, num_layers, num_heads: the estimator's table.
SIZES = CS336_SIZES

#: Smoke-tier stand-ins (``"tiny-<size>"``): same architecture at tiny dims, ordered
#: like the real sizes (parameters and FLOPs grow small -> 2.7B) so a sweep still ranks them.
TINY_SIZES: dict[str, tuple[int, int, int, int]] = {
    "small": (32, 128, 2, 2),
    "medium": (48, 192, 2, 3),
    "large": (64, 256, 3, 4),
    "xl": (80, 320, 4, 5),
    "2.7B": (128, 512, 3, 8),
}
TINY_VOCAB_SIZE = 512


@dataclass(frozen=True)
class TransformerLMConfig:
    vocab_size: int
    context_length: int
    d_model: int
    d_ff: int
    num_layers: int
    num_heads: int
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError("d_model / num_heads must be an even integer (RoPE rotates pairs)")

    @classmethod
    def from_name(cls, name: str, context_length: int, **overrides: Any) -> TransformerLMConfig:
        """A documented size (``"small"`` ... ``"2.7B"``) or its smoke stand-in
        (``"tiny-small"`` ...) at ``context_length``; ``overrides`` replace fields."""
        tiny = name.removeprefix("tiny-")
        if name in SIZES:
            vocab_size, dims = CS336_VOCAB, SIZES[name]
        elif name != tiny and tiny in TINY_SIZES:
            vocab_size, dims = TINY_VOCAB_SIZE, TINY_SIZES[tiny]
        else:
            known = [*SIZES, *(f"tiny-{size}" for size in TINY_SIZES)]
            raise ValueError(f"unknown TransformerLM config {name!r}; known: {known}")
        d_model, d_ff, num_layers, num_heads = dims
        fields = dict(vocab_size=vocab_size, context_length=context_length, d_model=d_model,
                      d_ff=d_ff, num_layers=num_layers, num_heads=num_heads)  # fmt: skip
        return cls(**{**fields, **overrides})


def _trunc_normal_(w: torch.Tensor, std: float) -> torch.Tensor:
    return nn.init.trunc_normal_(w, mean=0.0, std=std, a=-3 * std, b=3 * std)


class Linear(nn.Linear):
    """Bias-free linear layer with the handout's init: std = sqrt(2 / (d_in + d_out))."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__(d_in, d_out, bias=False)

    def reset_parameters(self) -> None:
        _trunc_normal_(self.weight, math.sqrt(2.0 / (self.in_features + self.out_features)))


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32, returned in x's dtype."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x).to(in_dtype)


class RotaryEmbedding(nn.Module):
    """RoPE on adjacent pairs (x[2i], x[2i+1]), angle = pos / theta^(2i/d)."""

    def __init__(self, head_dim: int, context_length: int, theta: float):
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(context_length, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)  # (T, head_dim / 2)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, H, T, head_dim)
        T = x.shape[-2]
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q_proj = Linear(cfg.d_model, cfg.d_model)
        self.k_proj = Linear(cfg.d_model, cfg.d_model)
        self.v_proj = Linear(cfg.d_model, cfg.d_model)
        self.output_proj = Linear(cfg.d_model, cfg.d_model)
        self.rope = RotaryEmbedding(
            cfg.d_model // cfg.num_heads, cfg.context_length, cfg.rope_theta
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.num_heads, D // self.num_heads).transpose(1, 2)

        q = self.rope(heads(self.q_proj(x)))
        k = self.rope(heads(self.k_proj(x)))
        v = heads(self.v_proj(x))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.output_proj(y.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1 = Linear(d_model, d_ff)
        self.w2 = Linear(d_ff, d_model)
        self.w3 = Linear(d_model, d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        self.ln1 = RMSNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = RMSNorm(cfg.d_model)
        self.ffn = SwiGLU(cfg.d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class TransformerLM(nn.Module):
    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        self.config = cfg
        self.token_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        _trunc_normal_(self.token_embeddings.weight, 1.0)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.num_layers))
        self.ln_final = RMSNorm(cfg.d_model)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> logits (B, T, vocab_size)."""
        if idx.shape[-1] > self.config.context_length:
            raise ValueError(f"sequence of {idx.shape[-1]} > context_length")
        x = self.token_embeddings(idx)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.ln_final(x))


def num_parameters(config: TransformerLMConfig) -> int:
    """Parameters of the model ``build`` makes: embeddings + blocks + final norm + untied head."""
    return shape_from_config(config).num_parameters()


def flops(
    config: TransformerLMConfig, batch_size: int, train: bool = False, causal: bool = True
) -> int:
    """Matmul FLOPs of one step over ``batch_size`` x ``context_length`` tokens.

    Linear layers 2 x weights per token; attention 4 x T x d per token and layer
    (QK^T and AV), halved when only the causal half is computed; a backward
    pass costs twice the forward. Norms, softmax and the optimizer are ignored.
    """
    d, T = config.d_model, config.context_length
    weights = config.num_layers * (4 * d * d + 3 * d * config.d_ff) + d * config.vocab_size
    attention = config.num_layers * 4 * T * d // (2 if causal else 1)
    forward = batch_size * T * (2 * weights + attention)
    return 3 * forward if train else forward


def build(
    config: TransformerLMConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> TransformerLM:
    """A randomly initialised model (torch seeded with ``seed``), created directly on
    ``device`` in ``dtype`` (None: torch's default, float32)."""
    torch.manual_seed(seed)
    with on_device(device, dtype):
        return TransformerLM(config)


def random_batch(
    config: TransformerLMConfig, batch_size: int, device: torch.device | str = "cpu", seed: int = 0
) -> torch.Tensor:
    """Random token ids of shape (batch_size, context_length + 1): inputs plus shifted targets."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (batch_size, config.context_length + 1), generator=g)
    return ids.to(device)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW as in 002: lr 1e-3, weight decay 1e-2."""
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)


def forward_step(model: TransformerLM, batch: torch.Tensor) -> torch.Tensor:
    """One inference forward pass (no autograd graph) over ``batch[:, :-1]``; returns the logits."""
    with torch.no_grad():
        return model(batch[:, :-1])


def train_step(
    model: TransformerLM, optimizer: torch.optim.Optimizer, batch: torch.Tensor
) -> torch.Tensor:
    """Forward, cross-entropy against the next token, backward and one optimizer step; returns the loss."""
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
