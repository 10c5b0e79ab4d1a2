"""A small GPT, written the way a user writes one, with regressions to inject on purpose.

The model is nanoGPT's shape in one short file (config dataclass, causal
self-attention on ``F.scaled_dot_product_attention``, MLP, Block, GPT with
``forward(idx, targets=None)`` and a re-forwarding ``generate``), in bf16 like
an inference or mixed-precision model, at tiny sizes: a forward of 2 x 64 tokens
takes 16-20 ms on one AVX2 core without native bf16 (2 ms in fp32), a test a
fraction of a second. ``scripts/evidence/work_gate_trials.py`` gates it with
pytest-llmperf's work signature and commits, one at a time, the regressions a
user could commit, picked by the environment variable ``GPT_INJECT`` (read at
import time; unset or empty: the unchanged model):

* ``extra_matmul``: a LoRA adapter left active in the MLP (zero-initialised, so
  the outputs do not change; two more matmuls per block do);
* ``manual_attention``: nanoGPT's "slow attention" path, softmax(QK^T/sqrt(d))V
  with a causal mask, instead of ``scaled_dot_product_attention``;
* ``upcast``: attention run in float32 "for stability" inside the bf16 model
  (``.float()`` ... ``.to(dtype)``): the classic fp32 upcast of a bf16 model. The
  model is bf16 because that is where the upcast is a real temptation; an fp32
  model upcast to float64 is something nobody writes;
* ``sync_in_loop``: an end-of-text check in the decode loop, ``idx_next.item()``
  every step, a host-device sync per token on an accelerator;
* ``graph_break``: a debug ``print`` of each block's shape in ``Block.forward``,
  which torch.compile cannot put in a graph;
* ``recompile``: a Python call counter on the model (``self.calls += 1``, for
  "log every 100 calls"), which torch.compile guards on, so every call recompiles;
* ``keep_alive``: each MLP keeps its GELU activation on the module "for a
  sparsity probe" (``self.last_act = a``), alive past its layer and its call: a
  higher peak of live tensors, the same operators;
* ``probe_list``: the final hidden states kept in a module-level list for a debug
  probe, cleared at two items (a logging hook's buffer): alive after the call, the
  same operators and (outside a generation) the same peak inside it; eager only, so
  a compiled graph leaves it out, while the work pass, which runs the program as
  written, keeps it;
* ``leak``: the same list never cleared: it grows by one tensor per forward;
* ``slow_same_work``: a pure-Python busy loop in ``forward``, slower with exactly
  the same PyTorch work (what the work gate cannot see, by design);
* ``stall_every_32``: every 32nd decode step of ``generate`` and
  ``generate_stream`` runs its forward twice, so that step takes twice the normal
  step time: what a KV-cache reallocation or a recompilation every 32 tokens
  costs a real decode loop. An extra forward, not a sleep, so the stall scales
  with the machine's step time (and is as noisy as a step is) without
  calibration; the mean moves about 1/32 (3%), the inter-token p99 about 2x
  (``scripts/evidence/generation_trials.py``).

``generate(idx, n, callback=fn)`` calls ``fn(token)`` after each new token and
``generate_stream(idx, n)`` yields each new token as it is chosen: the two ways a
user marks tokens for ``llmperf.generation`` (``callback=llmperf.tick``, or a
generator).

Compile with ``torch.compile(model, backend="eager")`` (or ``"aot_eager"``) on the
CPU: dynamo's graphs, breaks and recompilations are the same as with inductor,
without inductor's C++ compile, which takes 40-100 s on a 2-core CPU.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

INJECT = os.environ.get("GPT_INJECT", "")
INJECTIONS = (
    "extra_matmul",
    "manual_attention",
    "upcast",
    "sync_in_loop",
    "graph_break",
    "recompile",
    "keep_alive",
    "probe_list",
    "leak",
    "slow_same_work",
    "stall_every_32",
)
#: ``stall_every_32``: which decode steps stall (every ``STALL_EVERY``-th, 1-based).
STALL_EVERY = 32
#: ``probe_list`` and ``leak``: the debug probe's buffer.
PROBE: list[torch.Tensor] = []
if INJECT and INJECT not in INJECTIONS:
    raise ValueError(f"GPT_INJECT={INJECT!r}: expected one of {', '.join(INJECTIONS)}")


@dataclass
class GPTConfig:
    """Tiny sizes, so that a test takes a fraction of a second on a shared CPU."""

    block_size: int = 64
    vocab_size: int = 512
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    bias: bool = False
    eos_token_id: int = 511
    dtype: torch.dtype = torch.bfloat16


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention on the fused SDPA kernel."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        if INJECT == "manual_attention":
            mask = torch.tril(torch.ones(config.block_size, config.block_size))
            self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if INJECT == "manual_attention":
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v
        elif INJECT == "upcast":
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
            y = y.to(x.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    """The 4x GELU feed-forward."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        if INJECT == "extra_matmul":
            rank = 16
            self.lora_a = nn.Linear(config.n_embd, rank, bias=False)
            self.lora_b = nn.Linear(rank, 4 * config.n_embd, bias=False)  # zeroed in GPT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if INJECT == "extra_matmul":
            h = h + self.lora_b(self.lora_a(x))
        a = self.gelu(h)
        if INJECT == "keep_alive":
            self.last_act = a  # "for the sparsity probe": alive until the next call
        return self.c_proj(a)


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if INJECT == "graph_break":
            print(f"block input {tuple(x.shape)}")
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT: token and position embeddings, blocks, tied LM head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": nn.Embedding(config.block_size, config.n_embd),
                "h": nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                "ln_f": nn.LayerNorm(config.n_embd, bias=config.bias),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        if INJECT == "recompile":
            self.calls = 0

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if INJECT == "extra_matmul" and isinstance(module, MLP):
            nn.init.zeros_(module.lora_b.weight)  # an adapter starts as a no-op

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if INJECT == "recompile":
            self.calls += 1
            if self.calls % 100 == 0:
                print(f"forward calls: {self.calls}")
        if INJECT == "slow_same_work" and not torch.compiler.is_compiling():
            _busy(0.002)  # eager only: dynamo cannot trace time.perf_counter (a graph break)
        b, t = idx.size()
        assert t <= self.config.block_size, f"sequence of {t} > block size {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if INJECT in ("probe_list", "leak") and not torch.compiler.is_compiling():
            if INJECT == "probe_list" and len(PROBE) >= 2:
                PROBE.clear()
            PROBE.append(x.detach())  # "for the probe": eager only (dynamo leaves it out)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1
            )
        else:
            logits = self.lm_head(x[:, [-1], :])  # inference: only the last position
            loss = None
        return logits, loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        callback: Callable[[torch.Tensor], Any] | None = None,
    ) -> torch.Tensor:
        """Greedy decoding by re-running the cropped context, as nanoGPT does;
        ``callback(token)`` after each new token (gpt-fast's hook), if given."""
        for idx_next in self.generate_stream(idx, max_new_tokens):
            idx = torch.cat((idx, idx_next), dim=1)
            if callback is not None:
                callback(idx_next)
        return idx

    @torch.no_grad()
    def generate_stream(self, idx: torch.Tensor, max_new_tokens: int) -> Iterator[torch.Tensor]:
        """``generate`` as a streaming server runs it: yields each new token (``(B, 1)``)
        as soon as it is chosen, so the caller sees every inter-token latency."""
        for step in range(max_new_tokens):
            idx_cond = (
                idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size :]
            )
            logits, _ = self(idx_cond)
            if INJECT == "stall_every_32" and (step + 1) % STALL_EVERY == 0:
                logits, _ = self(idx_cond)  # the step's forward again: the stall
            idx_next = torch.argmax(logits[:, -1, :], dim=-1, keepdim=True)
            idx = torch.cat((idx, idx_next), dim=1)
            yield idx_next
            if INJECT == "sync_in_loop" and idx_next[0].item() == self.config.eos_token_id:
                return


def _busy(seconds: float) -> None:
    """Spin in pure Python: time passes, PyTorch does nothing more."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def make_model(config: GPTConfig | None = None, seed: int = 0) -> GPT:
    """The model in its dtype, seeded, so every run builds the same weights."""
    config = config or GPTConfig()
    torch.manual_seed(seed)
    return GPT(config).to(config.dtype)


def make_batch(
    config: GPTConfig, batch: int = 4, length: int | None = None, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids and their next-token targets."""
    length = length or config.block_size
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, config.vocab_size, (batch, length + 1), generator=g)
    return data[:, :-1].contiguous(), data[:, 1:].contiguous()


def train_step(
    model: GPT, optimizer: torch.optim.Optimizer, idx: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """One optimizer step. The loss stays a tensor: no ``loss.item()``, no host sync."""
    _, loss = model(idx, targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def main() -> int:
    """A quick look at the speed; one thread, as the trials measure. Exits 1 when an output
    or the loss is not finite (the model the trials copy is broken)."""
    import argparse

    ap = argparse.ArgumentParser(description="the small GPT's speed on this CPU")
    ap.add_argument("--quick", action="store_true", help="fewer timed calls (for CI)")
    quick = ap.parse_args().quick
    calls, steps, tokens = (3, 1, 4) if quick else (20, 5, 16)
    torch.set_num_threads(1)
    cfg = GPTConfig()
    model = make_model(cfg)
    idx, targets = make_batch(cfg, batch=2)
    with torch.inference_mode():
        for _ in range(3):
            logits, _ = model(idx)
        t0 = time.perf_counter()
        for _ in range(calls):
            model(idx)
        fwd = (time.perf_counter() - t0) / calls
        t0 = time.perf_counter()
        out = model.generate(idx[:1, :8], tokens)
        gen = time.perf_counter() - t0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx, targets = make_batch(cfg, batch=2, length=32)
    train_step(model, opt, idx, targets)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = train_step(model, opt, idx, targets)
    step = (time.perf_counter() - t0) / steps
    compiled = torch.compile(make_model(cfg), backend="eager")
    t0 = time.perf_counter()
    with torch.inference_mode():
        compiled(idx)
    first = time.perf_counter() - t0
    print(
        f"GPT_INJECT={INJECT or '(none)'}: forward {fwd * 1e3:.1f} ms, generate({tokens}) "
        f"{gen * 1e3:.1f} ms, train step {step * 1e3:.1f} ms, first compiled call (eager "
        f"backend) {first:.2f} s"
    )
    ok = bool(torch.isfinite(logits.float()).all()) and bool(torch.isfinite(loss.float()))
    ok = ok and out.shape[1] == 8 + tokens
    if not ok:
        print("the model's outputs are not finite, or generate() made the wrong count")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
