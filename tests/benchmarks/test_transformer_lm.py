"""References 001/002: the CS336 Transformer LM forward / forward+backward sweep.

Every cell of the documented sweep is one test case: 5 model sizes x context
128/256/512/1024 x warm-up 0/1/5 x forward-only / forward+backward (with an
AdamW step, lr 1e-3, weight decay 1e-2) = 120 cells, batch 4, 10 measured steps,
each step synchronized by the fixture's timer.

Tiers (``--llmperf-tier``):
- smoke: every cell, on tiny stand-ins of the same architecture
  (``TransformerLMConfig.from_name("tiny-<size>")``: dims ordered like the real
  sizes, vocab 512) at 1/8 of the documented context; about a minute on an idle
  2-core CPU.
- standard: documented shapes. ``small`` and ``medium`` at every context,
  warm-up and mode (48 cells), ``large``, ``xl`` and ``2.7B`` at context 128
  (18 cells): every size is gated, and all fit one 80 GB GPU (2.7B training in
  fp32 with AdamW needs ~60 GB at context 128). Estimated from FLOPs at fp32
  speed, about 1-2 minutes on one H100; the skipped 54 cells (large/xl/2.7B at
  256-1024) would add about 5 more.
- full: all 120 cells at the documented shapes. Cells that do not fit the
  device record status ``oom`` (like 002's OOM rows) instead of crashing.

Precision: float32 everywhere (TF32 left at PyTorch's default, off), as in the
handout's baseline runs; its bf16 autocast is a separate experiment, not these
tables. Forward-only steps run under torch.no_grad() (inference), forward+backward
steps are a full training step: cross-entropy, backward, AdamW.
The model is built directly on the measured device, fresh for every cell.
"""

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.models import transformer_lm as tlm  # noqa: E402

SIZES = list(tlm.SIZES)  # small, medium, large, xl, 2.7B
CONTEXTS = (128, 256, 512, 1024)
WARMUPS = (0, 1, 5)
MODES = ("fwd", "fwd_bwd")
BATCH_SIZE = 4
MEASURED_STEPS = 10
#: Standard tier: the whole sweep of the two sizes 001 covers most, plus every
#: larger size at the shortest context, so each documented shape is still gated.
STANDARD_FULL_SWEEP = ("small", "medium")
STANDARD_CONTEXT_OTHERS = 128
SMOKE_CONTEXT_DIVISOR = 8

# Warm-up 0 is the references' headline finding: the first step pays one-off
# costs (kernel selection, allocator growth, lazy AdamW state, and for the
# first cell of a process the CUDA context and library handles), e.g. 001
# small@128 fwd 105.1 +- 209.7 ms vs 38.0 +- 2.1 ms after one warm-up step.
# How large that cold step is depends on what ran before in the same process
# (which cell comes first, -k selections, xdist scheduling), so its timing is
# not a property of the code under test and would make the gate flap. These
# cells therefore record time and throughput informationally (the report still
# shows the spread) and gate only peak memory, which the cold step does not
# make noisy, and the work signature (counted on a warm call, outside the
# rounds). Warm-up 1 and 5 cells are gated on everything.
COLD_START_POLICY = pytest.mark.llmperf(gate=["peak_memory", "work"])


def _cells():
    for size in SIZES:
        for context_length in CONTEXTS:
            for warmup in WARMUPS:
                for mode in MODES:
                    yield pytest.param(
                        size,
                        context_length,
                        warmup,
                        mode,
                        id=f"{size}-ctx{context_length}-warmup{warmup}-{mode}",
                        marks=[COLD_START_POLICY] if warmup == 0 else [],
                    )


@pytest.fixture
def cell(llmperf_device):
    """Holds this cell's model, optimizer and batch; emptied at teardown.

    The plugin keeps the measured callable after the test body returns (it may
    re-measure an unclear metric while judging, and it keeps the call for
    --llmperf-profile-on-failure), so the model must stay alive until then but
    not longer: the next cell, maybe a larger size, needs that memory. On an
    accelerator the cached blocks go back too, so the next cell's reserved peak
    is its own and not what an earlier, larger cell left in the allocator.
    """
    holder = {}
    yield holder
    holder.clear()
    if llmperf_device.type != "cpu":
        import gc

        gc.collect()
        torch.accelerator.empty_cache()


@pytest.mark.llmperf
@pytest.mark.parametrize(("size", "context_length", "warmup", "mode"), list(_cells()))
def test_transformer_lm(llmperf, cell, size, context_length, warmup, mode):
    tier = llmperf.tier
    if tier == "smoke":
        cfg = tlm.TransformerLMConfig.from_name(
            f"tiny-{size}", context_length // SMOKE_CONTEXT_DIVISOR
        )
    elif (
        tier == "standard"
        and size not in STANDARD_FULL_SWEEP
        and context_length != STANDARD_CONTEXT_OTHERS
    ):
        pytest.skip(
            f"the standard tier runs {size} at context {STANDARD_CONTEXT_OTHERS} only: "
            "run every cell with --llmperf-tier=full"
        )
    else:
        cfg = tlm.TransformerLMConfig.from_name(size, context_length)

    forward_only = mode == "fwd"
    llmperf.group = "transformer_lm"
    llmperf.params(
        model_size=size,
        d_model=cfg.d_model,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        context_length=cfg.context_length,
        batch_size=BATCH_SIZE,
        num_warmups=warmup,
        num_trials=MEASURED_STEPS,
        forward_only=forward_only,
        vocab_size=cfg.vocab_size,
        dtype="float32",
        tier=tier,
    )

    # Building a model that does not fit raises torch.OutOfMemoryError here,
    # which the plugin records as status "oom" like one inside the fixture.
    cell["model"] = model = tlm.build(cfg, llmperf.device)
    cell["batch"] = tlm.random_batch(cfg, BATCH_SIZE, llmperf.device)
    cell["optimizer"] = None if forward_only else tlm.make_optimizer(model)
    del model

    def step():
        if forward_only:
            tlm.forward_step(cell["model"], cell["batch"])
        else:
            tlm.train_step(cell["model"], cell["optimizer"], cell["batch"])

    llmperf.pedantic(
        step,
        warmup=warmup,
        rounds=MEASURED_STEPS,
        items=BATCH_SIZE * cfg.context_length,
        flops=tlm.flops(cfg, BATCH_SIZE, train=not forward_only),  # informational MFU
    )
