"""The CS336 Transformer LM of the scenario suite: shapes, causality, numerics, size."""

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.models import transformer_lm as tlm  # noqa: E402

CFG = tlm.TransformerLMConfig(
    vocab_size=97, context_length=16, d_model=32, d_ff=64, num_layers=2, num_heads=4
)


@pytest.fixture
def model():
    return tlm.build(CFG, seed=0).eval()


def test_forward_shapes(model):
    batch = tlm.random_batch(CFG, batch_size=3)
    assert batch.shape == (3, CFG.context_length + 1)
    logits = tlm.forward_step(model, batch)
    assert logits.shape == (3, CFG.context_length, CFG.vocab_size)
    assert logits.dtype == torch.float32
    assert not logits.requires_grad


def test_longer_than_context_is_rejected(model):
    with pytest.raises(ValueError):
        model(torch.zeros(1, CFG.context_length + 1, dtype=torch.long))


def test_causal_later_tokens_do_not_change_earlier_logits(model):
    idx = tlm.random_batch(CFG, batch_size=2)[:, :-1]
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % CFG.vocab_size
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_position_matters():
    """RoPE makes the order of earlier tokens matter to a later token's logits.

    One layer, so that only RoPE can carry order: without it the last position
    attends over the same set of (key, value) pairs whatever the order of the
    tokens before it, and its logits match to rounding (max |diff| ~ 5e-7). With
    RoPE they differ by 0.1-0.2. (A run of one repeated token proves nothing:
    every position attends over identical values, so the logits differ only by
    rounding, with or without RoPE.)
    """
    import dataclasses

    one_layer = tlm.build(dataclasses.replace(CFG, num_layers=1), seed=0).eval()
    idx = torch.tensor([[3, 41, 77, 12, 58, 20, 9, 5]])
    swapped = idx.clone()
    swapped[0, [0, 3]] = idx[0, [3, 0]]
    with torch.no_grad():
        last, last_swapped = one_layer(idx)[0, -1], one_layer(swapped)[0, -1]
    assert (last - last_swapped).abs().max().item() > 1e-2


def test_rmsnorm_computes_in_float32_and_returns_input_dtype():
    norm = tlm.RMSNorm(64)
    with torch.no_grad():
        norm.weight.mul_(1.5)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * 300
    y = norm(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    xf = x.to(torch.bfloat16).float()
    expected = 1.5 * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5))
    # Exactly the float32 result rounded once to bf16 (a bf16 computation is off by up to ~1%).
    torch.testing.assert_close(y.float(), expected.to(torch.bfloat16).float(), rtol=0, atol=0)
    assert norm.eps == 1e-5


def test_no_biases_and_untied_head(model):
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith("bias") for n in names)
    assert model.lm_head.weight.data_ptr() != model.token_embeddings.weight.data_ptr()


def test_small_parameter_count_matches_analytic_count():
    cfg = tlm.TransformerLMConfig.from_name("small", context_length=1024)
    with torch.device("meta"):
        meta_model = tlm.TransformerLM(cfg)
    counted = sum(p.numel() for p in meta_model.parameters())
    d, ff, layers, v = 768, 3072, 12, 10_000
    analytic = 2 * v * d + layers * (4 * d * d + 3 * d * ff + 2 * d) + d
    assert counted == analytic == tlm.num_parameters(cfg)
    assert 128e6 < counted < 129e6


@pytest.mark.parametrize("size", list(tlm.SIZES))
def test_documented_and_tiny_sizes(size):
    cfg = tlm.TransformerLMConfig.from_name(size, 128)
    small = tlm.TransformerLMConfig.from_name(f"tiny-{size}", 16)
    assert cfg.vocab_size == 10_000 and cfg.rope_theta == 10_000.0
    assert (cfg.d_model, cfg.d_ff, cfg.num_layers, cfg.num_heads) == tlm.SIZES[size]
    assert tlm.num_parameters(small) < 2e6


def test_sizes_are_ordered_at_both_scales():
    names = list(tlm.SIZES)
    assert names == ["small", "medium", "large", "xl", "2.7B"]
    for prefix in ("", "tiny-"):
        counts = [
            tlm.num_parameters(tlm.TransformerLMConfig.from_name(prefix + n, 128)) for n in names
        ]
        assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_train_step_changes_weights_and_returns_finite_loss():
    model = tlm.build(CFG, seed=0)
    opt = tlm.make_optimizer(model)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 1e-2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = tlm.random_batch(CFG, batch_size=2)
    loss = tlm.train_step(model, opt, batch)
    assert torch.isfinite(loss) and loss.ndim == 0
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert len(changed) == len(before)  # every parameter, norms and head included


@pytest.mark.parametrize("train", [False, True])
def test_flops_match_the_flop_counter(train):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = tlm.build(CFG, seed=0)
    batch = tlm.random_batch(CFG, batch_size=3)
    # The math backend spells attention out as matmuls, so the counter sees all of it.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        if train:
            tlm.train_step(model, tlm.make_optimizer(model), batch)
        else:
            tlm.forward_step(model, batch)
    assert counter.get_total_flops() == tlm.flops(CFG, 3, train=train, causal=False)
    assert tlm.flops(CFG, 3, train=train) < tlm.flops(CFG, 3, train=train, causal=False)


def test_from_name_overrides_and_unknown_names():
    cfg = tlm.TransformerLMConfig.from_name("tiny-xl", 32, vocab_size=97)
    assert (cfg.vocab_size, cfg.context_length, cfg.d_model) == (97, 32, 80)
    for bad in ("huge", "tiny-huge", "tiny-"):
        with pytest.raises(ValueError, match="unknown TransformerLM config"):
            tlm.TransformerLMConfig.from_name(bad, 32)


def test_build_places_parameters_in_the_requested_dtype():
    model = tlm.build(CFG, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32  # restored after building
    assert tlm.build(CFG).lm_head.weight.dtype == torch.float32
