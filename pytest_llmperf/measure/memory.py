"""Peak memory of a block: the accelerator allocator, or the process RSS on CPU.

On CPU the high-water mark (VmHWM) is reset through ``/proc/self/clear_refs``
(Linux >= 4.0), so the peak belongs to the block, not to the whole process.
Where that reset is impossible the reading is marked inexact and not gated.
"""

from __future__ import annotations

import functools
import gc
import resource
import sys
from dataclasses import dataclass
from typing import Any

from . import procfs

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


@dataclass
class PeakReading:
    #: Accelerator: peak allocated bytes. CPU: RSS growth over the block.
    peak: int
    #: Accelerator: peak reserved by the caching allocator. CPU: absolute RSS peak.
    reserved: int | None
    #: False when the high-water mark could not be reset for this block.
    exact: bool
    how: str


def _status_kib(field: str) -> int | None:
    return _status_fields(field)[0]


def _status_fields(*names: str) -> list[int | None]:
    """These fields of /proc/self/status in KiB (None where absent), in one read."""
    try:
        text = procfs.read(_STATUS)
    except OSError:
        return [None] * len(names)
    out: list[int | None] = []
    for name in names:
        key = b"\n" + name.encode() + b":"
        i = text.find(key)
        try:
            out.append(int(text[i + len(key) :].split(None, 1)[0]) if i >= 0 else None)
        except (ValueError, IndexError):
            out.append(None)
    return out


def reset_rss_peak() -> bool:
    """Reset this process's RSS high-water mark; False where the kernel won't."""
    try:
        procfs.write(_CLEAR_REFS, b"5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(ru if sys.platform == "darwin" else ru * 1024)


_M_MMAP_THRESHOLD = -3
#: While measuring, blocks above this size get their own mapping, so freeing them
#: lowers RSS and the next allocation shows up in the high-water mark again.
_MEASURE_MMAP_THRESHOLD = 128 * 1024
#: Afterwards: glibc's own ceiling for its dynamic threshold.
_DEFAULT_MMAP_THRESHOLD = 32 * 2**20


@functools.cache
def _libc() -> Any:
    """glibc, found once: ``find_library`` runs ldconfig, about 2 ms a call."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def peak_of_call(device: Any, call: Any, setup: Any = None) -> PeakReading:
    """Peak memory of one call of ``call``, measured in a pass of its own.

    On CPU, glibc keeps freed blocks for reuse, so after warm-up a workload can
    run without growing RSS at all. For this one call the heap is trimmed and
    large blocks are mapped individually, so the high-water mark shows what the
    call needs; timing rounds never run in this mode.
    """
    if setup is not None:
        setup()
    meter = PeakMemory(device)
    libc = _libc() if device.type == "cpu" and sys.platform.startswith("linux") else None
    tuned = False
    if libc is not None:
        try:
            libc.malloc_trim(0)
            tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MEASURE_MMAP_THRESHOLD))
        except AttributeError:  # not glibc
            tuned = False
    try:
        meter.start()
        call()
        return meter.stop()
    finally:
        if tuned:
            libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_MMAP_THRESHOLD)


class PeakMemory:
    """``start()`` before the block, ``stop()`` after it.

    ``empty_cache``: give the allocator's cached blocks back first, so that blocks cached
    by earlier tests do not count towards this block's reserved peak. Not before timed
    rounds: their first round would pay ``cudaMalloc`` again for what warm-up had cached
    (a cold first round on warmed code); there the cache is emptied before the warm-up
    (``fresh_cache``), as triton's ``do_bench`` never empties it between warm-up and reps.
    """

    def __init__(self, device: Any, empty_cache: bool = True) -> None:
        self.device = device
        self.empty_cache = empty_cache
        self._rss0 = 0
        self._resettable = False

    def start(self) -> None:
        if self.device.type != "cpu":
            import torch

            torch.accelerator.synchronize(self.device.index)
            if self.empty_cache:
                torch.accelerator.empty_cache()
            torch.accelerator.reset_peak_memory_stats(self.device.index)
            return
        reset = reset_rss_peak()
        hwm, rss = _status_fields("VmHWM", "VmRSS")
        self._resettable = reset and hwm is not None
        self._rss0 = rss * 1024 if rss is not None else _maxrss_bytes()

    def stop(self) -> PeakReading:
        if self.device.type != "cpu":
            import torch

            idx = self.device.index
            torch.accelerator.synchronize(idx)
            return PeakReading(
                peak=int(torch.accelerator.max_memory_allocated(idx)),
                reserved=int(torch.accelerator.max_memory_reserved(idx)),
                exact=True,
                how=f"{self.device.type} allocator peak since reset",
            )
        if self._resettable:
            hwm = (_status_kib("VmHWM") or 0) * 1024
            return PeakReading(
                peak=max(0, hwm - self._rss0),
                reserved=hwm,
                exact=True,
                how="RSS high-water mark growth (reset via /proc/self/clear_refs)",
            )
        hwm = _maxrss_bytes()
        return PeakReading(
            peak=max(0, hwm - self._rss0),
            reserved=hwm,
            exact=False,
            how="process max RSS (not resettable here; growth above earlier peaks only)",
        )


class BlockPeak:
    """Peak memory of a ``with`` block (the ``peak_memory`` fixture): ``.peak`` in bytes."""

    def __init__(self, device: Any) -> None:
        self._meter = PeakMemory(device)
        self.reading: PeakReading | None = None

    @property
    def peak(self) -> int:
        return self.reading.peak if self.reading else 0

    @property
    def exact(self) -> bool:
        return bool(self.reading and self.reading.exact)

    def __enter__(self) -> BlockPeak:
        self._meter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.reading = self._meter.stop()


def fresh_cache(device: Any) -> None:
    """Before a measurement's warm-up: the allocator's cache emptied of what earlier tests
    left, then filled by this test's own warm-up for its rounds."""
    if device.type != "cpu":
        import torch

        torch.accelerator.synchronize(device.index)
        torch.accelerator.empty_cache()


def release(device: Any) -> None:
    """Give memory back: collect garbage and, on an accelerator, empty the allocator's cache."""
    gc.collect()
    if device.type != "cpu":
        import torch

        torch.accelerator.empty_cache()
