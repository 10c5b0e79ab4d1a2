"""The one table of model shapes: what the estimator prices and the suite's models build.

Torch-free, so the estimator and the CLI can use it without torch. The models
(``pytest_llmperf/models``) read their documented sizes from here, so a size is
typed once: the estimate of ``cs336-small`` and the model built as ``"small"``
cannot drift apart.

Families:

* ``cs336``: the CS336 Transformer LM: RMSNorm, RoPE, SwiGLU, untied head, no biases.
* ``llama``: Llama / gpt-fast: as cs336 plus grouped-query attention (``n_kv_heads``).
  The AICrossSim CLM models are this family (see ``CLM_SOURCE``).
* ``opt``: OPT: LayerNorm, ReLU MLP, biases everywhere, learned positions, tied head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAMILIES = ("cs336", "llama", "opt")

#: OPT's vocabulary and learned position table (every OPT size shares them).
OPT_VOCAB = 50272
OPT_MAX_POSITIONS = 2048


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
    max_positions: int = OPT_MAX_POSITIONS  # OPT's learned position table
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
        """Analytic parameter count; the models' ``num_parameters`` answer with it."""
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


#: The CS336 Transformer LM's vocabulary (references 001/002).
CS336_VOCAB = 10_000

#: The five documented CS336 sizes: d_model, d_ff, num_layers, num_heads (reference
#: README, 001/002). ``models/transformer_lm.py`` builds them under these names.
CS336_SIZES: dict[str, tuple[int, int, int, int]] = {
    "small": (768, 3072, 12, 12),
    "medium": (1024, 4096, 24, 16),
    "large": (1280, 5120, 36, 20),
    "xl": (1600, 6400, 48, 25),
    "2.7B": (2560, 10240, 32, 32),
}


def _cs336(size: str) -> ModelShape:
    d_model, d_ff, num_layers, num_heads = CS336_SIZES[size]
    key = size.lower()
    return ModelShape(f"cs336-{key}", "cs336", CS336_VOCAB, d_model, num_layers, num_heads,
                      d_ff, description=f"CS336 Transformer LM {key}")  # fmt: skip


# fmt: off
_NAMED = (
    #          name            family   vocab      d_model layers heads  d_ff
    ModelShape("opt-1.3b",     "opt",   OPT_VOCAB, 2048,   24,    32,    8192,
               tied_embeddings=True, description="facebook/opt-1.3b"),
    ModelShape("opt-6.7b",     "opt",   OPT_VOCAB, 4096,   32,    32,    16384,
               tied_embeddings=True, description="facebook/opt-6.7b"),
    _clm("clm-60m", 384, 22, 6, 2),
    _clm("clm-200m", 768, 24, 12, 4),
    _clm("clm-400m", 960, 30, 15, 5),
    _clm("clm-1.1b", 1536, 32, 24, 8),
    #          name            family   vocab      d_model layers heads  d_ff   kv_heads
    ModelShape("llama-2-7b",   "llama", 32000,     4096,   32,    32,    11008, 32,
               description="Llama-2-7b-chat-hf"),
    ModelShape("llama-3-8b",   "llama", 128256,    4096,   32,    32,    14336, 8,
               description="Meta-Llama-3-8B"),
    ModelShape("llama-3.1-8b", "llama", 128256,    4096,   32,    32,    14336, 8,
               description="Meta-Llama-3.1-8B"),
    *(_cs336(size) for size in CS336_SIZES),
)
# fmt: on

#: Every named shape, by its canonical name (``get_model`` also takes aliases).
MODELS: dict[str, ModelShape] = {s.name: s for s in _NAMED}

_ALIASES = {
    "llama-2-7b-chat-hf": "llama-2-7b",
    "llama-2-7b-chat": "llama-2-7b",
    "meta-llama-3-8b": "llama-3-8b",
    "meta-llama-3.1-8b": "llama-3.1-8b",
    **{size.lower(): f"cs336-{size.lower()}" for size in CS336_SIZES},
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
    (``TransformerLMConfig``, ``LlamaConfig``, ``OPTConfig``), read by attribute names
    so that this module needs no torch."""
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
