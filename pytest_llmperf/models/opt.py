"""OPT decoder and two FlexGen-style batched-generation schedules (reference 004).

The model follows Hugging Face's ``OPTForCausalLM`` for the sizes that matter here
(OPT-1.3B and up, where ``word_embed_proj_dim == hidden``): token embedding plus a
learned position embedding whose indices are offset by 2, pre-LayerNorm decoder
layers with biased q/k/v/out projections and a ReLU MLP, a final LayerNorm and an
LM head tied to the token embedding. Weights are random (speed does not depend on
them); fp16 on accelerators, fp32 on CPU unless a dtype is given.

Generation is FlexGen's "everything resident" batched generation: ``8 x N`` prompts
of length ``P`` are split into ``N`` GPU micro-batches of ``gpu_batch_size`` (8)
sequences, and ``gen_len`` (32) tokens are generated greedily. Like FlexGen the
model is seen as a list of ``2 L + 2`` "layers": InputEmbed, then SelfAttention and
MLP for each decoder layer, then OutputEmbed (final LayerNorm, LM head, argmax).
Two schedules of exactly the same computation are provided:

* :func:`generate_origin`: FlexGen's ``generation_loop_normal`` order
  (token i -> layer j -> micro-batch k), one micro-batch per kernel call.
* :func:`generate_diagonal`: a wavefront over the (lane, layer) grid with the
  micro-batches of a lane fused into one larger matmul (see its docstring).

Both return ``(tokens, prefill_seconds, decode_seconds)``; the phases are timed with
a device synchronization on either side, so the reference's formulas apply:
``prefill_thr = 8N*P / prefill``, ``decode_thr = 8N*(gen_len-1) / decode`` and
``total_thr = 8N*gen_len / (prefill + decode)``.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..roofline.shapes import OPT_MAX_POSITIONS, OPT_VOCAB, get_model, shape_from_config
from . import on_device

#: OPT's learned positional embedding is indexed with ``position + 2``.
POSITION_OFFSET = 2


@dataclass(frozen=True)
class OPTConfig:
    name: str
    num_layers: int
    hidden: int
    num_heads: int
    ffn: int
    vocab_size: int = OPT_VOCAB
    max_position_embeddings: int = OPT_MAX_POSITIONS
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.hidden % self.num_heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by num_heads {self.num_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> OPTConfig:
        """A named config (the released sizes, or a tiny one); ``overrides`` replace fields."""
        try:
            config = CONFIGS[name]
        except KeyError:
            raise ValueError(f"unknown OPT config {name!r}; known: {sorted(CONFIGS)}") from None
        return replace(config, **overrides) if overrides else config


def _named(name: str) -> OPTConfig:
    """A released size, dimensions from the estimator's shape table (``roofline/shapes.py``)."""
    s = get_model(name)
    return OPTConfig(name, s.n_layers, s.d_model, s.n_heads, s.d_ff, s.vocab_size, s.max_positions)


CONFIGS: dict[str, OPTConfig] = {
    "opt-1.3b": _named("opt-1.3b"),
    "opt-6.7b": _named("opt-6.7b"),
    "opt-125m": OPTConfig("opt-125m", 12, 768, 12, 3072),
    # Tiny variants of the same architecture for smoke runs and unit tests.
    "opt-smoke": OPTConfig("opt-smoke", 2, 128, 4, 512, vocab_size=2048),
    "opt-tiny": OPTConfig("opt-tiny", 2, 64, 4, 256, vocab_size=512, max_position_embeddings=256),
}


def default_dtype(device: torch.device | str) -> torch.dtype:
    """fp16 on accelerators (as FlexGen runs OPT), fp32 on CPU."""
    return torch.float32 if torch.device(device).type == "cpu" else torch.float16


def kv_cache_bytes(
    batch: int, prompt_len: int, gen_len: int, layers: int, hidden: int, bytes_per: int
) -> int:
    """KV-cache size of a full generation: ``2 x B x (P + gen_len) x layers x hidden x bytes``.

    ``batch`` is the total number of sequences (``gpu_batch_size x N``). For OPT-1.3B
    at fp16 with B = 8 x 32 and P = 1024 this is 49.5 GiB: reference 004's OOM cell.
    """
    return 2 * batch * (prompt_len + gen_len) * layers * hidden * bytes_per


# --------------------------------------------------------------------------- model


class OPTDecoderLayer(nn.Module):
    def __init__(self, cfg: OPTConfig) -> None:
        super().__init__()
        d, eps = cfg.hidden, cfg.layer_norm_eps
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, cfg.ffn)
        self.fc2 = nn.Linear(cfg.ffn, d)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, s, _ = t.shape
        return t.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

    def attention(
        self,
        x: torch.Tensor,
        k_cache: torch.Tensor | None = None,
        v_cache: torch.Tensor | None = None,
        pos: int = 0,
    ) -> torch.Tensor:
        """Pre-LN self-attention with residual.

        Without a cache: full causal attention over ``x``. With one (views of shape
        ``(rows, heads, max_len, head_dim)`` for exactly the rows of ``x``): the new
        keys/values are written at ``pos`` and attention covers ``[0, pos + T)``.
        Cached calls are either a prefill (``pos == 0``) or single-token decode.
        """
        b, s, d = x.shape
        h = self.self_attn_layer_norm(x)
        q = self._heads(self.q_proj(h))
        k = self._heads(self.k_proj(h))
        v = self._heads(self.v_proj(h))
        if k_cache is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if pos != 0 and s != 1:
                raise ValueError("cached attention is a prefill (pos 0) or a 1-token decode")
            end = pos + s
            k_cache[:, :, pos:end] = k
            v_cache[:, :, pos:end] = v
            o = F.scaled_dot_product_attention(
                q, k_cache[:, :, :end], v_cache[:, :, :end], is_causal=s > 1
            )
        o = o.transpose(1, 2).reshape(b, s, d)
        return x + self.out_proj(o)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.relu(self.fc1(self.final_layer_norm(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(x))


class OPT(nn.Module):
    """OPT decoder with a tied LM head; ``forward(tokens)`` gives full causal logits.

    ``make_layer`` builds each decoder layer (default ``OPTDecoderLayer``): the
    tensor-parallel model (``tensor_parallel.py``) is this model with shards for layers.
    """

    def __init__(
        self, config: OPTConfig, make_layer: Callable[[], nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden)
        self.embed_positions = nn.Embedding(
            config.max_position_embeddings + POSITION_OFFSET, config.hidden
        )
        make_layer = make_layer or (lambda: OPTDecoderLayer(config))
        self.layers = nn.ModuleList(make_layer() for _ in range(config.num_layers))
        self.final_layer_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Hugging Face's OPT init from a generator of its own (torch's RNG is left alone):
        normal(0, init_std) weights, zero biases, LayerNorms at identity."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        for name, p in self.named_parameters():
            if "layer_norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, self.config.init_std, generator=g)

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    def embed(self, tokens: torch.Tensor, pos: int = 0) -> torch.Tensor:
        s = tokens.shape[1]
        if pos + s > self.config.max_position_embeddings:
            raise ValueError(
                f"position {pos + s} exceeds max_position_embeddings {self.config.max_position_embeddings}"
            )
        positions = torch.arange(
            pos + POSITION_OFFSET, pos + s + POSITION_OFFSET, device=tokens.device
        )
        return self.embed_tokens(tokens) + self.embed_positions(positions)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.final_layer_norm(x), self.embed_tokens.weight)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.logits(x)

    @torch.no_grad()
    def forward_cached(self, tokens: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
        """Logits of ``tokens`` at positions ``pos..`` using and filling ``cache``."""
        rows = slice(0, tokens.shape[0])
        x = self.embed(tokens, pos)
        for i, layer in enumerate(self.layers):
            x = layer.attention(x, cache.k[i][rows], cache.v[i][rows], pos)
            x = layer.mlp(x)
        return self.logits(x)


def build(
    config: OPTConfig,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> OPT:
    """A randomly initialised OPT without gradients, created directly on ``device`` in
    ``dtype`` (None: ``default_dtype(device)``); ``"meta"`` allocates nothing."""
    device = torch.device(device)
    with on_device(device, dtype or default_dtype(device)):
        model = OPT(config)
    model.requires_grad_(False)
    if device.type != "meta":
        model.init_weights(seed)
    return model


def num_parameters(config: OPTConfig) -> int:
    """Parameters of the model ``build`` makes (tied LM head counted once)."""
    return shape_from_config(config).num_parameters()


class KVCache:
    """One K and one V buffer per decoder layer, shape ``(B, heads, P + gen_len, head_dim)``.

    Micro-batch ``k`` owns rows ``[k * gpu_batch_size, (k + 1) * gpu_batch_size)`` of
    every buffer: its own cache, laid out so a run of consecutive micro-batches is one
    contiguous slice. Both schedules allocate it identically (exactly
    :func:`kv_cache_bytes`), so their peak memories differ only by activations.
    """

    def __init__(self, model: OPT, batch: int, max_len: int) -> None:
        cfg = model.config
        shape = (batch, cfg.num_heads, max_len, cfg.head_dim)
        kw = {"device": model.device, "dtype": model.dtype}
        self.k = [torch.empty(shape, **kw) for _ in range(cfg.num_layers)]
        self.v = [torch.empty(shape, **kw) for _ in range(cfg.num_layers)]


# ------------------------------------------------------------------ generation


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type != "cpu" and hasattr(torch, "accelerator"):
        torch.accelerator.synchronize()


class _Generation:
    """State shared by both schedules: prompts, KV cache, output tokens, and the
    FlexGen layer list ``[InputEmbed, (SelfAttention, MLP) x L, OutputEmbed]``."""

    def __init__(
        self, model: OPT, input_ids: torch.Tensor, gen_len: int, gpu_batch_size: int
    ) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, prompt_len), got {tuple(input_ids.shape)}")
        total, prompt_len = input_ids.shape
        if gen_len < 1:
            raise ValueError("gen_len must be >= 1")
        if total % gpu_batch_size:
            raise ValueError(f"{total} prompts do not split into micro-batches of {gpu_batch_size}")
        self.model = model
        self.input_ids = input_ids.to(model.device)
        self.bs = gpu_batch_size
        self.num_batches = total // gpu_batch_size
        self.prompt_len = prompt_len
        self.gen_len = gen_len
        self.num_cells = 2 * model.config.num_layers + 2
        self.cache = KVCache(model, total, prompt_len + gen_len)
        self.tokens = torch.empty((total, gen_len), dtype=torch.long, device=model.device)

    def run_cell(
        self, j: int, step: int, r0: int, r1: int, x: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Compute FlexGen layer ``j`` of token ``step`` for rows ``[r0, r1)``.

        ``x`` is the rows' hidden state (None for InputEmbed); returns the new hidden
        state (None after OutputEmbed, which writes the greedy tokens instead).
        """
        model = self.model
        pos = 0 if step == 0 else self.prompt_len + step - 1
        if j == 0:
            src = self.input_ids[r0:r1] if step == 0 else self.tokens[r0:r1, step - 1 : step]
            return model.embed(src, pos)
        if j == self.num_cells - 1:
            self.tokens[r0:r1, step] = model.logits(x[:, -1]).argmax(dim=-1)
            return None
        i, is_mlp = divmod(j - 1, 2)
        layer = model.layers[i]
        if is_mlp:
            return layer.mlp(x)
        return layer.attention(x, self.cache.k[i][r0:r1], self.cache.v[i][r0:r1], pos)


def _timed(device: torch.device, run: Callable[[], None]) -> float:
    """Seconds of ``run()`` with the device synchronized on either side (one phase)."""
    _sync(device)
    t0 = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - t0


@torch.no_grad()
def generate_origin(
    model: OPT,
    input_ids: torch.Tensor,
    gen_len: int = 32,
    gpu_batch_size: int = 8,
    callback: Callable[[], Any] | None = None,
) -> tuple[torch.Tensor, float, float]:
    """FlexGen's loop order: for token i, for layer j, for micro-batch k: layer j of batch k.

    Every kernel sees one micro-batch (``gpu_batch_size`` rows), so in decode each of
    the ``N`` micro-batches re-reads every weight matrix. Returns the generated tokens
    ``(8N, gen_len)``, prefill seconds (token 0: the prompt pass and the first
    sampled token) and decode seconds (tokens 1..gen_len-1). ``callback()`` runs
    once each token is out for every sequence (``llmperf.tick``).
    """
    g = _Generation(model, input_ids, gen_len, gpu_batch_size)
    bs, n = g.bs, g.num_batches

    def run(steps: range) -> None:
        for i in steps:
            hidden: list[torch.Tensor | None] = [None] * n
            for j in range(g.num_cells):
                for k in range(n):
                    hidden[k] = g.run_cell(j, i, k * bs, (k + 1) * bs, hidden[k])
            if callback is not None:
                callback()

    prefill_s = _timed(model.device, lambda: run(range(0, 1)))
    decode_s = _timed(model.device, lambda: run(range(1, gen_len)))
    return g.tokens, prefill_s, decode_s


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``n`` items in ``parts`` contiguous, near-equal runs (like numpy.array_split)."""
    parts = max(1, min(parts, n))
    q, r = divmod(n, parts)
    out, start = [], 0
    for p in range(parts):
        size = q + (1 if p < r else 0)
        out.append((start, start + size))
        start += size
    return out


@torch.no_grad()
def generate_diagonal(
    model: OPT,
    input_ids: torch.Tensor,
    gen_len: int = 32,
    gpu_batch_size: int = 8,
    num_lanes: int = 2,
    max_fused_rows: int = 4096,
    callback: Callable[[], Any] | None = None,
) -> tuple[torch.Tensor, float, float]:
    """Diagonal (wavefront) schedule of the same generation as :func:`generate_origin`.

    The ``N`` micro-batches are split into ``num_lanes`` lanes of consecutive
    micro-batches. Within a lane, the micro-batches are *fused*: each FlexGen layer is
    one call over all of the lane's rows (``8 x N / lanes`` sequences), so a weight
    matrix is read once per lane instead of once per micro-batch, and attention runs
    over the lane's contiguous slice of the KV cache (each micro-batch still only
    attends to its own rows). To bound activation memory, a call covers at most
    ``max_fused_rows`` token rows: a long prefill is processed in chunks of whole
    micro-batches (at P >= 512 a chunk is one micro-batch, so prefill gains little;
    decode rows are 1 token each, so a decode call always covers the whole lane).

    Lanes run staggered along the anti-diagonals of the (lane, cell) grid, where a
    lane's cells are its (token, layer) steps in order: at wave ``w`` lane ``g``
    computes its cell ``w - g``, so consecutive kernels come from different lanes
    that are at different layers (FlexGen's diagonal idea: different micro-batches at
    different layers in flight). A lane's token ``i + 1`` depends only on its own
    token ``i``, so the wavefront does not drain between tokens, only between the
    prefill and decode phases (which are timed separately). On CUDA each lane is
    issued on its own stream, so the small decode kernels of the lanes on a diagonal
    overlap on the GPU; on CPU the waves run in order and the gain is the fusion.

    The arithmetic per sequence is identical to origin's; with greedy decoding the
    tokens agree exactly up to the floating-point rounding of different matmul
    shapes (bitwise-equal logits are not promised; in float64 tokens match).

    ``callback()`` runs once each token is out for every sequence: when the last lane
    finishes the token's last cell (the others are ahead of it), after the current
    stream waits for the lanes' streams, so an event it records is not early.
    """
    g = _Generation(model, input_ids, gen_len, gpu_batch_size)
    lanes = _split(g.num_batches, num_lanes)
    streams = _lane_streams(model.device, len(lanes))
    phase_times = []
    for steps, seq in ((range(0, 1), g.prompt_len), (range(1, gen_len), 1)):
        per_chunk = max(1, max_fused_rows // (g.bs * seq))
        # chunks[lane] = row ranges fused into one call, each a run of whole micro-batches
        chunks = [_fused_rows(b0, b1, g.bs, per_chunk) for b0, b1 in lanes]
        cells = [(i, j) for i in steps for j in range(g.num_cells)]
        hidden: list[list[torch.Tensor | None]] = [[None] * len(c) for c in chunks]
        run = functools.partial(_run_waves, g, cells, chunks, hidden, streams, callback)
        phase_times.append(_timed(model.device, run))
    return g.tokens, phase_times[0], phase_times[1]


def _lane_streams(device: torch.device, num_lanes: int) -> list[Any]:
    """One CUDA stream per lane (after the current stream's work), else None per lane."""
    if device.type != "cuda" or num_lanes < 2:
        return [None] * num_lanes
    current = torch.cuda.current_stream(device)
    streams = [torch.cuda.Stream(device) for _ in range(num_lanes)]
    for s in streams:
        s.wait_stream(current)
    return streams


def _fused_rows(b0: int, b1: int, bs: int, per_chunk: int) -> list[tuple[int, int]]:
    """Row ranges of micro-batches ``[b0, b1)`` fused into calls of <= ``per_chunk`` of them."""
    runs = _split(b1 - b0, -(-(b1 - b0) // per_chunk))
    return [((b0 + a) * bs, (b0 + b) * bs) for a, b in runs]


def _run_waves(
    g: _Generation,
    cells: list[tuple[int, int]],
    chunks: list[list[tuple[int, int]]],
    hidden: list[list[torch.Tensor | None]],
    streams: list[Any],
    callback: Callable[[], Any] | None = None,
) -> None:
    """The wavefront: at wave ``w`` lane ``l`` computes its cell ``w - l`` (token, layer)."""
    last = len(chunks) - 1
    for wave in range(len(cells) + len(chunks) - 1):
        for lane, rows in enumerate(chunks):
            c = wave - lane
            if not 0 <= c < len(cells):
                continue
            i, j = cells[c]
            stream = streams[lane]
            ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
            with ctx:
                for q, (r0, r1) in enumerate(rows):
                    hidden[lane][q] = g.run_cell(j, i, r0, r1, hidden[lane][q])
            if callback is not None and lane == last and j == g.num_cells - 1:
                current = torch.cuda.current_stream() if stream is not None else None
                for s in streams if current is not None else ():
                    current.wait_stream(s)
                callback()


def random_prompts(
    num_batches: int,
    prompt_len: int,
    gpu_batch_size: int = 8,
    vocab_size: int = OPT_VOCAB,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """Random prompt token ids, shape ``(gpu_batch_size * num_batches, prompt_len)``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (gpu_batch_size * num_batches, prompt_len), generator=g)
    return ids.to(device)


def generation_throughputs(
    num_sequences: int, prompt_len: int, gen_len: int, prefill_s: float, decode_s: float
) -> dict[str, float]:
    """Reference 004's (FlexLLMGen flex_opt.py) throughput formulas, tokens/s."""
    total = prefill_s + decode_s
    return {
        "prefill_throughput": num_sequences * prompt_len / prefill_s if prefill_s > 0 else 0.0,
        "decode_throughput": num_sequences * (gen_len - 1) / decode_s if decode_s > 0 else 0.0,
        "throughput": num_sequences * gen_len / total if total > 0 else 0.0,
        "latency": total,
    }
