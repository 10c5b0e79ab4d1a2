"""Roofline estimator, shapes, device specs and calibration: FLOPs vs FlopCounterMode,
roofline laws, pinned numbers, and one shape table shared with the models."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.roofline import calibration, device_specs
from pytest_llmperf.roofline.calibration import device_peaks, reportable_efficiency
from pytest_llmperf.roofline.device_specs import Peaks
from pytest_llmperf.roofline.estimator import error_pct, estimate
from pytest_llmperf.roofline.shapes import (
    CS336_SIZES,
    MODELS,
    get_model,
    shape_from_config,
    torchtitan_ffn_dim,
)

torch = pytest.importorskip("torch")

from pytest_llmperf.models import llama, opt  # noqa: E402
from pytest_llmperf.models import transformer_lm as tlm  # noqa: E402


def _count_flops(fn) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    # The math backend decomposes attention into bmm's that FlopCounterMode counts
    # (the fused CPU kernel is not in its registry).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _close(a: float, b: float, rel: float = 0.02) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


# ------------------------------------------------------------------ FLOPs vs FlopCounterMode


def test_cs336_forward_flops_match_flop_counter():
    cfg = tlm.TransformerLMConfig.from_name("tiny-large", context_length=64)
    model = tlm.build(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 48))
    with torch.no_grad():
        counted = _count_flops(lambda: model(idx))
    est = estimate(
        shape_from_config(cfg), mode="forward", batch=2, seq_len=48, dtype="fp32", device=_PEAKS
    )
    assert counted > 0
    assert _close(est.matmul_flops, counted), (est.matmul_flops, counted)


def test_cs336_forward_backward_flops_match_flop_counter():
    cfg = tlm.TransformerLMConfig.from_name("tiny-xl", context_length=64)
    model = tlm.build(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 40))

    def step():
        model(idx).float().sum().backward()

    counted = _count_flops(step)
    est = estimate(
        shape_from_config(cfg), mode="train", batch=2, seq_len=40, dtype="fp32", device=_PEAKS
    )
    fwd = estimate(
        shape_from_config(cfg), mode="forward", batch=2, seq_len=40, dtype="fp32", device=_PEAKS
    )
    assert _close(est.matmul_flops, counted), (est.matmul_flops, counted)
    assert est.matmul_flops == pytest.approx(3 * fwd.matmul_flops, rel=1e-9)


def test_llama_gqa_forward_and_decode_flops_match_flop_counter():
    cfg = llama.LlamaConfig.from_name("tiny-Meta-Llama-3-8B")
    assert cfg.n_kv_heads < cfg.n_heads  # the GQA path is what is checked
    model = llama.build(cfg, dtype=torch.float32)
    shape = shape_from_config(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 24))
    with torch.no_grad():
        counted = _count_flops(lambda: model(idx))
    est = estimate(shape, mode="forward", batch=2, seq_len=24, dtype="fp32", device=_PEAKS)
    assert _close(est.matmul_flops, counted), (est.matmul_flops, counted)

    # one decode step: the gpt-fast model attends over its whole static cache
    max_len = 32
    model.setup_caches(2, max_len)
    with torch.no_grad():
        model(idx, torch.arange(24))
        tok = idx[:, -1:]
        counted = _count_flops(lambda: model(tok, torch.tensor([24])))
    est = estimate(shape, mode="decode", batch=2, kv_len=max_len - 1, dtype="fp32", device=_PEAKS)
    assert _close(est.matmul_flops, counted), (est.matmul_flops, counted)


def test_opt_forward_flops_match_flop_counter():
    cfg = opt.OPTConfig.from_name("opt-tiny")
    model = opt.build(cfg, dtype=torch.float32)
    idx = torch.randint(0, cfg.vocab_size, (3, 40))
    counted = _count_flops(lambda: model(idx))
    shape = shape_from_config(cfg)
    est = estimate(shape, mode="forward", batch=3, seq_len=40, dtype="fp32", device=_PEAKS)
    assert _close(est.matmul_flops, counted), (est.matmul_flops, counted)
    assert shape.num_parameters() == sum(p.numel() for p in model.parameters())


def _meta_parameters(module, config) -> int:
    model = module.build(config, device="meta", dtype=torch.float32)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("module", "config"),
    [
        (tlm, tlm.TransformerLMConfig.from_name("tiny-medium", 64)),
        (llama, llama.LlamaConfig.from_name("tiny-Meta-Llama-3-8B")),
        (opt, opt.OPTConfig.from_name("opt-tiny")),
    ],
    ids=["transformer_lm", "llama", "opt"],
)
def test_parameter_counts_match_the_real_modules(module, config):
    counted = _meta_parameters(module, config)
    assert shape_from_config(config).num_parameters() == counted
    assert module.num_parameters(config) == counted


def _same_shape(config, name: str) -> None:
    """The estimator's named shape and the shape of the model config agree in every dim."""
    expected = get_model(name)
    got = shape_from_config(config, name=expected.name)
    assert dataclasses.replace(got, description=expected.description) == expected, name


@pytest.mark.parametrize("size", list(CS336_SIZES))
def test_cs336_sizes_of_model_and_estimator_agree(size):
    """One table: the model built as ``size`` is the shape the estimator prices as it."""
    assert list(tlm.SIZES) == list(CS336_SIZES)
    config = tlm.TransformerLMConfig.from_name(size, context_length=128)
    _same_shape(config, size)
    _same_shape(config, f"cs336-{size}")
    assert tlm.num_parameters(config) == get_model(size).num_parameters()
    assert _meta_parameters(tlm, config) == get_model(size).num_parameters()
    # the smoke stand-in keeps the architecture (family, head_dim parity) at tiny dims
    tiny = shape_from_config(tlm.TransformerLMConfig.from_name(f"tiny-{size}", 16))
    assert tiny.family == "cs336" and tiny.num_parameters() < get_model(size).num_parameters()


@pytest.mark.parametrize(
    ("module", "name", "estimator_name"),
    [
        (llama, "Llama-2-7b-chat-hf", "llama-2-7b"),
        (llama, "Meta-Llama-3-8B", "llama-3-8b"),
        (llama, "Meta-Llama-3.1-8B", "llama-3.1-8b"),
        (opt, "opt-1.3b", "opt-1.3b"),
        (opt, "opt-6.7b", "opt-6.7b"),
    ],
)
def test_released_model_configs_and_estimator_shapes_agree(module, name, estimator_name):
    config_class = module.LlamaConfig if module is llama else module.OPTConfig
    config = config_class.from_name(name)
    _same_shape(config, estimator_name)
    assert module.num_parameters(config) == get_model(estimator_name).num_parameters()


# ------------------------------------------------------------------ roofline laws

_PEAKS = Peaks(1e12, 1e11, "test", 100.0)


def test_decode_step_is_memory_bound_time_is_bytes_over_bandwidth():
    est = estimate(
        "llama-2-7b", mode="decode", batch=1, kv_len=1024, dtype="bf16", device="H100 SXM"
    )
    spec = device_specs.lookup("H100 SXM")
    assert est.runtime_s == pytest.approx(est.bytes / spec.bandwidth, rel=0.05)
    # the weights are read once: bytes >= 2 bytes per parameter
    assert est.bytes >= 2 * get_model("llama-2-7b").num_parameters()
    assert all(c.bound == "memory" for c in est.ops if c.kind == "matmul")


def test_big_prefill_is_compute_bound_time_is_flops_over_peak():
    est = estimate(
        "llama-2-7b", mode="forward", batch=8, seq_len=2048, dtype="bf16", device="H100 SXM"
    )
    spec = device_specs.lookup("H100 SXM")
    peak = spec.peak_flops("bf16")
    mms = [c for c in est.ops if c.kind in ("matmul", "attention")]
    assert all(c.bound == "compute" for c in mms)
    assert sum(c.seconds for c in mms) == pytest.approx(sum(c.flops for c in mms) / peak, rel=1e-9)
    # element-wise ops (norms, RoPE, residuals: memory-bound) add the rest, ~10 % here
    assert est.runtime_s == pytest.approx(est.flops / peak, rel=0.15)


def test_runtime_is_at_least_both_roofline_bounds():
    for mode in ("forward", "train", "decode"):
        est = estimate("clm-200m", mode=mode, batch=2, seq_len=256, dtype="fp16", device=_PEAKS)
        assert est.runtime_s >= est.flops / _PEAKS.flops_per_s * (1 - 1e-9)
        assert est.runtime_s >= est.bytes / _PEAKS.bytes_per_s * (1 - 1e-9)
        assert est.runtime_s <= (
            est.flops / _PEAKS.flops_per_s + est.bytes / _PEAKS.bytes_per_s
        ) * (1 + 1e-9)


def test_energy_is_runtime_times_board_power():
    est = estimate("opt-1.3b", batch=1, seq_len=512, dtype="fp16", device="NVIDIA RTX A5000")
    assert est.power_w == 230
    assert est.energy_j == pytest.approx(est.runtime_s * 230)
    assert estimate("opt-1.3b", device=_PEAKS, power_w=50).energy_j == pytest.approx(
        estimate("opt-1.3b", device=_PEAKS).runtime_s * 50
    )
    assert estimate("opt-1.3b", device=Peaks(1e12, 1e11, "x")).energy_j is None


def test_reference_000_energy_column_is_runtime_times_230w():
    # (runtime ms, "power" = energy J) pairs from reference 000, estimated and measured
    pairs = [
        (693.77, 159.57),
        (740.79, 170.38),
        (3275.30, 753.32),
        (121.46, 27.94),
        (716.71, 164.84),
    ]
    for ms, joules in pairs:
        assert joules == pytest.approx(ms / 1e3 * device_specs.lookup("RTX A5000").power, abs=0.01)


def test_memory_breakdowns():
    m = get_model("llama-3-8b")
    fwd = estimate(m, mode="forward", batch=1, seq_len=512, dtype="bf16", device=_PEAKS)
    train = estimate(m, mode="train", batch=1, seq_len=512, dtype="bf16", device=_PEAKS)
    assert fwd.memory["weights"] == m.num_parameters() * 2
    assert set(train.memory) == {"weights", "activations", "gradients", "optimizer"}
    assert train.memory["optimizer"] == 2 * train.memory["weights"]
    assert train.memory_bytes > 3 * fwd.memory["weights"]
    dec = estimate(m, mode="decode", batch=4, kv_len=1000, dtype="bf16", device=_PEAKS)
    # K and V, per layer, kv_heads x head_dim, for the 1000 cached tokens and the new one
    assert dec.memory["kv_cache"] == 2 * 4 * 1001 * 32 * 8 * 128 * 2


def test_generation_is_prefill_plus_gen_len_minus_one_decode_steps():
    one = estimate(
        "opt-1.3b", mode="generate", batch=2, seq_len=128, gen_len=1, dtype="fp16", device=_PEAKS
    )
    pre = estimate("opt-1.3b", mode="prefill", batch=2, seq_len=128, dtype="fp16", device=_PEAKS)
    assert one.runtime_s == pytest.approx(pre.runtime_s)
    gen = estimate(
        "opt-1.3b", mode="generate", batch=2, seq_len=128, gen_len=9, dtype="fp16", device=_PEAKS
    )
    steps = sum(
        estimate(
            "opt-1.3b", mode="decode", batch=2, kv_len=128 + i, dtype="fp16", device=_PEAKS
        ).runtime_s
        for i in range(8)
    )
    assert gen.phases["decode"] == pytest.approx(steps)
    assert gen.runtime_s == pytest.approx(pre.runtime_s + steps)


def test_dtype_halves_bytes_and_uses_its_peak():
    f32 = estimate("cs336-small", dtype="fp32", device="A100 80GB")
    b16 = estimate("cs336-small", dtype="bf16", device="A100 80GB")
    assert b16.bytes == pytest.approx(f32.bytes / 2, rel=1e-4)  # token ids stay int64
    assert b16.flops_per_s == 312e12 and f32.flops_per_s == 19.5e12


# ------------------------------------------------------------------ names, configs, errors


def test_clm_configs_follow_torchtitan_ffn_rule():
    assert [get_model(f"clm-{s}").d_ff for s in ("60m", "200m", "400m", "1.1b")] == [
        1408,
        2688,
        3328,
        5376,
    ]
    assert torchtitan_ffn_dim(4096, 1024, 1.3) == 14336  # Llama-3-8B, the rule's known case
    assert get_model("AlCrossSim/clm-1.1b") is get_model("AICrossSim/clm-1.1b")
    assert get_model("facebook/opt-6.7b").d_model == 4096


def test_llama_and_cs336_shapes():
    assert (get_model("Meta-Llama-3-8B").kv_heads, get_model("llama-3-8b").vocab_size) == (
        8,
        128256,
    )
    l2 = get_model("Llama-2-7b-chat-hf")
    assert (l2.d_model, l2.n_layers, l2.d_ff, l2.kv_heads) == (4096, 32, 11008, 32)
    assert get_model("small").name == "cs336-small"
    assert get_model("cs336-2.7B").d_ff == 10240


def test_unknown_model_error_lists_known_models():
    with pytest.raises(ValueError, match="unknown model 'gpt-5'.*opt-1.3b.*clm-60m"):
        get_model("gpt-5")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA RTX A5000", "RTX A5000"),
        ("a5000", "RTX A5000"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("Tesla T4", "T4"),
        ("AMD Instinct MI300X", "MI300X"),
        ("NVIDIA H200", "H200"),
    ],
)
def test_device_lookup_fuzzy(name, expected):
    assert device_specs.lookup(name).name == expected


def test_unknown_device_error_lists_known_devices():
    with pytest.raises(ValueError, match="unknown device 'Voodoo 5'.*H100 SXM.*RTX A5000"):
        device_specs.lookup("Voodoo 5")


def test_spec_dtype_fallbacks():
    v100 = device_specs.lookup("V100")
    assert v100.peak_flops("fp16") == 125e12
    assert v100.peak_flops("bf16") == v100.peak_flops("fp32")  # no bf16 units
    assert device_specs.lookup("H100").peak_flops("fp8") == 1978.9e12
    with pytest.raises(ValueError, match="unknown dtype"):
        v100.peak_flops("int3")


# ------------------------------------------------------------------ calibration, MFU/MBU


def efficiency(*args, **kwargs) -> dict:
    return reportable_efficiency(*args, **kwargs)[0]


def test_efficiency_is_fraction_of_peak():
    p = Peaks(2e12, 1e11, "test")
    assert efficiency(0.5, flops=5e11, peaks=p) == {"mfu": pytest.approx(0.5)}
    assert efficiency(2.0, bytes=1e11, peaks=p) == {"mbu": pytest.approx(0.5)}
    assert efficiency(1.0, peaks=p) == {}
    assert efficiency(0.0, flops=1.0, peaks=p) == {}


def test_cpu_peaks_are_calibrated_and_cached():
    p = device_peaks("cpu")
    assert p.source == "calibrated"
    assert 1e8 < p.flops_per_s < 1e14 and 1e8 < p.bytes_per_s < 1e13
    assert device_peaks("cpu") == p  # cached: same numbers
    eff = efficiency(1.0, flops=p.flops_per_s / 4, bytes=p.bytes_per_s / 2, device="cpu")
    assert eff["mfu"] == pytest.approx(0.25) and eff["mbu"] == pytest.approx(0.5)


def test_reportable_efficiency_keeps_fractions_up_to_one():
    p = Peaks(2e12, 1e11, "calibrated", device_name="cpu")
    eff, notes = reportable_efficiency(0.5, flops=5e11, bytes=5e10, peaks=p)
    assert eff == {"mfu": pytest.approx(0.5), "mbu": pytest.approx(1.0)} and notes == []
    assert reportable_efficiency(1.0, peaks=p) == ({}, [])
    assert reportable_efficiency(0.0, flops=1.0, peaks=p) == ({}, [])


def test_reportable_efficiency_leaves_out_a_fraction_above_one_and_says_why():
    """138% MFU is a fact about the peak (too low), not the call: never reported."""
    p = Peaks(0.9e12, 1e11, "calibrated", device_name="cpu")
    eff, notes = reportable_efficiency(1.0, flops=1.2e12, bytes=5e10, dtype="bf16", peaks=p)
    assert "mfu" not in eff and eff["mbu"] == pytest.approx(0.5)
    assert len(notes) == 1
    note = notes[0]
    assert note.startswith("mfu not reported: achieved 1.2 TFLOP/s exceeds the measured peak")
    assert "0.9 TFLOP/s" in note and "cpu bf16" in note and "underestimated" in note
    # a datasheet peak cannot be "measured too low": the counts or the dtype are wrong
    sheet = Peaks(989e12, 3.35e12, "datasheet: NVIDIA H100", device_name="NVIDIA H100")
    eff, notes = reportable_efficiency(1.0, bytes=4e12, peaks=sheet)
    assert eff == {} and "datasheet bandwidth" in notes[0] and "does not match" in notes[0]


def test_reportable_efficiency_without_a_usable_peak():
    eff, notes = reportable_efficiency(1.0, flops=1e9, peaks=Peaks(0.0, 1e11, "calibrated"))
    assert eff == {} and notes and notes[0].startswith("mfu not reported: no usable measured peak")


def test_matmul_peak_is_the_faster_operand_layout(monkeypatch):
    """bf16 on an AVX2 CPU: a @ b took a generic path 7-8x slower than a @ w.T (what
    nn.Linear runs); a peak from one layout only put a bf16 model's MFU above 100%."""
    real_mm = torch.mm
    seen = []

    def fake_rate(fn, work, device, budget_s, min_reps=3):
        calls = []
        monkeypatch.setattr(torch, "mm", lambda a, b: calls.append(b.is_contiguous()) or a)
        fn()
        monkeypatch.setattr(torch, "mm", real_mm)
        seen.append(calls[0])
        return 9e9 if not calls[0] else 1.2e9  # transposed (linear) layout is fast

    monkeypatch.setattr(calibration, "_best_rate", fake_rate)
    measure = calibration.measure_matmul_flops.__wrapped__  # not the cache
    assert measure("cpu", "bf16") == 9e9
    assert sorted(seen) == [False, True]  # both layouts were timed


def test_cpu_peak_is_measured_with_the_threads_the_call_runs(monkeypatch):
    """Two threads ran fp32 products about twice as fast as one: the thread count is part
    of the measurement and of its cache key, so a peak from one count is not reused."""
    asked = []
    measure = calibration.measure_matmul_flops.__wrapped__  # the uncached function
    monkeypatch.setattr(
        calibration, "measure_matmul_flops", lambda dev, key, threads: asked.append(threads) or 1e9
    )
    monkeypatch.setattr(calibration, "measure_copy_bandwidth", lambda dev, threads: 1e9)
    old = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            device_peaks("cpu", "fp32")
    finally:
        torch.set_num_threads(old)
    assert asked == [1, 2]
    during = []
    monkeypatch.setattr(
        calibration, "_best_rate", lambda *a, **k: during.append(torch.get_num_threads()) or 1.0
    )
    target = 1 if old != 1 else 2
    measure("cpu", "fp32", target)
    assert set(during) == {target} and torch.get_num_threads() == old  # set, then restored


def test_error_pct_sign_convention():
    assert error_pct(740.79, 693.77) == pytest.approx(6.35, abs=0.01)  # reference 000, opt-1.3b
    assert error_pct(112.05, 121.46) == pytest.approx(-8.40, abs=0.01)


def test_every_registered_model_estimates():
    for name in MODELS:
        est = estimate(name, batch=1, seq_len=64, dtype="bf16", device="RTX A5000")
        assert est.runtime_s > 0 and est.flops > 0 and est.memory_bytes > 0


#: (model, estimate kwargs) -> (runtime_s, flops, matmul_flops, bytes, memory, phases),
#: computed before ``estimate`` was split into helpers: a refactor must not move them.
_PINNED = [
    (
        ("opt-1.3b", dict(mode="forward", batch=1, seq_len=512, dtype="bf16", device="RTX A5000")),
        (0.013756908484128413, 1395663044608.0, 1393918214144.0, 4654313472.0,
         {"weights": 2631516160, "activations": 53575680},
         {"forward": 0.013756908484128413}),
    ),
    (
        ("llama-3-8b", dict(mode="train", batch=2, seq_len=256, dtype="bf16", device=_PEAKS)),
        (24.507444764672, 23390237945856.0, 23260469133312.0, 177782509568.0,
         {"weights": 16060522496, "activations": 3575906304, "gradients": 16060522496,
          "optimizer": 32121044992},
         {"forward": 7.794402729983999, "backward": 15.588805459968002,
          "optimizer": 1.12423657472}),
    ),
    (
        ("clm-60m", dict(mode="generate", batch=2, seq_len=128, gen_len=9, dtype="fp16",
                         device="H100", launch_overhead_s=5e-6)),
        (0.04699945856955223, 35662629280.0, 35564888064.0, 1398216320.0,
         {"weights": 164202240, "activations": 25362432, "kv_cache": 3086336},
         {"prefill": 0.005228839154626866, "decode": 0.04177061941492537}),
    ),
    (
        ("cs336-small", dict(mode="decode", batch=4, kv_len=1000, dtype="fp32",
                             device="A100 80GB", launch_overhead_s=5e-6, launch_overlap=False)),
        (0.0031309512153016193, 1119235392.0, 1115013120.0, 786954528.0,
         {"weights": 514501632, "activations": 172288, "kv_cache": 295206912},
         {"decode": 0.0031309512153016193}),
    ),
    (
        ("opt-6.7b", dict(mode="prefill", batch=3, seq_len=64, dtype="fp16", device=_PEAKS,
                          logits="last")),
        (2.4959482927359997, 2482378113024.0, 2481579098112.0, 15475753024.0,
         {"weights": 13316947968, "activations": 15728640, "kv_cache": 100663296},
         {"forward": 2.4959482927359997}),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("workload", "expected"), _PINNED, ids=[w[0][0] for w in _PINNED])
def test_estimate_numbers_are_pinned(workload, expected):
    model, kwargs = workload
    est = estimate(model, **kwargs)
    runtime_s, flops, matmul_flops, nbytes, memory, phases = expected
    assert (est.flops, est.matmul_flops, est.bytes) == (flops, matmul_flops, nbytes)
    assert est.runtime_s == pytest.approx(runtime_s, rel=1e-12)
    assert est.memory == memory
    assert est.phases == pytest.approx(phases, rel=1e-12)


def test_datasheet_estimate_and_cli_import_no_torch():
    """A datasheet device needs no torch: the roofline modules must not import it."""
    code = (
        "import sys\n"
        "from pytest_llmperf.roofline import calibration, cli, device_specs, estimator, shapes\n"
        "estimator.estimate('opt-1.3b', device='H100')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
