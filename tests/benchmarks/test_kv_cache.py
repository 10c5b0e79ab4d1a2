"""Reference 003, KV cache quantization section: Meta-Llama-3.1-8B decode, no compile,
static cache of 8192 ... 131072 positions, each plain (bf16 cache + L x L causal
mask), with an int8 KV cache (per-token absmax scales), and int8 plus the linear
causal mask ((1, 1, 1, L) per step instead of the L x L buffer).

As in torchao's generate.py the caches are allocated by ``generate`` itself
(here afresh for every sample: ``setup`` frees them untimed), so the measured
peak memory includes cache and mask. The reference's finding is checked as a
property of the scenario: at the largest cache size that ran, peak memory
orders plain > int8 > int8 + linear mask (59.27 > 52.62 > 34.18 GB at 131072).
The peaks compared are the fixture's measured ones: ``peak_memory_reserved``
on accelerators; on CPU ``peak_memory``, the RSS growth over one ``generate``
(which allocates the caches), checked to order reliably at the smoke sizes.

Metrics (group ``kv_cache``): ``throughput`` (tok/s) with TTFT, TPOT and ITL
percentiles (``llmperf.generation``), ``model_size`` (GB),
``mem_per_s`` (GB/s), the fixture's peak memory, and ``kv_cache_bytes`` (the
analytic size of cache + mask, from the tensors' nbytes).

Tiers:
- smoke: a tiny Llama-3.1 stand-in (``smoke_config``: 16 layers, so the cache,
  not the temporaries, dominates like in the 8B model), cache sizes / 32
  (256 ... 4096), 8 new tokens, one CPU thread.
- standard: the real 8B shapes at cache size 8192 (the reference's first
  block, ~3 minutes on an H100): larger caches decode at 2-7 tok/s eagerly.
- full: every cell (131072 needs ~60 GB of an 80 GB GPU).
"""

import gc
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.models import llama  # noqa: E402

MODEL = "Meta-Llama-3.1-8B"
CACHE_SIZES = (8192, 16384, 32768, 65536, 131072)
#: id -> (kv_cache_quantization, linear_causal_mask)
VARIANTS = {"plain": (False, False), "int8": (True, False), "int8-linear-mask": (True, True)}
MAX_NEW_TOKENS = 200
NUM_SAMPLES = 5
TOP_K = 200
TEMPERATURE = 0.8
SEED = 1234
PROMPT_LEN = 6
SMOKE_CACHE_DIVISOR = 32
SMOKE_NEW_TOKENS = 8
STANDARD_CACHE_SIZES = (8192,)

#: Peak memory per measured cell of this process: (cache_size, variant) -> (bytes, metric).
_PEAKS: dict[tuple[int, str], tuple[float, str]] = {}


def smoke_config() -> llama.LlamaConfig:
    """Tiny Llama-3.1 stand-in (rope base and scaling of 3.1) whose KV cache dominates
    the per-layer temporaries as in the 32-layer 8B model, where one layer's
    dequantized/repeated keys and values are ~1/8 of the cache: 16 layers of 4
    heads, one KV head per query head (no GQA sharing, so there is no repeat
    temporary either). At smoke cache 4096 the RSS peaks are ~51 / 38 / 22 MB
    (plain / int8 / int8 + linear mask), steps of 13-16 MB against under 1 MB
    of run-to-run noise; with 8 layers and GQA the first step was ~3 MB and a
    noisy run inverted it."""
    tiny = llama.LlamaConfig.from_name(f"tiny-{MODEL}")
    return replace(tiny, name=f"tiny-{MODEL}-kv", n_layers=16, n_heads=4, n_kv_heads=4, dim=128)


def _cells():
    for cache_size in CACHE_SIZES:
        for variant in VARIANTS:
            yield pytest.param(cache_size, variant, id=f"{MODEL}-cache{cache_size}-{variant}")


@pytest.mark.llmperf
@pytest.mark.parametrize(("cache_size", "variant"), list(_cells()))
def test_kv_cache(llmperf, record_decode_metrics, cache_size, variant):
    tier, device = llmperf.tier, llmperf.device
    kv_quant, linear_mask = VARIANTS[variant]
    smoke = tier == "smoke"
    cache = cache_size // SMOKE_CACHE_DIVISOR if smoke else cache_size
    new_tokens = SMOKE_NEW_TOKENS if smoke else MAX_NEW_TOKENS
    llmperf.group = "kv_cache"
    llmperf.params(
        model=MODEL,
        cache_size=cache,
        kv_quant=kv_quant,
        linear_causal_mask=linear_mask,
        compile=False,
        dtype="bfloat16",
        max_new_tokens=new_tokens,
        num_samples=NUM_SAMPLES,
        tier=tier,
        threads=torch.get_num_threads(),
    )
    if tier == "standard" and cache_size not in STANDARD_CACHE_SIZES:
        pytest.skip(f"cache_size {cache_size} runs in --llmperf-tier=full only")

    # (the plugin empties the allocator cache before measuring peak memory)
    config = smoke_config() if smoke else llama.LlamaConfig.from_name(MODEL)
    model = llama.build(config, device, torch.bfloat16)
    state = {"model": model}
    del model
    try:
        size_gb = llama.model_size_gb(state["model"])
        prompt = llama.random_prompt(state["model"], PROMPT_LEN, device)
        torch.manual_seed(SEED)

        def sample():
            return llama.generate(
                state["model"],
                prompt,
                new_tokens,
                top_k=TOP_K,
                temperature=TEMPERATURE,
                cache_size=cache,
                kv_cache_quantization=kv_quant,
                linear_causal_mask=linear_mask,
                callback=llmperf.tick,
            )

        llmperf.generation(
            sample,
            setup=state["model"].free_caches,  # untimed: each sample allocates its caches
            warmup=0,
            rounds=NUM_SAMPLES,
            prompt_tokens=PROMPT_LEN,
        )
        record_decode_metrics(size_gb, new_tokens)
        cache_bytes = llama.cache_nbytes(state["model"])["total"]
        llmperf.record("kv_cache_bytes", cache_bytes, unit="B", kind="memory")

        metric = "peak_memory_reserved" if device.type != "cpu" else "peak_memory"
        measured = llmperf.result.metrics.get(metric)
        if measured is not None:
            _PEAKS[(cache, variant)] = (measured.value, metric)
    finally:
        state.clear()
        gc.collect()
        if device.type != "cpu":
            torch.accelerator.empty_cache()


@pytest.mark.llmperf
def test_kv_cache_peak_memory_ordering(llmperf):
    """At the largest cache size whose three variants all ran in this process:
    plain > int8 > int8 + linear causal mask, as in the reference. The two savings are
    recorded (reported, not gated: they are ratios of other tests' peaks), so this test
    measures something of its own rather than gate nothing."""
    complete = sorted(c for c in {c for c, _ in _PEAKS} if all((c, v) in _PEAKS for v in VARIANTS))
    if not complete:
        pytest.skip(
            "needs the plain, int8 and int8-linear-mask cells of one cache size measured in "
            "this process (not selected, skipped, OOM, or spread over xdist workers)"
        )
    cache = complete[-1]
    peaks = {v: _PEAKS[(cache, v)][0] for v in VARIANTS}
    metric = _PEAKS[(cache, "plain")][1]
    shown = ", ".join(f"{v} {p / 1e6:.1f} MB" for v, p in peaks.items())
    llmperf.params(model=MODEL, cache_size=cache, tier=llmperf.tier)
    for name, (more, less) in {
        "int8_saving": ("plain", "int8"),
        "linear_mask_saving": ("int8", "int8-linear-mask"),
    }.items():
        if peaks[less] > 0:
            ratio = peaks[more] / peaks[less]
            llmperf.record(name, ratio, unit="x", higher_is_better=True, kind="ratio", gated=False)
    assert peaks["plain"] > peaks["int8"] > peaks["int8-linear-mask"], (
        f"{metric} at cache_size {cache} does not order plain > int8 > int8-linear-mask: {shown}"
    )
