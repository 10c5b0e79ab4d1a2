"""OPT model and the two FlexGen generation schedules (reference 004): fast CPU checks."""

from __future__ import annotations

import pytest
import torch

from pytest_llmperf.models.opt import (
    CONFIGS,
    OPT,
    KVCache,
    OPTConfig,
    build,
    generate_diagonal,
    generate_origin,
    generation_throughputs,
    kv_cache_bytes,
    num_parameters,
    random_prompts,
)


@pytest.fixture(scope="module")
def tiny64() -> OPT:
    # float64 so that fused (diagonal) and per-micro-batch (origin) matmuls cannot
    # round differently enough to flip a greedy argmax.
    return build(OPTConfig.from_name("opt-tiny"), dtype=torch.float64, seed=1)


@pytest.mark.parametrize(
    ("num_batches", "num_lanes", "max_fused_rows"),
    [(4, 2, 4096), (5, 2, 4096), (3, 1, 4096), (6, 4, 4096), (4, 2, 16), (1, 2, 4096)],
)
def test_origin_and_diagonal_generate_the_same_tokens(
    tiny64, num_batches, num_lanes, max_fused_rows
):
    ids = random_prompts(
        num_batches, 12, gpu_batch_size=2, vocab_size=tiny64.config.vocab_size, seed=3
    )
    a, pa, da = generate_origin(tiny64, ids, gen_len=6, gpu_batch_size=2)
    b, pb, db = generate_diagonal(
        tiny64, ids, gen_len=6, gpu_batch_size=2, num_lanes=num_lanes, max_fused_rows=max_fused_rows
    )
    assert a.shape == b.shape == (2 * num_batches, 6)
    assert torch.equal(a, b)
    assert min(pa, da, pb, db) > 0


def test_generation_matches_uncached_greedy(tiny64):
    ids = random_prompts(2, 10, gpu_batch_size=2, vocab_size=tiny64.config.vocab_size, seed=5)
    tokens, _, _ = generate_diagonal(tiny64, ids, gen_len=5, gpu_batch_size=2)
    seq = ids
    for _ in range(5):
        nxt = tiny64(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(tokens, seq[:, ids.shape[1] :])


def test_cached_decode_equals_uncached_forward(tiny64):
    torch.manual_seed(0)
    seq = torch.randint(0, tiny64.config.vocab_size, (3, 14))
    full = tiny64(seq)
    cache = KVCache(tiny64, batch=3, max_len=14)
    prompt = 9
    pre = tiny64.forward_cached(seq[:, :prompt], cache, pos=0)
    torch.testing.assert_close(pre, full[:, :prompt], rtol=1e-10, atol=1e-10)
    for pos in range(prompt, 14):
        step = tiny64.forward_cached(seq[:, pos : pos + 1], cache, pos=pos)
        torch.testing.assert_close(step[:, 0], full[:, pos], rtol=1e-10, atol=1e-10)


def test_cached_attention_rejects_multi_token_append(tiny64):
    cache = KVCache(tiny64, batch=1, max_len=8)
    tiny64.forward_cached(torch.zeros(1, 3, dtype=torch.long), cache, pos=0)
    with pytest.raises(ValueError, match="prefill"):
        tiny64.forward_cached(torch.zeros(1, 2, dtype=torch.long), cache, pos=3)


def test_kv_cache_bytes_reference_oom_cell():
    # reference 004: N=32 GPU batches of 8, P=1024, gen_len 32, OPT-1.3B fp16 -> 49.5 GiB
    cfg = CONFIGS["opt-1.3b"]
    nbytes = kv_cache_bytes(8 * 32, 1024, 32, cfg.num_layers, cfg.hidden, 2)
    assert nbytes == 2 * 256 * 1056 * 24 * 2048 * 2
    assert nbytes / 2**30 == pytest.approx(49.5)
    # the largest cell that ran (N=32, P=512) fits an A6000's 45 GiB
    assert kv_cache_bytes(8 * 32, 512, 32, 24, 2048, 2) / 2**30 == pytest.approx(25.5)


def test_kv_cache_allocation_matches_formula(tiny64):
    cfg = tiny64.config
    cache = KVCache(tiny64, batch=4, max_len=20)
    allocated = sum(t.numel() * t.element_size() for t in cache.k + cache.v)
    assert allocated == kv_cache_bytes(4, 16, 4, cfg.num_layers, cfg.hidden, 8)


@pytest.mark.parametrize(
    ("name", "size"), [("opt-1.3b", 1.3e9), ("opt-6.7b", 6.7e9), ("opt-125m", 125e6)]
)
def test_param_counts_on_meta_device(name, size):
    model = build(CONFIGS[name], device="meta", dtype=torch.float16)
    assert num_parameters(CONFIGS[name]) == sum(p.numel() for p in model.parameters())
    assert num_parameters(CONFIGS[name]) == pytest.approx(size, rel=0.03)


def test_config_shapes_and_errors():
    cfg = OPTConfig.from_name("opt-6.7b")
    assert (cfg.num_layers, cfg.hidden, cfg.num_heads, cfg.ffn) == (32, 4096, 32, 16384)
    assert OPTConfig.from_name("opt-1.3b", num_layers=2).num_layers == 2
    with pytest.raises(ValueError, match="unknown OPT config"):
        OPTConfig.from_name("opt-175b-typo")
    with pytest.raises(ValueError, match="divisible"):
        OPTConfig("odd", num_layers=2, hidden=100, num_heads=3, ffn=400)


def test_default_dtype_and_seeded_init():
    cfg = OPTConfig.from_name("opt-tiny")
    a, b = build(cfg, seed=7), build(cfg, seed=7)
    assert a.dtype == torch.float32
    assert not any(p.requires_grad for p in a.parameters())
    assert torch.equal(a.layers[0].fc1.weight, b.layers[0].fc1.weight)
    assert not torch.equal(a.layers[0].fc1.weight, build(cfg, seed=8).layers[0].fc1.weight)
    # learned positions carry OPT's offset of 2
    assert a.embed_positions.num_embeddings == cfg.max_position_embeddings + 2


def test_generation_input_errors(tiny64):
    ids = random_prompts(2, 4, gpu_batch_size=2, vocab_size=64)
    with pytest.raises(ValueError, match="micro-batches"):
        generate_origin(tiny64, ids[:3], gen_len=2, gpu_batch_size=2)
    with pytest.raises(ValueError, match="gen_len"):
        generate_diagonal(tiny64, ids, gen_len=0, gpu_batch_size=2)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        generate_origin(tiny64, random_prompts(1, 250, 2, 64), gen_len=10, gpu_batch_size=2)


def test_throughput_formulas():
    t = generation_throughputs(8 * 4, 512, 32, prefill_s=0.5, decode_s=2.0)
    assert t["prefill_throughput"] == pytest.approx(32 * 512 / 0.5)
    assert t["decode_throughput"] == pytest.approx(32 * 31 / 2.0)
    assert t["throughput"] == pytest.approx(32 * 32 / 2.5)
    assert t["latency"] == pytest.approx(2.5)
