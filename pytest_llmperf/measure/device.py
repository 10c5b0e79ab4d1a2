"""Which device a run measures on, its baseline key and the software fingerprint.

The key names the baseline file (``baselines/<key>.json``), so an H100 runner
never compares with an A100's numbers, nor a 2-core CPU with a 64-core one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def slug(text: str) -> str:
    """Lower-case, dash-separated: a file-name-safe rendering of a device name."""
    s = re.sub(r"\(r\)|\(tm\)|\bcpu\b|@.*$", "", text.lower())
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s or "unknown"


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class DeviceError(ValueError):
    """A device the run was asked to measure on is not one this machine has."""


def available_devices() -> list[str]:
    """The devices a run can measure on here: the CPU, then each accelerator torch sees."""
    import torch

    out = ["cpu"]
    acc = getattr(torch, "accelerator", None)
    if acc is not None and acc.is_available():
        kind = acc.current_accelerator().type
        out += [f"{kind}:{i}" for i in range(acc.device_count())]
    return out


def check_device(spec: str, where: str) -> Any:
    """The torch device ``spec`` names, if this machine has it; else a DeviceError naming
    ``where`` (the option or variable) and the devices there are. Asked before anything
    touches the device, so ``cuda:7`` on a one-GPU machine is one clear message, not a
    CUDA assertion deep inside a test."""
    import torch

    here = f"devices here: {', '.join(available_devices())}"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"{where}: {spec!r} is not a torch device; {here}") from None
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise DeviceError(f"{where}: {spec!r}: there is one CPU device, cpu; {here}")
        return device
    acc = getattr(torch, "accelerator", None)
    if acc is None or not acc.is_available() or acc.current_accelerator().type != device.type:
        raise DeviceError(f"{where}: {spec!r}: no {device.type} device on this machine; {here}")
    if device.index is not None and device.index >= acc.device_count():
        raise DeviceError(
            f"{where}: {spec!r}: this machine has {acc.device_count()} {device.type} "
            f"device(s); {here}"
        )
    return device


@functools.cache
def current_device() -> Any:
    """The accelerator torch would use (CUDA, ROCm, XPU, MPS), else the CPU.

    ``LLMPERF_DEVICE=cpu`` forces the CPU on a machine that has an accelerator; a value
    this machine lacks is a DeviceError naming the variable. Under torchrun each rank
    takes the device of its ``LOCAL_RANK`` (one process per device): a device named by
    ``LLMPERF_DEVICE``, which the launching session sets from ``--llmperf-device``, picks
    the kind of device there, not the index, or every rank would share one GPU.
    """
    import torch

    forced = os.environ.get("LLMPERF_DEVICE")
    device = check_device(forced, "environment variable LLMPERF_DEVICE") if forced else None
    if device is not None and device.type == "cpu":
        return device
    acc = getattr(torch, "accelerator", None)
    if acc is None or not acc.is_available():
        return torch.device("cpu")
    kind = acc.current_accelerator().type
    local_rank = os.environ.get("LOCAL_RANK", "")
    if local_rank.isdigit() and "TORCHELASTIC_RUN_ID" in os.environ:
        return torch.device(kind, int(local_rank) % max(1, acc.device_count()))
    return device if device is not None else torch.device(kind, acc.current_device_index())


def make_current(device: Any) -> Any:
    """Make ``device`` torch's current device, and return it.

    What torch does without naming a device happens on the current one: an event's
    ``record()``, a new stream, a collective's buffer, the user's ``.cuda()``. Measured
    on cuda:1 while cuda:0 stayed current, every round read about zero."""
    if device.type != "cpu" and device.index is not None:
        import torch

        torch.accelerator.set_device_index(device.index)
    return device


def device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "xpu":
        return torch.xpu.get_device_name(device)
    if device.type == "mps":
        return f"Apple {platform.machine()} MPS"
    return cpu_model_name()


def device_key(device: Any) -> str:
    """File-name key of the device: the model name, plus the core count on CPUs."""
    name = device_name(device)
    if device.type == "cpu":
        return f"cpu-{slug(name)}-{cpu_count()}c"
    return slug(name)


def pci_bus_id(device: Any) -> str | None:
    """The CUDA device's PCI bus id (``00000000:41:00.0``, NVML's form), or None.

    The one name of a GPU that every process agrees on: a logical index depends on the
    process's ``CUDA_VISIBLE_DEVICES`` (cuda:0 of one worker may be cuda:1 of another)."""
    if device.type != "cuda":
        return None
    import torch

    props = torch.cuda.get_device_properties(device)
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return None
    domain = getattr(props, "pci_domain_id", 0)
    slot = getattr(props, "pci_device_id", 0)
    return f"{domain:08x}:{bus:02x}:{slot:02x}.0"


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def fingerprint(device: Any) -> dict[str, Any]:
    """Device and software stack: what a baseline remembers and a verdict compares."""
    import torch

    fp: dict[str, Any] = {
        "device": device_name(device),
        "device_type": device.type,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchao": _version("torchao"),
        "platform": sys.platform,
    }
    if device.type == "cpu":
        fp["cpu_count"] = cpu_count()
        fp["threads"] = torch.get_num_threads()
    elif device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        fp["device_count"] = torch.cuda.device_count()
        fp["memory_bytes"] = int(props.total_memory)
        fp["cuda"] = torch.version.cuda or torch.version.hip
        fp["driver"] = _nvml_driver()
    return fp


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        drv = pynvml.nvmlSystemGetDriverVersion()
        return drv.decode() if isinstance(drv, bytes) else drv
    except Exception:
        return None


#: Fingerprint keys whose change is worth showing beside a verdict.
FINGERPRINT_KEYS = (
    "device",
    "device_count",
    "memory_bytes",
    "driver",
    "cuda",
    "torch",
    "torchao",
    "python",
    "cpu_count",
)


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        k: [old.get(k), new.get(k)]
        for k in FINGERPRINT_KEYS
        if k in old and k in new and old.get(k) != new.get(k)
    }


def worker_device(device: Any) -> Any:
    """Under pytest-xdist with several accelerators, worker N takes device N mod count."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if device.type == "cpu" or not worker.startswith("gw") or os.environ.get("LLMPERF_DEVICE"):
        return device
    import torch

    count = torch.accelerator.device_count()
    if count > 1:
        return torch.device(device.type, int(worker[2:]) % count)
    return device


def lock_name(device: Any) -> str:
    """The device lock's file name: a GPU's PCI bus id, which every process agrees on (a
    logical index names another GPU under another ``CUDA_VISIBLE_DEVICES``); else the
    device's key and index."""
    bus = pci_bus_id(device)
    if bus:
        return f"pytest-llmperf-pci-{bus.replace(':', '-')}.lock"
    return f"pytest-llmperf-{device_key(device)}-{device.type}{device.index or 0}.lock"


#: The device locks this process holds: lock file -> [its open file, depth].
_HELD: dict[Path, list[Any]] = {}


@contextlib.contextmanager
def exclusive_device(*devices: Any) -> Iterator[None]:
    """Under pytest-xdist, performance tests never overlap on one device.

    Held for a whole performance test (its fixtures' model builds and compiles too, which
    would otherwise run during another worker's timed rounds) and re-entrant within it.
    Several devices (the ranks of a ``llmperf.torchrun`` launch) are taken in one order,
    with nothing held while waiting, so two workers never wait for each other."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        fcntl = None  # type: ignore[assignment]
    if not os.environ.get("PYTEST_XDIST_WORKER") or fcntl is None:
        yield
        return
    wanted = sorted({Path(tempfile.gettempdir()) / lock_name(d) for d in devices})
    counted = False
    try:
        if any(path not in _HELD for path in wanted):
            for path in _HELD:  # let go while waiting: taken again below, in order
                fcntl.flock(_HELD[path][0], fcntl.LOCK_UN)
            for path in sorted({*_HELD, *wanted}):
                if path not in _HELD:
                    _HELD[path] = [open(path, "a+"), 0]  # noqa: SIM115 - closed when released
                fcntl.flock(_HELD[path][0], fcntl.LOCK_EX)
        for path in wanted:
            _HELD[path][1] += 1
        counted = True
        yield
    finally:  # after the block, or an interrupt while waiting: what no one holds is let go
        for path in wanted if counted else ():
            _HELD[path][1] -= 1
        for path, (lock, depth) in list(_HELD.items()):
            if depth == 0:
                del _HELD[path]
                fcntl.flock(lock, fcntl.LOCK_UN)
                lock.close()
