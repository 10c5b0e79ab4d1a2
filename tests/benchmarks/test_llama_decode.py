"""Reference 003 (top sections): Llama decode throughput under torchao quantization.

gpt-fast's ``generate.py`` as torchao v0.6 ran it: prompt prefill + 200 new
tokens decoded one at a time, top-k 200, temperature 0.8, seed 1234, 5
samples; with ``--compile`` the decode step goes through torch.compile and
one untimed warm-up sample precedes them. Every cell of
{Llama-2-7b-chat-hf, Meta-Llama-3-8B} x {bf16, fp32, int8wo, int8dq,
int4wo-64, float8wo, uintx-4-64, uintx-2-8, fp6, autoquant, sparse-marlin} x
{compile, eager} is a test case (the reference's rows are a subset; see
``REFERENCE_ROWS``). Modes the installed torchao or the device lacks are
skipped with a reason naming both.

Metrics (group ``llama_decode``): ``throughput`` = new tokens / time of the
whole ``generate`` (prefill included), per sample, measured with
``llmperf.generation`` (each new token marked through ``generate``'s callback), so
TTFT, TPOT, ITL p50/p90/p99 and prefill / decode throughput come beside it;
``model_size`` (GB,
parameters without embeddings, quantized components counted); ``mem_per_s`` =
model_size x tok/s; peak memory from the fixture (``peak_memory_reserved`` on
accelerators, RSS growth on CPU).

Tiers:
- smoke: tiny stand-ins of both models (``tiny-<name>``), 16 new tokens, eager
  only. torch.compile of even the tiny decode step takes 30-100 s on a 2-core
  CPU, more than this whole module's budget, so compile cells are skipped
  on CPU in this tier.
- standard: the real 7B/8B shapes on one GPU, the cells of ``STANDARD_CELLS``
  (about 3 minutes on an H100): compile costs ~1 minute per cell.
- full: every cell.
"""

import gc

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.models import llama  # noqa: E402
from pytest_llmperf.models import quantization as quant  # noqa: E402

MODELS = ("Llama-2-7b-chat-hf", "Meta-Llama-3-8B")
MODES = quant.MODES
MAX_NEW_TOKENS = 200
NUM_SAMPLES = 5
TOP_K = 200
TEMPERATURE = 0.8
SEED = 1234
PROMPT_LEN = 6  # "Hello, my name is" with BOS in the Llama 2 tokenizer
SMOKE_NEW_TOKENS = 16

#: (model, mode, compile) rows present in the reference file (for the report;
#: the remaining cells of the cross product are run too).
REFERENCE_ROWS = frozenset(
    {(m, mode, True) for m in MODELS for mode in ("bf16", "int8dq", "int8wo", "fp6", "int4wo-64")}
    | {(m, "autoquant", True) for m in MODELS}
    | {(m, mode, False) for m in MODELS for mode in ("fp32", "bf16")}
    | {(m, mode, True) for m in MODELS for mode in ("uintx-4-64", "uintx-2-8", "sparse-marlin")}
)

#: Standard tier (one 80 GB GPU, ~3 minutes): bf16 eager and compiled, and the
#: int8 weight-only headline row, on Llama-2-7B; bf16 eager on Llama-3-8B.
STANDARD_CELLS = frozenset(
    {
        ("Llama-2-7b-chat-hf", "bf16", False),
        ("Llama-2-7b-chat-hf", "bf16", True),
        ("Llama-2-7b-chat-hf", "int8wo", True),
        ("Meta-Llama-3-8B", "bf16", False),
    }
)


def _cells():
    for model in MODELS:
        for mode in MODES:
            for compile_ in (True, False):
                yield pytest.param(
                    model, mode, compile_, id=f"{model}-{mode}-{'compile' if compile_ else 'eager'}"
                )


def _release(device):
    gc.collect()
    if device.type != "cpu":
        torch.accelerator.empty_cache()


@pytest.mark.llmperf
@pytest.mark.parametrize(("model_name", "mode", "compile_"), list(_cells()))
def test_llama_decode(llmperf, record_decode_metrics, model_name, mode, compile_):
    tier, device = llmperf.tier, llmperf.device
    dtype = quant.mode_dtype(mode)
    smoke = tier == "smoke"
    new_tokens = SMOKE_NEW_TOKENS if smoke else MAX_NEW_TOKENS
    llmperf.group = "llama_decode"
    llmperf.params(
        model=model_name,
        mode=mode,
        compile=compile_,
        dtype=str(dtype).removeprefix("torch."),
        max_new_tokens=new_tokens,
        num_samples=NUM_SAMPLES,
        top_k=TOP_K,
        temperature=TEMPERATURE,
        in_reference=(model_name, mode, compile_) in REFERENCE_ROWS,
        tier=tier,
        threads=torch.get_num_threads(),
    )
    reason = quant.unavailable_reason(mode, device)
    if reason:
        pytest.skip(reason)
    if tier == "standard" and (model_name, mode, compile_) not in STANDARD_CELLS:
        pytest.skip(f"{model_name}/{mode}/compile={compile_} runs in --llmperf-tier=full only")
    if smoke and compile_ and device.type == "cpu":
        pytest.skip(
            "torch.compile of the decode step takes 30-100 s on a small CPU, over the smoke "
            "budget: compile cells run in --llmperf-tier=standard/full"
        )

    name = f"tiny-{model_name}" if smoke else model_name
    _release(device)
    if compile_:
        torch._dynamo.reset()  # a fresh model per cell; never hit the recompile limit
    # OOM here is recorded as status oom
    model = llama.build(llama.LlamaConfig.from_name(name), device, dtype)
    state = {"model": model}
    del model
    try:
        quant.quantize(state["model"], mode)
        size_gb = llama.model_size_gb(state["model"])
        prompt = llama.random_prompt(state["model"], PROMPT_LEN, device)
        state["model"].setup_caches(1, PROMPT_LEN + new_tokens)
        decode_fn = llama.compiled_decode_one_token(device) if compile_ else None
        torch.manual_seed(SEED)

        def sample():
            return llama.generate(
                state["model"],
                prompt,
                new_tokens,
                top_k=TOP_K,
                temperature=TEMPERATURE,
                decode_fn=decode_fn,
                callback=llmperf.tick,
            )

        # Each sample is one generation, its tokens marked: tok/s as before, and TTFT,
        # TPOT and the inter-token latency percentiles beside it.
        out = llmperf.generation(
            sample, warmup=1 if compile_ else 0, rounds=NUM_SAMPLES, prompt_tokens=PROMPT_LEN
        )
        assert out.shape == (1, PROMPT_LEN + new_tokens)

        record_decode_metrics(size_gb, new_tokens)
    finally:
        state.clear()  # drop the model even after an OOM (the traceback keeps this frame)
        if compile_:
            torch._dynamo.reset()
        _release(device)
