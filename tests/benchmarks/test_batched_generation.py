"""Reference 004: FlexGen-style batched generation, "Origin" vs "diagonal" schedule.

OPT-1.3B, ``gpu_batch_size`` 8, ``gen_len`` 32, ``N`` GPU batches in {4, 8, 16, 32}
x prompt length ``P`` in {128, 256, 512, 1024}, everything resident on the device.
Each cell measures both schedules side by side, interleaved (A B A B ...) with
``llmperf.ab``, so machine drift moves both alike and the *ratio* is what is
gated (``schedule.speedup`` from whole-call wall times and ``scale.throughput``
from the timed prefill + decode phases, as the reference computes it), plus
``scale.peak_memory``. Each call is a generation (``generation=True``) whose steps
are marked, so the pairs also gate ``schedule.ttft_speedup``,
``schedule.itl_speedup`` (per token) and ``schedule.itl_p99_speedup``, and each
schedule's TTFT, TPOT and ITL percentiles are recorded. The reference's absolute columns (latency, prefill / decode
/ total throughput, peak memory in GiB) are recorded per schedule, informational.

Tiers (``--llmperf-tier``):
- smoke: every cell on ``opt-smoke`` (2 layers, hidden 128, vocab 2048, fp32) at
  P/16 and gen_len 32: about a minute on a quiet 2-core CPU.
- standard: OPT-1.3B at the documented shapes (fp16) for N in {4, 8} x P in
  {128, 512}; the other cells are skipped with a reason (run them with ``full``).
- full: every cell. N=32, P=1024 needs a 49.5 GiB KV cache: it records status
  ``oom`` on the reference's 45 GB A6000 (on an 80 GB H100 it fits and runs).

Peak memory: on accelerators the allocator peak (``max_memory_allocated``, weights
and KV cache included, as in the reference); on CPU the plugin's RSS high-water
helper (growth during the call: KV cache and activations, not the weights).
"""

from __future__ import annotations

from statistics import median

import pytest

torch = pytest.importorskip("torch")

from pytest_llmperf.measure.memory import peak_of_call  # noqa: E402
from pytest_llmperf.models import opt  # noqa: E402

NUM_BATCHES = (4, 8, 16, 32)
PROMPT_LENS = (128, 256, 512, 1024)
GPU_BATCH_SIZE = 8
GEN_LEN = 32
STANDARD_CELLS = {(4, 128), (4, 512), (8, 128), (8, 512)}
SMOKE_PROMPT_DIVISOR = 16
SMOKE_GEN_LEN = 32
GIB = 2**30

_MODELS: dict[tuple, opt.OPT] = {}


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    """One random-init model per (config, device) shared by the cells of this file."""
    yield
    _MODELS.clear()


@pytest.fixture
def cell():
    """Keeps the cell's prompts alive while the plugin may re-measure; emptied at teardown."""
    holder: dict = {}
    yield holder
    holder.clear()


def _model(cfg: opt.OPTConfig, device) -> opt.OPT:
    key = (cfg, str(device))
    if key not in _MODELS:
        _MODELS.clear()  # a different size: free the previous one first
        _MODELS[key] = opt.build(cfg, device, seed=0)
    return _MODELS[key]


def _mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _peak_gib(device, fn) -> tuple[float, bool, str]:
    """Peak memory of one call of ``fn`` in GiB, whether it is exact, and how measured."""
    reading = peak_of_call(device, fn)
    return reading.peak / GIB, reading.exact, reading.how


def _cells():
    for n in NUM_BATCHES:
        for p in PROMPT_LENS:
            yield pytest.param(n, p, id=f"N{n}-P{p}")


@pytest.mark.llmperf
@pytest.mark.parametrize(("num_batches", "prompt_len"), list(_cells()))
def test_batched_generation(llmperf, cell, num_batches, prompt_len):
    tier = llmperf.tier
    device = llmperf.device
    gen_len = GEN_LEN
    if tier == "smoke":
        cfg = opt.OPTConfig.from_name("opt-smoke")
        prompt_len //= SMOKE_PROMPT_DIVISOR
        gen_len = SMOKE_GEN_LEN
        rounds, warmup = 3, 1
    else:
        if tier == "standard" and (num_batches, prompt_len) not in STANDARD_CELLS:
            pytest.skip(
                f"N={num_batches}, P={prompt_len} is not in the standard tier (only N,P in "
                f"{sorted(STANDARD_CELLS)}): run it with --llmperf-tier=full"
            )
        cfg = opt.OPTConfig.from_name("opt-1.3b")
        rounds, warmup = 3, 1

    dtype = opt.default_dtype(device)
    bytes_per = torch.empty((), dtype=dtype).element_size()
    num_seqs = GPU_BATCH_SIZE * num_batches
    kv_bytes = opt.kv_cache_bytes(
        num_seqs, prompt_len, gen_len, cfg.num_layers, cfg.hidden, bytes_per
    )
    llmperf.group = "batched_generation"
    llmperf.params(
        num_batches=num_batches,
        prompt_len=prompt_len,
        gpu_batch_size=GPU_BATCH_SIZE,
        gen_len=gen_len,
        model=cfg.name,
        num_layers=cfg.num_layers,
        hidden=cfg.hidden,
        dtype=str(dtype).removeprefix("torch."),
        kv_cache_gib=round(kv_bytes / GIB, 3),
        tier=tier,
    )

    if device.type == "cpu":
        # A CPU allocation succeeds lazily and then swaps; say "oom" up front instead.
        avail = _mem_available_bytes()
        if avail is not None and kv_bytes > 0.9 * avail:
            raise MemoryError(
                f"KV cache needs {kv_bytes / GIB:.1f} GiB, {avail / GIB:.1f} GiB available"
            )

    # Building the model or the KV cache may raise torch.OutOfMemoryError: the
    # plugin records that as status "oom" (reference 004's N=32, P=1024 cell).
    model = _model(cfg, device)
    cell["prompts"] = prompts = opt.random_prompts(
        num_batches, prompt_len, GPU_BATCH_SIZE, cfg.vocab_size, device, seed=0
    )

    def origin(callback=llmperf.tick):
        opt.generate_origin(model, prompts, gen_len, GPU_BATCH_SIZE, callback)

    def diagonal(callback=llmperf.tick):
        opt.generate_diagonal(model, prompts, gen_len, GPU_BATCH_SIZE, callback=callback)

    # Each call is a generation whose every step (one token for each of the 8N sequences)
    # is marked: the pairs gate the schedules' TTFT, per-token ITL and ITL p99 ratios too.
    ab = llmperf.ab(
        origin,
        diagonal,
        rounds=rounds,
        warmup=warmup,
        name="schedule",
        generation=True,
        batch=num_seqs,
        prompt_tokens=prompt_len,
    )

    # The reference's phases from each measured generation's token marks, paired: prefill
    # = the first token (TTFT: the prompt pass and the first sampled token), decode = the
    # first token to the last (tokens 1..gen_len-1). Warm-up and work-signature calls
    # are not in the logs (timing the phases inside the calls counted the signature pass,
    # slowed by its counters, as a measured pair).
    logs = {"origin": ab.reference, "diagonal": ab.candidate}
    measured = {
        key: [(g[1], g[-1] - g[1]) for g in m.generation.log.marks] for key, m in logs.items()
    }
    for key, runs in measured.items():
        pre = median([p for p, _ in runs])
        dec = median([d for _, d in runs])
        thr = opt.generation_throughputs(num_seqs, prompt_len, gen_len, pre, dec)
        llmperf.record(
            f"{key}.latency",
            median([p + d for p, d in runs]),
            "s",
            kind="time",
            samples=[p + d for p, d in runs],
            gated=False,
        )
        for metric in ("throughput", "prefill_throughput", "decode_throughput"):
            llmperf.record(
                f"{key}.{metric}",
                thr[metric],
                "tokens/s",
                higher_is_better=True,
                kind="throughput",
                gated=False,
            )

    # Reference "scale" = diagonal / origin total throughput = origin / diagonal total
    # latency, one sample per interleaved pair.
    pair_scales = [
        (po + do) / (pd + dd)
        for (po, do), (pd, dd) in zip(measured["origin"], measured["diagonal"], strict=True)
        if pd + dd > 0
    ]
    llmperf.record(
        "scale.throughput",
        median(pair_scales),
        "x",
        higher_is_better=True,
        kind="ratio",
        samples=pair_scales,
    )

    # Peak memory: one separate call per schedule, each from a reset high-water mark.
    peaks = {}
    exact = True
    how = ""
    for key, fn in (("origin", origin), ("diagonal", diagonal)):
        gib, ok, how = _peak_gib(device, lambda fn=fn: fn(callback=None))
        peaks[key] = gib
        exact = exact and ok
    if peaks["origin"] <= 0:
        # no usable measurement: the analytic KV-cache size, the same for both schedules
        peaks = {k: kv_bytes / GIB for k in peaks}
        exact = False
        how = "analytic KV-cache bytes (no peak-memory measurement available)"
    if device.type == "cpu":
        # RSS growth of a smoke-sized call is a few MB: too noisy to gate a ratio on.
        exact = False
    llmperf.result.notes.append(f"peak memory: {how}")
    for key, gib in peaks.items():
        llmperf.record(f"{key}.peak_memory", gib, "GiB", kind="memory", gated=False)
    llmperf.record(
        "scale.peak_memory",
        peaks["diagonal"] / peaks["origin"],
        "x",
        kind="ratio",
        gated=exact,
    )
