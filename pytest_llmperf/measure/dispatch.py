"""The dispatch context: the facts that decide which operators and kernels a program runs.

A work signature is exact only where the same Python and ATen code paths run. Two
machines with the same code can still dispatch differently: torchao's int8 matmul
converts to uint8 on a CPU with AVX512_VNNI and no AMX (``kernel/intmm.py``), and
attention backends differ by GPU architecture. ``ATEN_CPU_CAPABILITY`` moves the ATen
kernels but not such library branches, so the context records the CPU's features as
torch reports them, not only the capability ATen picked.

Each work entry carries its context (its ``stack``). A run is judged against the entry
recorded under the same context; when there is none, against the nearest one, where
equal counts still gate and a difference is a note naming the facts that differ
(``differences``), never a failure.
"""

from __future__ import annotations

from typing import Any

#: CPU features that libraries branch on between code paths a work signature can see:
#: VNNI (torchao's u8s8 int8 matmul), AMX (torchao, inductor's CPU GEMM templates),
#: native bf16/fp16 (oneDNN-backed matmul and convolution paths). Names as
#: ``torch.cpu.get_capabilities()`` reports them; one torch does not report is absent.
CPU_FEATURES = (
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
)
#: Packages whose minor version decides the operators a program dispatches (a patch
#: release keeps them).
VERSIONED = ("torch", "torchao")
#: Facts compared as they are (on accelerators: which device, which architecture).
_PLAIN = (
    ("cpu_capability", "ATen CPU capability"),
    ("device", "device"),
    ("compute_capability", "compute capability"),
)


def _cpu_facts() -> dict[str, Any]:
    """The ATen capability in force (``ATEN_CPU_CAPABILITY`` included) and the features of
    CPU_FEATURES this CPU has, as torch reports them."""
    import torch

    facts: dict[str, Any] = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    get = getattr(torch.cpu, "get_capabilities", None)
    try:
        reported = get() if get is not None else {}
    except Exception:  # a private probe that failed: the features are unknown, not absent
        return facts
    facts["cpu_features"] = [f for f in CPU_FEATURES if reported.get(f) is True]
    return facts


def _device_facts(device: Any) -> dict[str, Any]:
    """Which accelerator, and its architecture (CUDA's compute capability, ROCm's gfx)."""
    import torch

    facts: dict[str, Any] = {}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        arch = getattr(props, "gcnArchName", "") if torch.version.hip else ""
        facts["compute_capability"] = arch or f"{props.major}.{props.minor}"
    return facts


def context(fingerprint: dict[str, Any], device: Any) -> dict[str, Any]:
    """This run's dispatch context: stamped on each work entry it records."""
    ctx: dict[str, Any] = {k: fingerprint.get(k) for k in ("device_type", *VERSIONED)}
    if device.type == "cpu":
        ctx.update(_cpu_facts())
    else:
        ctx["device"] = fingerprint.get("device")
        ctx.update(_device_facts(device))
    return ctx


def minor(version: Any) -> str:
    """``2.13`` for ``2.13.0+cpu``: patch releases keep the operators a program dispatches."""
    return ".".join(str(version).split("+")[0].split(".")[:2]) if version else str(version)


def context_id(ctx: dict[str, Any]) -> str:
    """The key of an entry's context in a work file: readable, and equal exactly when
    ``differences`` finds none (versions by minor, features as a set)."""
    parts = [str(ctx.get("device_type") or "?")]
    for key, _ in _PLAIN:
        if ctx.get(key) is not None:
            parts.append(str(ctx[key]))
    if "cpu_features" in ctx:
        parts.append("+".join(sorted(ctx["cpu_features"])) or "no-listed-features")
    parts += [f"{p}-{minor(ctx.get(p))}" for p in VERSIONED if p in ctx]
    return " ".join(parts)


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between the context an entry was recorded under and this run's, in
    words a reader can act on ("recorded without avx512_vnni"); [] when it is the same."""
    out = [
        f"{p} {minor(stored.get(p))} -> {minor(current.get(p))}"
        for p in VERSIONED
        if p in stored and minor(stored.get(p)) != minor(current.get(p))
    ]
    if current.get("device_type") == "cpu" and not (
        {"cpu_capability", "cpu_features"} & set(stored)
    ):
        # an entry of an older plugin: one fact, not one per field it lacks
        return [*out, "recorded before the CPU's capability and features were kept"]
    for key, words in _PLAIN:
        if key in current and key not in stored:
            out.append(f"recorded before the {words} was kept")
        elif key in stored and stored.get(key) != current.get(key):
            out.append(f"{words} {stored.get(key)} -> {current.get(key)}")
    if "cpu_features" in stored and "cpu_features" not in current:
        out.append("this CPU's features are unknown (torch did not report them)")
    elif "cpu_features" in current:
        then, now = set(stored.get("cpu_features", ())), set(current["cpu_features"])
        if "cpu_features" not in stored:
            out.append("recorded before the CPU's features were kept")
        if now - then and "cpu_features" in stored:
            out.append("recorded without " + ", ".join(sorted(now - then)))
        if then - now:
            out.append("recorded with " + ", ".join(sorted(then - now)) + ", absent here")
    return out


def nearest(
    entries: list[dict[str, Any]], current: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[str]]:
    """The entry recorded under this context, else the one with the fewest differences
    (ties go to the first in key order); with what differs ([] for the same context)."""
    best: tuple[dict[str, Any] | None, list[str]] = (None, [])
    for entry in entries:
        diff = differences(entry.get("stack") or {}, current)
        if not diff:
            return entry, []
        if best[0] is None or len(diff) < len(best[1]):
            best = (entry, diff)
    return best
