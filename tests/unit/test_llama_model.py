"""The gpt-fast style Llama of reference 003: cache numerics, masks, sizes, modes."""

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.models import llama  # noqa: E402
from pytest_llmperf.models import quantization as q  # noqa: E402

TINY = "tiny-Meta-Llama-3-8B"  # GQA (4 query heads per kv head), rope base 500000


@pytest.fixture(autouse=True)
def _one_thread():
    """Numerics, not speed: one thread avoids OpenMP oversubscription on busy CI CPUs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(name=TINY, dtype=torch.float32, seed=0):
    return llama.build(llama.LlamaConfig.from_name(name), "cpu", dtype, seed=seed)


def _cached_logits(model, idx, n_prefill, **cache_opts):
    """Logits of idx computed as prefill of n_prefill tokens, then one token at a time."""
    T = idx.size(1)
    model.setup_caches(1, T + 4, **cache_opts)
    with torch.no_grad():
        out = [model(idx[:, :n_prefill], torch.arange(n_prefill))]
        for i in range(n_prefill, T):
            out.append(model(idx[:, i : i + 1], torch.tensor([i])))
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("name", [TINY, "tiny-Llama-2-7b-chat-hf", "tiny-Meta-Llama-3.1-8B"])
def test_kv_cache_decode_equals_full_forward(name):
    model = _model(name)
    idx = torch.randint(0, model.config.vocab_size, (1, 14))
    with torch.no_grad():
        full = model(idx)
    cached = _cached_logits(model, idx, n_prefill=6)
    assert full.shape == cached.shape == (1, 14, model.config.vocab_size)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)


def test_cache_is_causal_future_tokens_do_not_change_earlier_logits():
    model = _model()
    idx = torch.randint(0, model.config.vocab_size, (1, 12))
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % model.config.vocab_size
    a = _cached_logits(model, idx, n_prefill=4)
    b = _cached_logits(model, changed, n_prefill=4)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_linear_causal_mask_equals_square_mask():
    model = _model()
    idx = torch.randint(0, model.config.vocab_size, (1, 12))
    square = _cached_logits(model, idx, n_prefill=5)
    assert model.causal_mask is not None and model.causal_mask.shape == (16, 16)
    linear = _cached_logits(model, idx, n_prefill=5, linear_causal_mask=True)
    assert model.causal_mask is None  # no L x L buffer
    torch.testing.assert_close(linear, square, rtol=1e-5, atol=1e-5)


def test_int8_kv_cache_close_to_plain_cache():
    model = _model()
    idx = torch.randint(0, model.config.vocab_size, (1, 12))
    plain = _cached_logits(model, idx, n_prefill=4)
    int8 = _cached_logits(model, idx, n_prefill=4, kv_cache_quantization=True)
    cache = model.layers[0].attention.kv_cache
    assert isinstance(cache, llama.Int8KVCache) and cache.k_cache.dtype == torch.int8
    assert not torch.equal(int8, plain)  # quantization does something ...
    err = (int8 - plain).abs().max() / plain.abs().max()
    assert err < 0.03, f"int8 KV cache logits off by {err:.3%} of the logit range"
    # ... and the top token agrees almost everywhere
    agree = (int8.argmax(-1) == plain.argmax(-1)).float().mean()
    assert agree >= 0.9


def test_per_token_absmax_roundtrip():
    x = torch.randn(2, 3, 5, 64)
    qx, scale = llama.quantize_per_token_absmax(x)
    assert qx.dtype == torch.int8 and scale.shape == (2, 3, 5, 1)
    assert qx.abs().amax() == 127
    torch.testing.assert_close(qx * scale, x, atol=x.abs().amax().item() / 127, rtol=0)


def test_cache_bytes_ordering_at_a_large_cache():
    """The reason reference 003's peak memory falls at 131072: int8 halves the
    cache, the linear mask drops the L x L buffer."""
    model = llama.build(llama.LlamaConfig.from_name(TINY), "meta", torch.bfloat16)
    sizes = {}
    for opts in [(False, False), (True, False), (True, True)]:
        model.setup_caches(1, 4096, kv_cache_quantization=opts[0], linear_causal_mask=opts[1])
        sizes[opts] = llama.cache_nbytes(model)
    assert sizes[(False, False)]["causal_mask"] == 4096 * 4096
    assert sizes[(True, True)]["causal_mask"] == 0
    assert sizes[(True, False)]["kv_cache"] < 0.6 * sizes[(False, False)]["kv_cache"]
    totals = [sizes[k]["total"] for k in [(False, False), (True, False), (True, True)]]
    assert totals[0] > totals[1] > totals[2]


def test_setup_caches_reuses_big_enough_caches():
    model = _model()
    model.setup_caches(1, 32)
    cache = model.layers[0].attention.kv_cache
    model.setup_caches(1, 16)
    assert model.layers[0].attention.kv_cache is cache
    model.setup_caches(1, 16, kv_cache_quantization=True)
    assert model.layers[0].attention.kv_cache is not cache


def test_generate_is_reproducible_with_a_seed_and_respects_top_k():
    model = _model(dtype=torch.bfloat16)
    prompt = torch.randint(0, model.config.vocab_size, (6,))
    torch.manual_seed(1234)
    a = llama.generate(model, prompt, 10, top_k=200, temperature=0.8)
    torch.manual_seed(1234)
    b = llama.generate(model, prompt, 10, top_k=200, temperature=0.8)
    assert a.shape == (1, 16) and torch.equal(a, b)
    assert torch.equal(a[0, :6], prompt)
    # top_k=1 is greedy: the tokens equal the argmax of a full forward (fp32: no ties)
    model = _model()
    torch.manual_seed(0)
    g = llama.generate(model, prompt, 5, top_k=1)
    with torch.no_grad():
        logits = model(g[:, :-1])
    torch.testing.assert_close(logits[0, 5:].argmax(-1), g[0, 6:])


def test_named_configs_have_the_reference_shapes():
    l2 = llama.LlamaConfig.from_name("Llama-2-7b-chat-hf")
    l3 = llama.LlamaConfig.from_name("Meta-Llama-3-8B")
    l31 = llama.LlamaConfig.from_name("Meta-Llama-3.1-8B")
    assert (l2.dim, l2.n_layers, l2.n_heads, l2.n_kv_heads, l2.intermediate_size) == (
        4096, 32, 32, 32, 11008,
    )  # fmt: skip
    assert (l3.n_kv_heads, l3.intermediate_size, l3.vocab_size, l3.rope_base) == (
        8, 14336, 128256, 500000.0,
    )  # fmt: skip
    assert l31.rope_scaling is not None and l31.block_size == 131072
    assert llama.LlamaConfig.from_name("Meta-Llama-3-8B", n_layers=2).n_layers == 2
    tiny = llama.LlamaConfig.from_name("tiny-Meta-Llama-3-8B")
    assert tiny.n_heads // tiny.n_kv_heads == l3.n_heads // l3.n_kv_heads
    with pytest.raises(ValueError, match="unknown Llama config"):
        llama.LlamaConfig.from_name("Llama-9")


def test_llama2_7b_parameter_count_on_meta_device():
    l2 = llama.LlamaConfig.from_name("Llama-2-7b-chat-hf")
    model = llama.build(l2, "meta")
    assert model.output.weight.device.type == "meta"
    assert model.output.weight.dtype == torch.bfloat16  # gpt-fast's default dtype
    assert llama.num_parameters(l2) == sum(p.numel() for p in model.parameters())
    assert llama.num_parameters(l2) == pytest.approx(6.74e9, rel=1e-3)
    # reference 003: model_size 13.21 GB (bf16, embeddings excluded)
    assert llama.model_size_gb(model) == pytest.approx(13.21, abs=0.01)
    l3 = llama.LlamaConfig.from_name("Meta-Llama-3-8B")
    assert llama.num_parameters(l3) == pytest.approx(8.03e9, rel=1e-3)
    assert llama.model_size_gb(llama.build(l3, "meta")) == pytest.approx(15.01, abs=0.01)


def test_model_size_excludes_embeddings_and_caches():
    model = _model(dtype=torch.bfloat16)
    emb = model.tok_embeddings.weight.numel() * 2
    total = sum(p.numel() * 2 for p in model.parameters())
    assert llama.model_size_gb(model) * 1e9 == total - emb
    model.setup_caches(1, 256)
    assert llama.model_size_gb(model) * 1e9 == total - emb


def test_model_size_counts_int8wo_weights_at_about_half_of_bf16():
    model = _model(dtype=torch.bfloat16)
    bf16 = llama.model_size_gb(model)
    emb_before = model.tok_embeddings.weight.clone()
    q.quantize(model, "int8wo")
    for w in (model.output.weight, model.layers[0].attention.wqkv.weight):
        assert type(w) not in (torch.Tensor, torch.nn.Parameter)  # a torchao tensor subclass
        assert hasattr(w, "__tensor_flatten__")
    assert torch.equal(model.tok_embeddings.weight, emb_before)  # embedding untouched
    int8 = llama.model_size_gb(model)
    assert 0.5 <= int8 / bf16 < 0.56, (bf16, int8)  # int8 values + per-row scales
    # and it still decodes
    torch.manual_seed(0)
    out = llama.generate(model, torch.tensor([1, 2, 3]), 3)
    assert out.shape == (1, 6)


def test_quantization_modes_and_reasons():
    assert set(q.MODES) >= {"bf16", "fp32", "int8wo", "int8dq", "int4wo-64", "uintx-2-8"}
    for mode in ("fp6", "autoquant", "sparse-marlin"):
        reason = q.unavailable_reason(mode, "cpu")
        assert reason and "removed" in reason and q.torchao_version() in reason
    reason = q.unavailable_reason("int4wo-64", "cpu")
    assert reason and "cpu" in reason and q.torchao_version() in reason
    for mode in ("bf16", "fp32", "int8wo", "int8dq", "uintx-4-64", "float8wo"):
        assert q.unavailable_reason(mode, "cpu") is None, mode
    assert q.mode_dtype("fp32") == torch.float32 and q.mode_dtype("int8wo") == torch.bfloat16
    cfg = q.make_config("uintx-2-8")
    assert cfg.weight_dtype == torch.int2 and cfg.granularity.group_size == 8
    assert q.make_config("bf16") is None
    with pytest.raises(ValueError):
        q.make_config("int3-nonsense")
