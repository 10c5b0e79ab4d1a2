"""``python -m pytest_llmperf estimate ...``: the roofline estimator from the shell.

    python -m pytest_llmperf estimate --model opt-1.3b --device "RTX A5000" \\
        --batch 1 --seq-len 512 [--gen-len N] [--dtype bf16] [--json]
    python -m pytest_llmperf list          # known models and devices

A datasheet device needs no torch import; ``--device cpu`` (or ``cuda``) measures
the peaks of this machine first (about a second on a small CPU).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..units import flops as fmt_flops
from . import device_specs, estimator, shapes

_TORCH_DEVICES = ("cpu", "cuda", "xpu", "mps")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pytest_llmperf", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    est = sub.add_parser(
        "estimate",
        help="estimate runtime, energy, memory and FLOPs of a model workload",
        description="Roofline estimate: per op max(FLOPs / peak FLOP/s, bytes / bandwidth), summed.",
    )
    est.add_argument(
        "--model", required=True, help="e.g. opt-1.3b, clm-60m, llama-3-8b, cs336-small"
    )
    est.add_argument(
        "--device",
        default="cpu",
        help='a GPU name ("RTX A5000", "NVIDIA H100 80GB HBM3") for datasheet peaks, '
        "or cpu / cuda for measured peaks (default: cpu)",
    )
    est.add_argument("--batch", type=int, default=1)
    est.add_argument("--seq-len", type=int, default=512, help="prompt / sequence length")
    est.add_argument("--gen-len", type=int, default=0, help="new tokens: estimate a generation")
    est.add_argument(
        "--mode",
        default=None,
        help="forward (default), prefill, train, decode, or generate (implied by --gen-len)",
    )
    est.add_argument("--kv-len", type=int, default=None, help="cached tokens for --mode decode")
    est.add_argument(
        "--dtype", default=None, help="bf16 (default on GPUs), fp16, fp32 (default on cpu), ..."
    )
    est.add_argument("--power", type=float, default=None, help="board power in W for the energy")
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
    energy = (
        "n/a (board power unknown; give --power W)"
        if est.energy_j is None
        else f"{est.energy_j:.3f} J"
    )
    power = "" if est.power_w is None else f", {est.power_w:g} W"
    lines = [
        f"model     {shape.name} ({shape.description or shape.family}, {shape.num_parameters() / 1e9:.3f} B params)",
        f"device    {est.device} [{est.peaks_source}: {fmt_flops(est.flops_per_s)}/s {est.dtype}, "
        f"{est.bytes_per_s / 1e9:.0f} GB/s{power}]",
        f"workload  {work}, {est.dtype}",
        f"runtime   {est.runtime_ms:.3f} ms",
        f"energy    {energy}",
        f"memory    {est.memory_gb:.3f} GB ({mem})",
        f"FLOPs     {fmt_flops(est.flops)} (matmul {fmt_flops(est.matmul_flops)})",
        f"bytes     {est.bytes / 1e9:.3f} GB moved",
    ]
    if len(est.phases) > 1:
        lines.append(
            "phases    " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in est.phases.items())
        )
    return "\n".join(lines)


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


def _estimate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``estimate``; a bad model, device or workload exits 2 through ``parser.error``."""
    try:
        shape = shapes.get_model(args.model)
    except ValueError as exc:
        parser.error(str(exc))
    device = args.device
    if device.split(":")[0].lower() not in _TORCH_DEVICES:
        try:
            device_specs.lookup(device)
        except ValueError as exc:
            parser.error(str(exc) + " (or cpu / cuda for measured peaks)")
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
