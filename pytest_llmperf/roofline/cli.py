"""``python -m pytest_llmperf estimate ...``: the roofline estimator from the shell.

    python -m pytest_llmperf estimate --model opt-1.3b --device "RTX A5000" \\
        --batch 1 --seq-len 512 [--gen-len N] [--dtype bf16] [--json]
    python -m pytest_llmperf estimate --model opt-1.3b --device "RTX A5000" \\
        --devices 8 --parallel tp|pp|dp [--link-bandwidth GB/s] [--link-latency us]
    python -m pytest_llmperf list          # known models and devices

A datasheet device needs no torch import; ``--device cpu`` (or ``cuda``) measures
the peaks of this machine first (about a second on a small CPU). Several devices
talk over the datasheet device's link (PCIe or NVLink); a measured device needs
``--link-bandwidth``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

from ..config import arg_type, parse_count, parse_float
from ..units import flops as fmt_flops
from . import device_specs, estimator, shapes

_TORCH_DEVICES = ("cpu", "cuda", "xpu", "mps")

#: Upper bounds of ``estimate``'s numbers. The estimate is float arithmetic (a batch of
#: 10**300 overflowed it: a traceback) and prices each decode step and each micro-batch
#: in turn (about 0.2 ms each), so a bound also keeps the answer within seconds.
MAX_BATCH = 65_536  # sequences; micro-batches too
MAX_TOKENS = 1 << 20  # --seq-len, --kv-len: past the longest contexts of today's models
MAX_GEN_TOKENS = 1 << 17  # --gen-len: 128k new tokens, 15-30 s to price on 2 shared cores
MAX_DEVICES = 65_536
MAX_POWER_W = 100_000.0  # per board; a GPU draws under 2 kW
MAX_LINK_GB_S = 1e6  # per direction; NVLink 5 is 900 GB/s
MIN_LINK_GB_S = 1e-3  # 1 MB/s; a bandwidth of 5e-324 GB/s made the runtime inf
MAX_LINK_LATENCY_US = 1e6  # a second per ring step


# --------------------------------------------------------------------------- argument types
# One validating ``type`` per kind of number, built on the parsers the plugin's own options
# use (pytest_llmperf.config), so every numeric option of ``python -m pytest_llmperf``
# (``doctor`` too) rejects NaN, infinity, a fraction where a count belongs and a value out
# of range as a usage error (exit 2) that names the option and the value.


def positive_int(maximum: int) -> Callable[[str], int]:
    """A whole number from 1 to ``maximum``: a count or a size."""
    return arg_type(parse_count, "positive integer", allow_auto=False, minimum=1, maximum=maximum)


def non_negative_int(maximum: int) -> Callable[[str], int]:
    """A whole number from 0 to ``maximum``."""
    return arg_type(parse_count, "integer", allow_auto=False, minimum=0, maximum=maximum)


def _parse_positive(value: Any, where: str, *, minimum: float, maximum: float) -> float:
    x = parse_float(value, where, minimum=-math.inf, maximum=maximum)
    if x <= 0:
        raise ValueError(f"{where}: must be > 0, got {x}")
    if x < minimum:
        raise ValueError(f"{where}: must be >= {minimum:g}, got {x}")
    return x


def positive_float(maximum: float, minimum: float = 0.0) -> Callable[[str], float]:
    """A finite number above 0 (and from ``minimum``, where a tiny one is a divisor that
    overflows the estimate), up to ``maximum``: a rate or a power."""
    return arg_type(_parse_positive, "positive number", minimum=minimum, maximum=maximum)


def non_negative_float(maximum: float) -> Callable[[str], float]:
    """A finite number from 0 to ``maximum``: a latency."""
    return arg_type(parse_float, "number", minimum=0.0, maximum=maximum)


def _add_workload_options(est: argparse.ArgumentParser) -> None:
    """The model, device and workload options of ``estimate``."""
    est.add_argument(
        "--model", required=True, help="e.g. opt-1.3b, clm-60m, llama-3-8b, cs336-small"
    )
    est.add_argument(
        "--device",
        default="cpu",
        help='a GPU name ("RTX A5000", "NVIDIA H100 80GB HBM3") for datasheet peaks, '
        "or cpu / cuda for measured peaks (default: cpu)",
    )
    est.add_argument(
        "--batch", type=positive_int(MAX_BATCH), default=1, help="sequences (default 1)"
    )
    est.add_argument(
        "--seq-len",
        type=positive_int(MAX_TOKENS),
        default=512,
        help="prompt / sequence length (default 512)",
    )
    est.add_argument(
        "--gen-len",
        type=non_negative_int(MAX_GEN_TOKENS),
        default=0,
        help="new tokens: estimate a generation",
    )
    est.add_argument(
        "--mode",
        default=None,
        help="forward (default), prefill, train, decode, or generate (implied by --gen-len)",
    )
    est.add_argument(
        "--kv-len",
        type=non_negative_int(MAX_TOKENS),
        default=None,
        help="cached tokens for --mode decode",
    )
    est.add_argument(
        "--dtype", default=None, help="bf16 (default on GPUs), fp16, fp32 (default on cpu), ..."
    )
    est.add_argument(
        "--power",
        type=positive_float(MAX_POWER_W),
        default=None,
        help="board power in W for the energy",
    )


def _add_split_options(est: argparse.ArgumentParser) -> None:
    """The options that spread the workload over several devices, and their link."""
    est.add_argument(
        "--devices",
        type=positive_int(MAX_DEVICES),
        default=1,
        help="devices the workload is split over (default 1)",
    )
    est.add_argument(
        "--parallel",
        choices=tuple(estimator.PARALLEL),
        default="tp",
        help="how --devices split it: tp tensor (default), pp pipeline, dp data parallel",
    )
    est.add_argument(
        "--link-bandwidth",
        type=positive_float(MAX_LINK_GB_S, MIN_LINK_GB_S),
        default=None,
        metavar="GB/s",
        help="bandwidth per direction of the link between devices, in place of the datasheet's",
    )
    est.add_argument(
        "--link-latency",
        type=non_negative_float(MAX_LINK_LATENCY_US),
        default=None,
        metavar="us",
        help="latency per ring step of that link, in microseconds",
    )
    est.add_argument(
        "--micro-batches",
        type=positive_int(MAX_BATCH),
        default=None,
        help="pipeline parallel: micro-batches of the batch (default: one sequence each)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pytest_llmperf", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    est = sub.add_parser(
        "estimate",
        help="estimate runtime, energy, memory and FLOPs of a model workload",
        description="Roofline estimate: per op max(FLOPs / peak FLOP/s, bytes / bandwidth), summed.",
    )
    _add_workload_options(est)
    _add_split_options(est)
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")
    est.add_argument("--ops", action="store_true", help="also list the per-op breakdown")
    sub.add_parser("list", help="list the known models and devices")
    p.estimate_parser = est  # type: ignore[attr-defined]
    return p


def _text(est: Any, shape: Any) -> str:
    mem = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in est.memory.items())
    work = f"{est.mode}, batch {est.batch} x seq {est.seq_len}"
    if est.mode == "generate":
        work += f" + {est.gen_len} new tokens"
    elif est.mode == "decode":
        work = f"decode step, batch {est.batch}, {est.kv_len} cached tokens"
    n = est.devices
    each = " per device" if n > 1 else ""
    if est.energy_j is None:
        energy = "n/a (board power unknown; give --power W)"
    elif n > 1:
        energy = (
            f"{est.energy_j:.3f} J ({n} boards x {est.power_w:g} W; "
            f"one board: {est.energy_j_per_device:.3f} J)"
        )
    else:
        energy = f"{est.energy_j:.3f} J"
    power = "" if est.power_w is None else f", {est.power_w:g} W"
    lines = [
        f"model     {shape.name} ({shape.description or shape.family}, {shape.num_parameters() / 1e9:.3f} B params)",
        f"device    {est.device} [{est.peaks_source}: {fmt_flops(est.flops_per_s)}/s {est.dtype}, "
        f"{est.bytes_per_s / 1e9:.0f} GB/s{power}]",
    ]
    if n > 1:
        lines.append(f"devices   {n} x {est.device}, {_split(est)} over {est.link}")
    lines += [
        f"workload  {work}, {est.dtype}",
        f"runtime   {est.runtime_ms:.3f} ms",
    ]
    if n > 1:
        share = est.communication_s / est.runtime_s * 100 if est.runtime_s else 0.0
        lines.append(
            f"communication  {est.communication_s * 1e3:.3f} ms ({share:.1f} % of runtime)"
        )
    if est.bubble_s:
        share = est.bubble_s / est.runtime_s * 100
        lines.append(
            f"bubble    {est.bubble_s * 1e3:.3f} ms ({share:.1f} % of runtime: stages idle "
            "while the pipeline fills and drains)"
        )
    lines += [
        f"energy    {energy}",
        f"memory    {est.memory_gb:.3f} GB{each} ({mem})",
        f"FLOPs     {fmt_flops(est.flops)}{each} (matmul {fmt_flops(est.matmul_flops)})",
        f"bytes     {est.bytes / 1e9:.3f} GB moved{each}",
    ]
    if len(est.phases) > 1:
        lines.append(
            "phases    " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in est.phases.items())
        )
    return "\n".join(lines)


def _split(est: Any) -> str:
    """``tensor parallel``, ``pipeline parallel (8 stages, 4 micro-batches)``, ..."""
    words = estimator.PARALLEL[est.parallel]
    if est.parallel == "pp":
        m = est.micro_batches
        return f"{words} ({est.devices} stages, {m} micro-batch{'es' if m != 1 else ''})"
    if est.parallel == "dp":
        per = -(-est.batch // est.devices)
        return f"{words} ({per} sequence{'s' if per != 1 else ''} per device)"
    return words


def _ops_table(est: Any) -> str:
    rows = [f"{'op':32} {'count':>5} {'GFLOP':>12} {'MB':>12} {'ms':>10}  bound"]
    for c in est.ops:
        rows.append(
            f"{c.name:32} {c.count:5d} {c.flops / 1e9:12.3f} {c.bytes / 1e6:12.3f} {c.seconds * 1e3:10.4f}  {c.bound}"
        )
    return "\n".join(rows)


def _list() -> int:
    print("models:  " + ", ".join(shapes.known_models()))
    print("devices: " + ", ".join(device_specs.known_devices()) + " (or cpu / cuda: calibrated)")
    return 0


def _check_split_options(
    args: argparse.Namespace, parser: argparse.ArgumentParser, measured: bool
) -> None:
    """Name the options that do not go together (exit 2), before anything is measured; each
    value alone was checked by its type (``positive_int`` ...)."""
    if args.micro_batches is not None:
        if args.parallel != "pp":
            parser.error(f"--micro-batches applies to --parallel pp, not {args.parallel}")
        if not 1 <= args.micro_batches <= args.batch:
            parser.error(
                f"--micro-batches must be from 1 to the batch ({args.batch}), "
                f"got {args.micro_batches}"
            )
    if measured and args.devices > 1 and args.link_bandwidth is None:
        parser.error(
            f"--device {args.device} has measured peaks but no datasheet link: give "
            f"--link-bandwidth GB/s (and --link-latency us) to estimate {args.devices} devices"
        )


def _estimate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``estimate``; a bad model, device or workload exits 2 through ``parser.error``."""
    try:
        shape = shapes.get_model(args.model)
    except ValueError as exc:
        parser.error(str(exc))
    device = args.device
    measured = device.split(":")[0].lower() in _TORCH_DEVICES
    if not measured:
        try:
            device_specs.lookup(device)
        except ValueError as exc:
            parser.error(str(exc) + " (or cpu / cuda for measured peaks)")
    _check_split_options(args, parser, measured)
    try:
        est = estimator.estimate(
            shape,
            mode=args.mode or ("generate" if args.gen_len else "forward"),
            batch=args.batch,
            seq_len=args.seq_len,
            gen_len=args.gen_len,
            kv_len=args.kv_len,
            dtype=args.dtype or ("fp32" if device.lower() == "cpu" else "bf16"),
            device=device,
            power_w=args.power,
            devices=args.devices,
            parallel=args.parallel,
            link_bandwidth=None if args.link_bandwidth is None else args.link_bandwidth * 1e9,
            link_latency_s=None if args.link_latency is None else args.link_latency * 1e-6,
            micro_batches=args.micro_batches,
        )
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    if args.json:
        data = est.to_dict()
        if not args.ops:
            data.pop("ops")
        data["parameters"] = shape.num_parameters()
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(_text(est, shape))
        if args.ops:
            print()
            print(_ops_table(est))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line's entry point (``python -m pytest_llmperf``); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    return _estimate(args, parser.estimate_parser)  # type: ignore[attr-defined]
