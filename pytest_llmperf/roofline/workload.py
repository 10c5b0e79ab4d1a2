"""What one estimate prices: the checked workload and its split over devices.

``make_workload`` turns the caller's mode, sizes and dtype into a ``Workload``;
``make_plan`` splits the model over N devices (a ``Plan`` of ``Part``s: one share,
or one per pipeline stage), refusing a split the model cannot take with a
ValueError that names the value and its limit. Torch-free, like the rest of the
estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .device_specs import DTYPE_BYTES
from .interconnect import Link
from .shapes import ModelShape

MODES = ("forward", "prefill", "train", "decode", "generate")
_MODE_ALIASES = {
    "fwd": "forward",
    "forward+backward": "train",
    "fwd+bwd": "train",
    "fwd_bwd": "train",
    "forward_backward": "train",
    "training": "train",
    "generation": "generate",
}
#: How a workload is split over several devices, and the words for them.
PARALLEL = {"tp": "tensor parallel", "pp": "pipeline parallel", "dp": "data parallel"}
_PARALLEL_ALIASES = {"tensor": "tp", "pipeline": "pp", "data": "dp"}


@dataclass(frozen=True)
class Part:
    """The share of the model one device computes: ``layers`` decoder layers, the
    embeddings when ``first``, the final norm and LM head when ``last``, each layer's
    heads and MLP split ``tp`` ways (Megatron). The whole model is ``Part(n_layers)``."""

    layers: int
    first: bool = True
    last: bool = True
    tp: int = 1


@dataclass(frozen=True)
class Workload:
    """One estimate's checked inputs: what the phase and memory helpers read."""

    shape: ModelShape
    mode: str
    batch: int  # sequences one device runs (data parallel: its share)
    seq_len: int
    gen_len: int
    kv_len: int  # tokens in the KV cache at the end (a decode step attends these + itself)
    e: float  # bytes per element of the dtype
    logits_all: bool
    optimizer: bool


@dataclass(frozen=True)
class Plan:
    """How the work is spread: ``parts`` holds one ``Part`` per pipeline stage, else
    the one share every device computes (the whole model, or a tensor-parallel shard)."""

    devices: int
    parallel: str  # "" on one device
    parts: tuple[Part, ...]
    link: Link | None = None
    micro_batches: int = 0  # pipeline parallel only


def normalize_mode(mode: str) -> str:
    """A mode or one of its aliases (``fwd_bwd``, ``generation`` ...) as one of ``MODES``."""
    key = mode.lower()
    key = _MODE_ALIASES.get(key, key)
    if key not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")
    return key


def make_workload(shape: ModelShape, mode: str, dtype: str, batch: int, seq_len: int,
                  gen_len: int, kv_len: int | None, logits: str, optimizer: bool) -> Workload:  # fmt: skip
    """The workload of a normalized ``mode`` and canonical ``dtype``, its sizes checked."""
    if batch < 1 or seq_len < 1:
        raise ValueError("batch and seq_len must be >= 1")
    if mode == "generate" and gen_len < 1:
        raise ValueError("mode 'generate' needs gen_len >= 1")
    if kv_len is not None and kv_len < 0:  # a negative cache priced negative work
        raise ValueError(f"kv_len must be >= 0, got {kv_len!r}")
    cached = {
        "prefill": seq_len,
        "decode": seq_len if kv_len is None else kv_len,
        "generate": seq_len + gen_len,
    }.get(mode, 0)
    return Workload(shape, mode, batch, seq_len, gen_len, cached, DTYPE_BYTES[dtype],
                    logits == "all", optimizer)  # fmt: skip


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parallel_key(parallel: Any, batch: int, micro_batches: Any) -> str:
    """``parallel`` as ``tp``, ``pp`` or ``dp``, with ``micro_batches`` checked against it."""
    key = str(parallel).lower()
    key = _PARALLEL_ALIASES.get(key, key)
    if key not in PARALLEL:
        raise ValueError(
            f"unknown parallel mode {parallel!r}; known: tp (tensor), pp (pipeline), dp (data)"
        )
    if micro_batches is not None:
        if key != "pp":
            raise ValueError(
                f"micro_batches={micro_batches!r} applies to pipeline parallel (parallel='pp') "
                f"only, not {PARALLEL[key]}"
            )
        if not _whole_number(micro_batches) or not 1 <= micro_batches <= batch:
            raise ValueError(
                f"micro_batches must be a whole number from 1 to the batch ({batch}), "
                f"got {micro_batches!r}"
            )
    return key


def make_plan(shape: ModelShape, batch: int, devices: Any, parallel: Any,
              micro_batches: Any) -> Plan:  # fmt: skip
    """The split of ``shape`` over ``devices``, or a ValueError naming the value and its limit."""
    if not _whole_number(devices) or devices < 1:
        raise ValueError(f"devices must be a whole number >= 1, got {devices!r}")
    key = _parallel_key(parallel, batch, micro_batches)
    L = shape.n_layers
    if devices == 1:  # nothing to split: the single-device estimate, whatever the mode
        return Plan(1, "", (Part(L),))
    over = f"{PARALLEL[key]} over {devices} devices"
    if key == "tp":
        for count, what in (
            (shape.n_heads, f"{shape.n_heads} attention heads"),
            (shape.kv_heads, f"{shape.kv_heads} key/value heads (split, not replicated)"),
            (shape.d_ff, f"an MLP width (d_ff) of {shape.d_ff}"),
        ):
            if count % devices:
                raise ValueError(
                    f"{shape.name} has {what}: {over} needs a device count that divides {count}"
                )
        return Plan(devices, "tp", (Part(L, tp=devices),))
    if key == "pp":
        if devices > L:
            raise ValueError(
                f"{shape.name} has {L} layers: {over} needs at most {L} devices "
                "(a stage holds one layer or more)"
            )
        q, r = divmod(L, devices)  # contiguous stages, the first ones one layer longer
        parts = tuple(
            Part(q + (1 if i < r else 0), first=i == 0, last=i == devices - 1)
            for i in range(devices)
        )
        return Plan(devices, "pp", parts, micro_batches=micro_batches or batch)
    if batch < devices:
        raise ValueError(
            f"{over} needs batch >= {devices} (a sequence per device at least), got batch {batch}"
        )
    return Plan(devices, "dp", (Part(L),))


def micro_batch_sizes(batch: int, m: int) -> list[int]:
    """``batch`` sequences in ``m`` micro-batches as ``torch.tensor_split`` cuts them."""
    q, r = divmod(batch, m)
    return [q + 1] * r + [q] * (m - r)


def part_parameters(shape: ModelShape, part: Part) -> int:
    """Parameters the device computing ``part`` holds (all of them for the whole model).

    Tensor parallel splits q/k/v/out and the MLP weights (and the biases of the
    column-parallel ones); a pipeline's last stage holds its own copy of a tied LM head.
    """
    d, f, v, kv, L = shape.d_model, shape.d_ff, shape.vocab_size, shape.kv_dim, shape.n_layers
    opt = shape.family == "opt"
    total = shape.num_parameters()
    base = replace(shape, n_layers=0).num_parameters()  # embeddings, final norm, untied head
    per_layer = (total - base) // L
    embed = v * d + ((shape.max_positions + 2) * d if opt else 0)
    head = v * d
    final = base - embed - (0 if shape.tied_embeddings else head)
    sharded = 2 * d * d + 2 * d * kv + (d + 2 * kv + 2 * d * f + f if opt else 3 * d * f)
    n = part.layers * (per_layer - sharded + sharded // part.tp)
    if part.first:
        n += embed
    if part.last:
        n += final + (head if not shape.tied_embeddings or not part.first else 0)
    return n
