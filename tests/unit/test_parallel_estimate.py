"""The roofline estimator on N devices: tensor, pipeline and data parallel, the links
of the datasheet devices, and the CLI's ``--devices`` / ``--parallel`` options.

Pure functions and ``cli.main`` with capsys: no torch, no subprocess.
"""

from __future__ import annotations

import json
import math

import pytest

from pytest_llmperf.roofline import cli, device_specs, interconnect
from pytest_llmperf.roofline.device_specs import Peaks
from pytest_llmperf.roofline.estimator import estimate
from pytest_llmperf.roofline.shapes import get_model

A5000 = dict(device="RTX A5000", dtype="fp16")
#: PCIe 4.0 x16 per direction, and the ring steps of an all-reduce over 8 devices
PCIE4_X16 = 16 * 1.969e9
PEAKS = Peaks(1e12, 1e11, "test", 100.0)  # no link: a calibrated device is like this


def _by_name(est, name: str):
    found = [c for c in est.ops if c.name == name]
    assert len(found) == 1, (name, [c.name for c in est.ops])
    return found[0]


def _collectives(est) -> list:
    return [c for c in est.ops if c.kind == "collective"]


# ------------------------------------------------------------------ one device


_WORKLOADS = [
    ("opt-1.3b", dict(mode="forward", batch=3, seq_len=64, **A5000)),
    ("llama-3-8b", dict(mode="train", batch=2, seq_len=32, device=PEAKS, dtype="bf16")),
    ("clm-60m", dict(mode="generate", batch=2, seq_len=16, gen_len=4, device="H100",
                     dtype="fp16", launch_overhead_s=5e-6)),
    ("cs336-small", dict(mode="decode", batch=4, kv_len=100, device="A100 80GB", dtype="fp32")),
]  # fmt: skip


@pytest.mark.parametrize("parallel", ["tp", "pp", "dp"])
@pytest.mark.parametrize(("model", "kwargs"), _WORKLOADS, ids=[w[0] for w in _WORKLOADS])
def test_one_device_is_the_single_device_estimate_in_every_parallel_mode(model, kwargs, parallel):
    base = estimate(model, **kwargs)
    one = estimate(model, devices=1, parallel=parallel, **kwargs)
    assert one.to_dict() == base.to_dict()
    assert (one.devices, one.parallel, one.link, one.micro_batches) == (1, "", "", 0)
    assert one.communication_s == 0.0 and one.bubble_s == 0.0 and not _collectives(one)
    assert one.energy_j == one.energy_j_per_device


def test_one_device_keeps_the_pinned_single_device_numbers():
    """test_roofline's pinned opt-1.3b forward, asked for as one pipeline stage."""
    est = estimate("opt-1.3b", batch=1, seq_len=512, dtype="bf16", device="RTX A5000",
                   devices=1, parallel="pp")  # fmt: skip
    assert est.runtime_s == pytest.approx(0.013756908484128413, rel=1e-12)
    assert (est.flops, est.bytes) == (1395663044608.0, 4654313472.0)
    assert est.memory == {"weights": 2631516160, "activations": 53575680}


# ------------------------------------------------------------------ tensor parallel


def test_tp_splits_the_column_and_row_parallel_ops_and_replicates_the_rest():
    kw = dict(mode="forward", batch=1, seq_len=512, **A5000)
    x1 = estimate("opt-1.3b", **kw)
    x8 = estimate("opt-1.3b", devices=8, parallel="tp", **kw)
    sharded = ["q_proj", "kv_proj", "attention", "out_proj", "fc1", "relu", "fc2"]
    for name in sharded:  # row-parallel out_proj / fc2 keep their (replicated) bias add
        one, eight = _by_name(x1, f"forward.{name}"), _by_name(x8, f"forward.{name}")
        assert eight.flops == pytest.approx(one.flops / 8, rel=0.01), name
    for name in ["embedding", "positions", "norm", "residual", "final_norm", "lm_head"]:
        one, eight = _by_name(x1, f"forward.{name}"), _by_name(x8, f"forward.{name}")
        assert (eight.flops, eight.bytes, eight.seconds) == (one.flops, one.bytes, one.seconds)
    split = sum(_by_name(x8, f"forward.{n}").seconds for n in sharded)
    whole = sum(_by_name(x1, f"forward.{n}").seconds for n in sharded)
    assert split == pytest.approx(whole / 8, rel=0.05)
    assert x8.parallel == "tp" and x8.devices == 8 and x8.flops < x1.flops / 3


def test_tp_all_reduces_two_per_layer_priced_by_the_ring_formula():
    """opt-1.3b, batch 1 x 512 on 8 A5000s: 48 all-reduces of 512 x 2048 x 2 bytes, each
    2 (N-1)/N x bytes / bandwidth + 2 (N-1) x 10 us over PCIe 4.0 x16."""
    est = estimate("opt-1.3b", batch=1, seq_len=512, devices=8, parallel="tp", **A5000)
    comm = _collectives(est)
    assert {c.name for c in comm} == {"forward.all_reduce.attention", "forward.all_reduce.mlp"}
    assert sum(c.count for c in comm) == 48
    assert all(c.bytes == c.count * 512 * 2048 * 2 and c.bound == "link" for c in comm)
    one = 14 / 8 * (512 * 2048 * 2) / PCIE4_X16 + 14 * 10e-6
    assert est.communication_s == pytest.approx(48 * one, rel=1e-12)
    assert est.communication_bytes == 48 * 512 * 2048 * 2
    assert est.link == "PCIe 4.0 x16, 31.5 GB/s, 10 us/step (datasheet)"
    # the collectives are priced on the link, apart from the device's bytes and FLOPs
    assert est.bytes == sum(c.bytes for c in est.ops if c.kind != "collective")
    assert est.runtime_s == pytest.approx(sum(c.seconds for c in est.ops), rel=1e-12)


def test_tp_training_has_four_all_reduces_per_layer_and_each_decode_step_two():
    train = estimate("opt-1.3b", mode="train", batch=1, seq_len=64, devices=8, **A5000)
    by_phase = {
        phase: sum(c.count for c in _collectives(train) if c.name.startswith(phase))
        for phase in ("forward", "backward", "optimizer")
    }
    assert by_phase == {"forward": 48, "backward": 48, "optimizer": 0}
    gen = estimate("opt-1.3b", mode="generate", batch=2, seq_len=64, gen_len=5, devices=8,
                   **A5000)  # fmt: skip
    steps = [c for c in _collectives(gen) if c.name.startswith("decode.")]
    # 4 decode steps, 2 per layer each, of batch x 1 x d_model x 2 bytes
    assert sum(c.count for c in steps) == 48  # per step (the count of one step)
    assert sum(c.bytes for c in steps) == 4 * 48 * 2 * 2048 * 2
    one = 14 / 8 * (2 * 2048 * 2) / PCIE4_X16 + 14 * 10e-6
    assert sum(c.seconds for c in steps) == pytest.approx(4 * 48 * one, rel=1e-12)


def test_decode_heavy_generation_on_pcie_is_communication_bound():
    """Reference 000: opt-1.3b on 8 A5000s over PCIe ran about twice as long as on one
    (1415 vs 741 ms measured): every decode step pays 2L all-reduce latencies."""
    kw = dict(mode="generate", batch=1, seq_len=128, gen_len=200, **A5000)
    x1 = estimate("opt-1.3b", **kw)
    x8 = estimate("opt-1.3b", devices=8, parallel="tp", **kw)
    assert x8.runtime_s > x1.runtime_s
    assert 1.5 < x8.runtime_s / x1.runtime_s < 3
    assert x8.communication_s > 0.5 * x8.runtime_s


def test_nvlink_beats_pcie_for_the_same_work():
    kw = dict(mode="generate", batch=1, seq_len=128, gen_len=50, dtype="fp16", devices=8)
    pcie = estimate("opt-1.3b", device="RTX A5000", **kw)
    h100 = estimate("opt-1.3b", device="H100 SXM", **kw)
    assert h100.runtime_s < pcie.runtime_s and h100.communication_s < pcie.communication_s
    assert "NVLink 4" in h100.link
    # the link alone: the same A5000s over an NVLink-class link
    fast = estimate("opt-1.3b", device="RTX A5000", link=interconnect.nvlink("x", 600), **kw)
    assert fast.communication_s < pcie.communication_s / 3
    assert fast.runtime_s - fast.communication_s == pytest.approx(
        pcie.runtime_s - pcie.communication_s, rel=1e-12
    )


def test_tp_memory_per_device_is_the_split_weights_plus_the_replicated_ones():
    kw = dict(mode="generate", batch=2, seq_len=128, gen_len=32, **A5000)
    m = get_model("opt-6.7b")
    d, f, kv, v, L = m.d_model, m.d_ff, m.kv_dim, m.vocab_size, m.n_layers
    sharded = 2 * d * d + 2 * d * kv + d + 2 * kv + 2 * d * f + f  # q,k,v,out, fc1, fc2
    replicated = v * d + (m.max_positions + 2) * d + 2 * d + L * (4 * d + d + d)  # + biases
    assert replicated + L * sharded == m.num_parameters()
    x1 = estimate(m, **kw)
    x8 = estimate(m, devices=8, parallel="tp", **kw)
    assert x8.memory["weights"] == (replicated + L * sharded // 8) * 2
    assert x8.memory["kv_cache"] == x1.memory["kv_cache"] / 8
    assert x8.memory["activations"] == x1.memory["activations"]  # the replicated logits
    last = dict(kw, logits="last")  # without them, the split MLP / attention tensors decide
    assert (
        estimate(m, devices=8, **last).memory["activations"]
        < estimate(m, **last).memory["activations"] / 2  # the residual stream stays whole
    )
    assert x8.memory_bytes < x1.memory_bytes / 5


# ------------------------------------------------------------------ pipeline parallel


def test_pipeline_with_one_micro_batch_is_no_faster_than_one_device():
    kw = dict(mode="forward", batch=1, seq_len=512, **A5000)
    x1 = estimate("opt-1.3b", **kw)
    pp = estimate("opt-1.3b", devices=8, parallel="pp", **kw)
    assert pp.micro_batches == 1  # default: one sequence per micro-batch
    assert pp.runtime_s >= x1.runtime_s
    assert pp.bubble_s == pytest.approx(7 / 8 * pp.runtime_s, rel=1e-9)  # 7 of 8 slots idle
    sends = [c for c in pp.ops if c.name == "forward.send.stage"]
    assert len(sends) == 1 and sends[0].bytes == 512 * 2048 * 2


def test_pipeline_with_many_micro_batches_approaches_one_nth():
    kw = dict(mode="forward", batch=32, seq_len=512, **A5000)
    x1 = estimate("opt-6.7b", **kw)
    pp = estimate("opt-6.7b", devices=8, parallel="pp", micro_batches=32, **kw)
    ideal = x1.runtime_s / 8 * (32 + 8 - 1) / 32  # perfectly balanced stages, free sends
    assert ideal < pp.runtime_s < 1.35 * ideal
    assert pp.bubble_s == pytest.approx(7 / 39 * pp.runtime_s, rel=1e-9)
    assert pp.runtime_s == pytest.approx(sum(c.seconds for c in pp.ops), rel=1e-12)
    # memory: the busiest stage. In this forward the first (4 of the 32 layers, token and
    # position tables); in training the last (4 layers, the final norm, its own copy of
    # the tied LM head, and the logits of every micro-batch, which GPipe keeps)
    m = get_model("opt-6.7b")
    d, v = m.d_model, m.vocab_size
    embed = v * d + (m.max_positions + 2) * d
    per_layer = (m.num_parameters() - embed - 2 * d) // m.n_layers
    assert pp.memory["weights"] == (4 * per_layer + embed) * 2
    train = estimate(m, mode="train", batch=4, seq_len=64, devices=8, parallel="pp", **A5000)
    assert train.memory["weights"] == (4 * per_layer + 2 * d + v * d) * 2
    assert pp.memory_bytes < x1.memory_bytes / 4


def test_pipeline_decode_step_goes_through_every_stage_in_turn():
    kw = dict(mode="generate", batch=2, seq_len=64, gen_len=6, **A5000)
    x1 = estimate("opt-1.3b", **kw)
    pp = estimate("opt-1.3b", devices=8, parallel="pp", **kw)
    send = interconnect.send_s(2 * 2048 * 2, device_specs.lookup("RTX A5000").link)
    assert pp.phases["decode"] == pytest.approx(x1.phases["decode"] + 5 * 7 * send, rel=1e-9)
    train = estimate("opt-1.3b", mode="train", batch=4, seq_len=64, devices=8, parallel="pp",
                     **A5000)  # fmt: skip
    names = {c.name for c in train.ops}
    assert {"forward.pipeline.bubble", "backward.pipeline.bubble", "backward.send.stage"} <= names


def test_pipeline_uneven_split_and_micro_batches():
    est = estimate("opt-1.3b", batch=5, seq_len=32, devices=5, parallel="pp", micro_batches=2,
                   **A5000)  # fmt: skip
    assert est.micro_batches == 2 and est.runtime_s > 0 and est.bubble_s > 0


# ------------------------------------------------------------------ data parallel


def test_data_parallel_inference_is_one_device_with_its_share():
    kw = dict(mode="generate", seq_len=64, gen_len=8, **A5000)
    x1 = estimate("opt-1.3b", batch=1, **kw)
    dp = estimate("opt-1.3b", batch=8, devices=8, parallel="dp", **kw)
    assert dp.runtime_s == pytest.approx(x1.runtime_s, rel=1e-12)
    assert dp.memory == x1.memory and dp.communication_s == 0.0
    uneven = estimate("opt-1.3b", batch=10, devices=8, parallel="dp", **kw)  # 2 per device
    assert uneven.runtime_s == pytest.approx(estimate("opt-1.3b", batch=2, **kw).runtime_s)


def test_data_parallel_training_all_reduces_every_gradient_after_the_backward():
    kw = dict(mode="train", seq_len=64, **A5000)
    x1 = estimate("opt-1.3b", batch=1, **kw)
    dp = estimate("opt-1.3b", batch=8, devices=8, parallel="dp", **kw)
    grads = _by_name(dp, "backward.all_reduce.gradients")
    nbytes = get_model("opt-1.3b").num_parameters() * 2
    assert grads.bytes == nbytes
    assert grads.seconds == pytest.approx(14 / 8 * nbytes / PCIE4_X16 + 14 * 10e-6, rel=1e-12)
    assert dp.runtime_s == pytest.approx(x1.runtime_s + grads.seconds, rel=1e-12)
    assert dp.memory == x1.memory  # full weights, gradients and AdamW state on each


# ------------------------------------------------------------------ energy, links


def test_energy_counts_every_board_and_per_device_is_one_board():
    est = estimate("opt-1.3b", batch=1, seq_len=512, devices=8, **A5000)
    assert est.energy_j == pytest.approx(est.runtime_s * 230 * 8, rel=1e-12)
    assert est.energy_j_per_device == pytest.approx(est.runtime_s * 230, rel=1e-12)
    data = est.to_dict()
    assert data["energy_j"] == est.energy_j and data["energy_j_per_device"] == pytest.approx(
        est.energy_j / 8
    )
    assert estimate(
        "opt-1.3b", device=PEAKS, power_w=None, devices=2, link_bandwidth=1e9
    ).energy_j == pytest.approx(  # fmt: skip
        estimate("opt-1.3b", device=PEAKS, devices=2, link_bandwidth=1e9).runtime_s * 100 * 2
    )


def test_link_overrides_change_the_cost_as_the_formula_says():
    kw = dict(batch=1, seq_len=512, devices=8, **A5000)
    nbytes = 512 * 2048 * 2
    no_latency = estimate("opt-1.3b", link_latency_s=0.0, **kw)
    assert no_latency.communication_s == pytest.approx(48 * 14 / 8 * nbytes / PCIE4_X16)
    given = estimate("opt-1.3b", link_bandwidth=100e9, link_latency_s=20e-6, **kw)
    assert given.communication_s == pytest.approx(48 * (14 / 8 * nbytes / 100e9 + 14 * 20e-6))
    assert given.link == "PCIe 4.0 x16, 100 GB/s, 20 us/step (override)"
    # a device without a datasheet link: a bandwidth alone makes one (latency 0)
    calibrated = estimate("opt-1.3b", device=PEAKS, dtype="fp16", batch=1, seq_len=512,
                          devices=8, link_bandwidth=50e9)  # fmt: skip
    assert calibrated.communication_s == pytest.approx(48 * 14 / 8 * nbytes / 50e9)
    assert calibrated.link.startswith("given link, 50 GB/s, 0 us/step (override)")
    measured = interconnect.Link("gloo (2 ranks, measured)", 2e9, 50e-6, "calibrated")
    on_link = estimate("opt-1.3b", device=PEAKS, dtype="fp16", devices=2, link=measured)
    assert on_link.communication_s == pytest.approx(
        48 * interconnect.all_reduce_s(nbytes, 2, measured)
    )


def test_every_datasheet_device_has_its_link():
    links = {s.name: s.link for s in device_specs.SPECS}
    assert all(isinstance(link, interconnect.Link) for link in links.values())
    for name in ("RTX A5000", "RTX A6000", "RTX 4090", "A100 80GB PCIe", "L40S", "A10"):
        assert links[name] == interconnect.pcie(4, 16), name
    assert links["H100 PCIe"] == links["RTX 5090"] == interconnect.pcie(5, 16)
    assert links["T4"] == links["V100 PCIe"] == interconnect.pcie(3, 16)
    assert links["A100 40GB"].bytes_per_s == links["A100 80GB"].bytes_per_s == 300e9
    assert links["H100 SXM"].bytes_per_s == links["H200"].bytes_per_s == 450e9
    assert links["B200"].bytes_per_s == 900e9 and links["V100"].bytes_per_s == 150e9
    assert links["H100 NVL"].bytes_per_s == 300e9 and links["MI300X"].bytes_per_s == 448e9
    assert device_specs.lookup("NVIDIA H100 80GB HBM3").peaks("bf16").link == links["H100 SXM"]


# ------------------------------------------------------------------ bad input


_BAD = [
    (dict(devices=0), "devices must be a whole number >= 1, got 0"),
    (dict(devices=2.0), "devices must be a whole number >= 1, got 2.0"),
    (dict(devices=2, parallel="zz"), "unknown parallel mode 'zz'; known: tp"),
    (dict(devices=12), "opt-1.3b has 32 attention heads: tensor parallel over 12 devices "
                       "needs a device count that divides 32"),
    (dict(model="llama-3-8b", devices=16), "llama-3-8b has 8 key/value heads .*over 16 "
                                           "devices needs a device count that divides 8"),
    (dict(model="clm-400m", devices=5), r"clm-400m has an MLP width \(d_ff\) of 3328: tensor "
                                        "parallel over 5 devices needs a device count"),
    (dict(devices=32, parallel="pp"), "opt-1.3b has 24 layers: pipeline parallel over 32 "
                                      "devices needs at most 24 devices"),
    (dict(devices=8, parallel="dp", batch=4), "data parallel over 8 devices needs batch >= 8"
                                              ".*got batch 4"),
    (dict(devices=2, parallel="pp", batch=4, micro_batches=0),
     r"micro_batches must be a whole number from 1 to the batch \(4\), got 0"),
    (dict(devices=2, parallel="pp", batch=4, micro_batches=5),
     r"micro_batches must be a whole number from 1 to the batch \(4\), got 5"),
    (dict(devices=2, micro_batches=2, batch=4), "micro_batches=2 applies to pipeline parallel"),
    (dict(devices=2, link_bandwidth=-1.0), r"link_bandwidth must be a finite number > 0 "
                                           r"\(bytes/s\), got -1.0"),
    (dict(devices=2, link_bandwidth=math.nan), "link_bandwidth must be a finite number > 0"),
    (dict(devices=2, link_latency_s=-1e-6), "link_latency_s must be a finite number >= 0"),
    (dict(devices=2, link="pcie"), "link must be an interconnect.Link"),
    (dict(devices=2, device=PEAKS), "has no datasheet link: estimating 2 devices needs "
                                    "link=Link"),
]  # fmt: skip


def _id(kwargs: dict) -> str:
    return " ".join(f"{k}={'<no link>' if v is PEAKS else v}" for k, v in kwargs.items())


@pytest.mark.parametrize(("kwargs", "message"), _BAD, ids=[_id(b[0]) for b in _BAD])
def test_bad_split_or_link_is_a_value_error_naming_the_value(kwargs, message):
    kwargs = {**A5000, **kwargs}
    with pytest.raises(ValueError, match=message):
        estimate(kwargs.pop("model", "opt-1.3b"), **kwargs)


# ------------------------------------------------------------------ CLI

_CLI = ["estimate", "--model", "opt-1.3b", "--device", "RTX A5000", "--dtype", "fp16"]


def _cli(capsys, *args: str) -> str:
    assert cli.main([*_CLI, *args]) == 0
    return capsys.readouterr().out


def test_cli_tensor_parallel_text(capsys):
    out = _cli(capsys, "--devices", "8", "--parallel", "tp", "--gen-len", "200", "--seq-len", "128")
    lines = out.splitlines()
    assert (
        "devices   8 x RTX A5000, tensor parallel over PCIe 4.0 x16, 31.5 GB/s, "
        "10 us/step (datasheet)"
    ) in lines
    comm = next(line for line in lines if line.startswith("communication  "))
    assert comm.endswith("% of runtime)") and " ms (" in comm
    energy = next(line for line in lines if line.startswith("energy"))
    assert "J (8 boards x 230 W; one board: " in energy and energy.endswith(" J)")
    assert next(line for line in lines if line.startswith("memory")).count("GB per device") == 1


def test_cli_one_device_text_has_no_multi_device_lines(capsys):
    out = _cli(capsys, "--gen-len", "4", "--seq-len", "16")
    assert "devices" not in out and "per device" not in out and "communication" not in out
    assert "boards" not in out


def test_cli_pipeline_and_data_parallel_text(capsys):
    out = _cli(capsys, "--devices", "8", "--parallel", "pp", "--batch", "8", "--micro-batches", "4")
    assert "pipeline parallel (8 stages, 4 micro-batches) over PCIe 4.0 x16" in out
    assert "bubble    " in out and "% of runtime: stages idle" in out
    out = _cli(capsys, "--devices", "8", "--parallel", "dp", "--batch", "16", "--mode", "train")
    assert "data parallel (2 sequences per device) over PCIe 4.0 x16" in out


def test_cli_json_carries_the_multi_device_fields_and_overrides(capsys):
    out = _cli(capsys, "--devices", "8", "--link-bandwidth", "100", "--link-latency", "20",
               "--json")  # fmt: skip
    data = json.loads(out)
    assert data["devices"] == 8 and data["parallel"] == "tp"
    assert data["link"] == "PCIe 4.0 x16, 100 GB/s, 20 us/step (override)"
    nbytes = 512 * 2048 * 2
    assert data["communication_s"] == pytest.approx(48 * (14 / 8 * nbytes / 100e9 + 14 * 20e-6))
    assert data["energy_j"] == pytest.approx(data["runtime_s"] * 230 * 8)
    assert data["energy_j_per_device"] == pytest.approx(data["runtime_s"] * 230)


_CLI_BAD = [
    (["--devices", "0"], "argument --devices: must be >= 1, got 0"),
    (["--devices", "2", "--parallel", "zz"], "argument --parallel: invalid choice: 'zz'"),
    (["--devices", "8", "--link-bandwidth", "-3"], "argument --link-bandwidth: must be > 0, got -3.0"),
    (["--devices", "8", "--link-latency", "-1"], "argument --link-latency: must be >= 0"),
    (["--devices", "12"], "opt-1.3b has 32 attention heads: tensor parallel over 12 devices"),
    (["--devices", "32", "--parallel", "pp"], "opt-1.3b has 24 layers"),
    (["--devices", "8", "--parallel", "dp"], "needs batch >= 8"),
    (["--devices", "8", "--micro-batches", "2"], "--micro-batches applies to --parallel pp"),
    (["--devices", "8", "--parallel", "pp", "--micro-batches", "3"],
     "--micro-batches must be from 1 to the batch (1), got 3"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), _CLI_BAD, ids=[" ".join(a) for a, _ in _CLI_BAD])
def test_cli_bad_values_exit_2_with_the_message(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        cli.main([*_CLI, *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_measured_device_needs_a_link_bandwidth_and_measures_nothing_first(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["estimate", "--model", "opt-1.3b", "--device", "cpu", "--devices", "2"])
    assert exc.value.code == 2
    assert "--device cpu has measured peaks but no datasheet link: give --link-bandwidth" in (
        capsys.readouterr().err
    )
