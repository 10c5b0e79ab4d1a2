"""Roofline estimate of runtime, memory and energy for the suite's LLM families.

For each operation of a model the estimator counts FLOPs and the bytes it must
move through device memory, and charges ``max(FLOPs / peak FLOP/s, bytes /
bandwidth)`` seconds; the runtime is the sum over operations (reference 000's
method). Memory = weights + activations + KV cache (+ gradients and AdamW state
when training). Energy = runtime x board power, as reference 000 computes it.
The shapes come from ``shapes.py`` (no model needs to be built, nor torch imported).

Where each part lives: ``workload`` checks the inputs and splits the model over
devices, ``ops`` lists a model's ops and prices each (its counting conventions),
``phases`` prices each phase (a pipeline's schedule too), ``memory`` the bytes
resident at the peak, ``hardware`` resolves the device's peaks and the link; this
module sums them into an ``Estimate``.

N devices (``devices=N``, ``parallel=`` ``"tp"``, ``"pp"`` or ``"dp"``): each device
is priced on its own share of the work with the same op list, and communication
is priced over the device's link (``device_specs``: PCIe or NVLink, or a ``Link``
the caller gives, e.g. ``calibration.measure_link``) with the ring formulas of
``interconnect.py``, never with the device peaks. It shows as ops of kind
``collective`` in ``ops`` and ``phases``. ``tp`` is Megatron's tensor parallel:
q/k/v and fc1 (w1/w3) column-parallel, out_proj and fc2 (w2) row-parallel, heads
and KV cache split, embeddings, norms, residuals and the LM head replicated, two
all-reduces of ``tokens x d_model`` per layer in every forward (two more in the
backward). ``pp`` is a GPipe pipeline: contiguous stages, ``(m + N - 1)`` slots of
the slowest stage per micro-batch plus one send (the idle part is the op
``pipeline.bubble``), and each decode step of a generation goes through the
stages in turn. ``dp`` gives each device ``ceil(batch / N)`` sequences and, when
training, one all-reduce of all gradients after the backward. FLOPs, bytes and
memory are those of one device (the busiest); runtime is the job's; energy
counts every board for the whole runtime (``energy_j_per_device``: one board, as
reference 000's x8 rows report). One device is the ``N = 1`` case of the same
path, with no communication and the numbers of a single-device estimate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .device_specs import canonical_dtype
from .hardware import finite, on_cpu, resolve_link, resolve_peaks
from .interconnect import Link
from .memory import plan_memory
from .ops import Op, OpCost
from .phases import phase_costs
from .shapes import ModelShape, get_model
from .workload import MODES, PARALLEL, Plan, Workload, make_plan, make_workload, normalize_mode

#: What callers import from here; the parts live in the modules named above.
__all__ = [
    "MODES",
    "PARALLEL",
    "Estimate",
    "Op",
    "OpCost",
    "error_pct",
    "estimate",
    "resolve_link",
    "resolve_peaks",
]


@dataclass
class Estimate:
    """The estimate of one workload; times in seconds, memory in bytes, energy in J.

    On several devices ``flops``, ``bytes`` (device memory traffic) and ``memory``
    are one device's, the busiest; ``runtime_s`` is the job's, of which
    ``communication_s`` is spent in collectives (``communication_bytes``: their
    messages) and ``bubble_s`` idle in a pipeline's fill and drain.
    """

    model: str
    mode: str
    batch: int
    seq_len: int
    gen_len: int
    kv_len: int
    dtype: str
    device: str
    peaks_source: str
    flops_per_s: float
    bytes_per_s: float
    power_w: float | None
    flops: float
    matmul_flops: float
    bytes: float
    runtime_s: float
    memory: dict[str, float]
    phases: dict[str, float] = field(default_factory=dict)
    ops: list[OpCost] = field(default_factory=list)
    devices: int = 1
    parallel: str = ""  # "tp" | "pp" | "dp"; "" on one device
    link: str = ""  # Link.describe() of the interconnect priced; "" on one device
    communication_s: float = 0.0
    communication_bytes: float = 0.0
    bubble_s: float = 0.0
    micro_batches: int = 0  # pipeline parallel only

    @property
    def memory_bytes(self) -> float:
        return sum(self.memory.values())

    @property
    def runtime_ms(self) -> float:
        return self.runtime_s * 1e3

    @property
    def memory_gb(self) -> float:
        """Memory in GB of 1e9 bytes (of one device when there are several)."""
        return self.memory_bytes / 1e9

    @property
    def energy_j(self) -> float | None:
        """runtime x board power x devices: every board draws its power for the whole
        runtime (None when the power is unknown, e.g. a calibrated CPU)."""
        return None if self.power_w is None else self.runtime_s * self.power_w * self.devices

    @property
    def energy_j_per_device(self) -> float | None:
        """runtime x board power: one board's share (reference 000's x8 rows report this)."""
        return None if self.power_w is None else self.runtime_s * self.power_w

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            runtime_ms=self.runtime_ms,
            energy_j=self.energy_j,
            energy_j_per_device=self.energy_j_per_device,
            memory_bytes=self.memory_bytes,
            memory_gb=self.memory_gb,
        )
        return d


def estimate(
    model: str | ModelShape,
    *,
    mode: str = "forward",
    batch: int = 1,
    seq_len: int = 512,
    gen_len: int = 0,
    kv_len: int | None = None,
    dtype: Any = "bf16",
    device: Any = "cpu",
    power_w: float | None = None,
    optimizer: bool = True,
    logits: str = "all",
    launch_overhead_s: float = 0.0,
    launch_overlap: bool | None = None,
    devices: int = 1,
    parallel: str = "tp",
    link: Link | None = None,
    link_bandwidth: float | None = None,
    link_latency_s: float | None = None,
    micro_batches: int | None = None,
) -> Estimate:
    """Estimate one workload of ``model`` on ``device``.

    Modes: ``forward`` (one causal forward over ``batch x seq_len``, no cache),
    ``prefill`` (the same, writing a KV cache), ``train`` (forward + backward, plus
    an AdamW step unless ``optimizer=False``), ``decode`` (one token per sequence
    attending ``kv_len`` cached tokens plus itself; default ``kv_len = seq_len``),
    ``generate`` (prefill of ``seq_len`` then ``gen_len - 1`` decode steps: the
    prefill yields the first new token, as gpt-fast and FlexGen count).

    ``device``: a datasheet name ("RTX A5000", "NVIDIA H100 80GB HBM3"), ``"cpu"``
    or a torch device (calibrated peaks), or a ``Peaks``. ``power_w`` overrides
    the board power used for energy. ``logits="last"`` computes the LM head for
    the last position only.

    ``launch_overhead_s`` (default 0: the pure roofline) charges each eager kernel
    launch that many seconds (``calibration.measure_launch_overhead``): added on a
    CPU, overlapped (max) on an accelerator (``launch_overlap`` overrides). Small
    models at small batch are launch-bound, which a roofline alone cannot see.

    ``devices`` > 1 spreads the workload over that many devices of the kind,
    ``parallel`` ``"tp"`` (tensor), ``"pp"`` (pipeline, ``micro_batches`` of the
    batch, default one sequence each) or ``"dp"`` (data; ``batch`` is the global
    batch), communicating over ``link`` (default: the datasheet device's; a
    calibrated device needs one, or ``link_bandwidth``), whose bandwidth (bytes/s)
    and step latency (s) ``link_bandwidth`` / ``link_latency_s`` override. A split
    the model cannot take is a ValueError naming the value and its limit.
    """
    if power_w is not None and not finite(power_w, 0.0, inclusive=False):
        raise ValueError(f"power_w must be a finite number > 0 (W), got {power_w!r}")
    shape = get_model(model)
    mode = normalize_mode(mode)
    key = canonical_dtype(dtype)
    w = make_workload(shape, mode, key, batch, seq_len, gen_len, kv_len, logits, optimizer)
    plan = make_plan(shape, batch, devices, parallel, micro_batches)
    peaks = resolve_peaks(device, key)
    priced_link = resolve_link(peaks, plan.devices, link, link_bandwidth, link_latency_s)
    if plan.devices > 1:
        plan = replace(plan, link=priced_link)
    if plan.parallel == "dp":  # each device runs its share of the sequences
        w = replace(w, batch=-(-batch // plan.devices))
    if launch_overlap is None:
        launch_overlap = not on_cpu(device)
    phases = phase_costs(w, peaks, (float(launch_overhead_s), bool(launch_overlap)), plan)
    return _summed(w, plan, peaks, phases, batch=batch, dtype=key, device=device, power_w=power_w)


def _summed(w: Workload, plan: Plan, peaks: Any, phases: dict[str, list[OpCost]], *,
            batch: int, dtype: str, device: Any, power_w: float | None) -> Estimate:  # fmt: skip
    """The phases' priced ops summed into the estimate of ``batch`` sequences (the
    global batch; ``w.batch`` is one device's share under data parallel)."""
    costs = [replace(c, name=f"{phase}.{c.name}") for phase, cs in phases.items() for c in cs]
    phase_s = {phase: sum(c.seconds for c in cs) for phase, cs in phases.items()}
    comm = [c for c in costs if c.kind == "collective"]
    return Estimate(
        model=w.shape.name,
        mode=w.mode,
        batch=batch,
        seq_len=w.seq_len,
        gen_len=w.gen_len,
        kv_len=w.kv_len,
        dtype=dtype,
        device=getattr(peaks, "device_name", "") or str(device),
        peaks_source=peaks.source,
        flops_per_s=peaks.flops_per_s,
        bytes_per_s=peaks.bytes_per_s,
        power_w=power_w if power_w is not None else getattr(peaks, "power_w", None),
        flops=sum(c.flops for c in costs),
        matmul_flops=sum(c.mm_flops for c in costs),
        bytes=sum(c.bytes for c in costs if c.kind != "collective"),
        runtime_s=sum(phase_s.values()),
        memory=plan_memory(w, plan),
        phases=phase_s,
        ops=costs,
        devices=plan.devices,
        parallel=plan.parallel,
        link=plan.link.describe() if plan.link is not None else "",
        communication_s=sum((c.seconds for c in comm), 0.0),
        communication_bytes=sum((c.bytes for c in comm), 0.0),
        bubble_s=sum((c.seconds for c in costs if c.kind == "bubble"), 0.0),
        micro_batches=plan.micro_batches,
    )


def error_pct(measured: float, estimated: float) -> float:
    """Reference 000's error: (measured - estimated) / measured x 100."""
    if measured == 0:
        return math.nan
    return (measured - estimated) / measured * 100.0
