"""Tensor-parallel OPT (models/tensor_parallel.py) and measure_link, on gloo.

Two real processes (rank 0 and 1, a FileStore rendezvous, bounded timeouts so a hang
fails) each build their shard of opt-tiny and check it against the single-device
model; a one-process group (world size 1) runs in-process.
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pytest_llmperf.models import opt
from pytest_llmperf.models import tensor_parallel as tp
from pytest_llmperf.roofline.calibration import measure_link

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

TIMEOUT = 90
TINY = opt.OPTConfig.from_name("opt-tiny")

WORKER = """
import datetime, json, os, sys
import torch
import torch.distributed as dist
from pytest_llmperf.models import opt, tensor_parallel as tp
from pytest_llmperf.roofline.calibration import measure_link

rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
dist.init_process_group(
    "gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2,
    timeout=datetime.timedelta(seconds=60),
)
cfg = opt.OPTConfig.from_name("opt-tiny")
tokens = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
plain = opt.build(cfg, seed=3)
model = tp.build(cfg, seed=3)
r = {"diff": (model(tokens) - plain(tokens)).abs().max().item()}
r["params"] = sum(p.numel() for p in model.parameters())
r["shapes"] = {n: list(p.shape) for n, p in model.named_parameters()}
# Non-zero biases and LayerNorms (the init zeroes them): a bias added before the
# all-reduce would count twice.
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for p in plain.parameters():
        if p.dim() == 1:
            p.add_(torch.randn(p.shape, generator=g))
model.load_full(plain.named_parameters())
r["diff_biased"] = (model(tokens) - plain(tokens)).abs().max().item()
link = measure_link()
r["link"] = [link.name, link.bytes_per_s, link.latency_s, link.source]
# A sub-group of rank 0 only: rank 0 runs a world-1 model in it, rank 1 is refused.
only0 = dist.new_group([0])
if rank == 0:
    plain = opt.build(cfg, seed=4)
    r["subgroup_diff"] = (tp.build(cfg, seed=4, group=only0)(tokens) - plain(tokens)).abs().max().item()
else:
    try:
        tp.build(cfg, group=only0)
        r["outsider"] = "built"
    except ValueError as e:
        r["outsider"] = str(e)
with open(out, "w") as f:
    json.dump(r, f)
# Leave without the interpreter's teardown: at exit, gloo's worker thread can still
# hold objects that the teardown destroys, and the rank aborts ("terminate called
# without an active exception", -6) after its result is written. The barrier first,
# so that no rank tears down its group while the other still uses it.
dist.barrier()
dist.destroy_process_group()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
"""


def _run_two_ranks(root: Path) -> list[dict]:
    script = root / "tp_worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), str(root / "store"), str(root / f"r{rank}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        texts = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        texts = [p.communicate()[0] for p in procs]
        pytest.fail("the tensor-parallel ranks hung:\n" + "\n---\n".join(texts))
    for rank, (p, text) in enumerate(zip(procs, texts, strict=True)):
        assert p.returncode == 0, f"rank {rank} failed:\n{text}"
    return [json.loads((root / f"r{rank}").read_text()) for rank in (0, 1)]


@pytest.mark.multiprocess
def test_two_ranks_match_the_single_device_model(tmp_path: Path) -> None:
    r0, r1 = _run_two_ranks(tmp_path)
    for r in (r0, r1):
        assert r["diff"] < 1e-5, r["diff"]
        assert r["diff_biased"] < 1e-5, r["diff_biased"]
        # Each rank holds half of every sharded matrix, all of the replicated ones.
        assert r["params"] == tp.num_parameters_per_rank(TINY, 2)
        assert r["shapes"]["layers.0.q_proj.weight"] == [32, 64]
        assert r["shapes"]["layers.0.out_proj.weight"] == [64, 32]
        assert r["shapes"]["layers.0.out_proj.bias"] == [64]
        assert r["shapes"]["layers.1.fc1.weight"] == [128, 64]
        assert r["shapes"]["layers.1.fc2.weight"] == [64, 128]
        assert r["shapes"]["embed_tokens.weight"] == [512, 64]
    assert r0["subgroup_diff"] == 0.0
    assert r1["outsider"] == "this process is not a member of the process group it was given"
    name, bandwidth, latency, source = r0["link"]
    assert r0["link"] == r1["link"]  # the ranks agree on one Link
    assert name == "gloo (2 ranks, measured)" and source == "calibrated"
    assert math.isfinite(bandwidth) and bandwidth > 0
    assert math.isfinite(latency) and latency > 0


def test_num_parameters_per_rank() -> None:
    assert tp.num_parameters_per_rank(TINY, 1) == opt.num_parameters(TINY)
    big = opt.OPTConfig.from_name("opt-1.3b")
    assert tp.num_parameters_per_rank(big, 1) == opt.num_parameters(big)
    # The sharded matrices (and column-parallel biases) halve; the rest is replicated.
    d, f = big.hidden, big.ffn
    sharded = big.num_layers * (4 * d * d + 3 * d + 2 * d * f + f)
    assert tp.num_parameters_per_rank(big, 1) - tp.num_parameters_per_rank(big, 2) == sharded // 2


def test_world_sizes_that_cannot_split_the_model() -> None:
    big = opt.OPTConfig.from_name("opt-1.3b")
    with pytest.raises(ValueError, match=r"^opt-1\.3b: 32 heads cannot be split over 3 ranks$"):
        tp.check_world_size(big, 3)
    with pytest.raises(ValueError, match=r"opt-1\.3b: 32 heads cannot be split over 64 ranks"):
        tp.num_parameters_per_rank(big, 64)
    odd_ffn = opt.OPTConfig("odd", 1, 64, 4, 250)
    with pytest.raises(ValueError, match=r"odd: ffn 250 cannot be split over 4 ranks"):
        tp.check_world_size(odd_ffn, 4)
    with pytest.raises(ValueError, match=r"opt-tiny: world size must be an integer >= 1, got 0"):
        tp.check_world_size(TINY, 0)


def test_no_process_group_is_a_clear_error() -> None:
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        tp.build(TINY)
    with pytest.raises(ValueError, match="measure_link needs a process group"):
        measure_link()


@pytest.fixture
def one_rank_group():
    dist.init_process_group(
        "gloo",
        store=dist.HashStore(),
        rank=0,
        world_size=1,
        timeout=datetime.timedelta(seconds=30),
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_world_size_one(one_rank_group) -> None:
    tokens = torch.randint(0, TINY.vocab_size, (1, 9), generator=torch.Generator().manual_seed(2))
    plain = opt.build(TINY, seed=5)
    model = tp.build(TINY, seed=5)
    assert torch.equal(model(tokens), plain(tokens))
    assert sum(p.numel() for p in model.parameters()) == opt.num_parameters(TINY)
    assert tp.build(TINY, "meta").layers[0].fc1.weight.is_meta
    with pytest.raises(ValueError, match="the process group has 1 rank; nothing to measure"):
        measure_link()
    with pytest.raises(ValueError, match="sizes must be bytes"):
        measure_link(sizes=(64, 8))
