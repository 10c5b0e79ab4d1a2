"""Fakes of torch's CUDA API that behave as CUDA does, to drive the GPU paths on a CPU.

No GPU has run this project's accelerator code, so its first run would find what a
desk check can: an event recorded on the wrong device's stream reads ~0, a cache
emptied before the rounds makes the first one pay ``cudaMalloc``. These fakes make
such mistakes show here. ``FakeGPU.install(monkeypatch)`` replaces ``torch.Event``,
the ``torch.accelerator`` functions and ``torch.cuda``'s device, stream and memory
queries for the duration of a test (``monkeypatch`` restores them).

What they model, as the CUDA runtime and torch's ``Event.cpp`` do:

- Device time is simulated. Each device has streams; ``kernel(seconds, ...)`` enqueues
  work on a stream (the current stream of the device it names, as an operator on that
  device's tensors would), which moves that stream's clock on.
- ``torch.Event(...).record()`` with no stream records on the *current device's*
  current stream; ``record(stream)`` on that stream, and an event already recorded on
  one device cannot be recorded on another's stream. An event is done once its stream
  was synchronized past it; ``elapsed_time`` of events not done, on two devices, or
  made without ``enable_timing`` raises, as CUDA does.
- The caching allocator: an allocation the cache cannot hold pays ``malloc_s`` of
  device time (``cudaMalloc``); ``empty_cache()`` gives the cache back; peaks of
  allocated and reserved bytes reset with ``reset_peak_memory_stats``.
- ``calls`` logs what the plugin asked of the device, in order.

The tensors stay on the CPU (real torch): a fake kernel is device time, not data.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

#: The fake devices' PCI bus ids, in NVML's form (domain:bus:device.function).
BUS_IDS = ("00000000:41:00.0", "00000000:42:00.0", "00000000:61:00.0", "00000000:62:00.0")
#: The current fake GPU while one is installed (a pytester run's inner tests use it).
ACTIVE: list[FakeGPU] = []


def active() -> FakeGPU:
    """The installed fake (inner pytester tests drive it)."""
    return ACTIVE[-1]


class FakeStream:
    """A stream of one device: the device time its enqueued work ends at, and how far a
    synchronize has seen it done."""

    device_type = 1  # c10::DeviceType::CUDA, as torch.Stream reports it

    def __init__(self, gpu: FakeGPU, device_index: int, stream_id: int) -> None:
        self.gpu, self.device_index, self.stream_id = gpu, device_index, stream_id
        self.clock = 0.0
        self.done = 0.0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.device_index)

    def wait_stream(self, other: FakeStream) -> None:
        self.clock = max(self.clock, other.clock)

    def synchronize(self) -> None:
        self.done = self.clock

    def query(self) -> bool:
        return self.done >= self.clock

    def __repr__(self) -> str:
        return f"<FakeStream cuda:{self.device_index} #{self.stream_id}>"


class FakeEvent:
    """``torch.Event`` of a fake CUDA device (see the module's docstring)."""

    def __init__(
        self,
        device: Any = None,
        *,
        enable_timing: bool = False,
        blocking: bool = False,
        interprocess: bool = False,
    ) -> None:
        gpu = active()
        if device is not None and torch.device(device).type != "cuda":
            raise RuntimeError(f"fake GPU: an event of device {device}")
        self.gpu, self.enable_timing = gpu, enable_timing
        # Event.cpp keeps the device type only: the index is the first record's stream's.
        self.device_index = -1
        self.stream: FakeStream | None = None
        self.time = 0.0

    def record(self, stream: FakeStream | None = None) -> None:
        gpu = self.gpu
        if stream is None:  # Event.cpp: the current device's current stream
            stream = gpu.current_stream(gpu.current)
        if self.device_index not in (-1, stream.device_index):
            raise RuntimeError(
                f"Event device index {self.device_index} does not match recording stream's "
                f"device index {stream.device_index}."
            )
        self.device_index, self.stream, self.time = stream.device_index, stream, stream.clock
        gpu.calls.append(("record", stream.device_index, stream.stream_id))

    def query(self) -> bool:
        return self.stream is not None and self.stream.done >= self.time

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.done = max(self.stream.done, self.time)

    def elapsed_time(self, end: FakeEvent) -> float:
        if not (self.enable_timing and end.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        if self.stream is None or end.stream is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        if self.device_index != end.device_index:
            raise RuntimeError("Both events must be recorded on the same device.")
        if not (self.query() and end.query()):
            raise RuntimeError("CUDA error: device not ready")
        return (end.time - self.time) * 1e3


class FakeGPU:
    """``count`` fake CUDA devices (see the module's docstring)."""

    def __init__(
        self,
        count: int = 2,
        name: str = "NVIDIA H100 80GB HBM3",
        malloc_s: float = 0.005,
        bus_ids: tuple[str, ...] = BUS_IDS,
    ) -> None:
        """``bus_ids``: each logical device's PCI bus id, in this process's order (what
        ``CUDA_VISIBLE_DEVICES`` reorders)."""
        self.count, self.name, self.malloc_s, self.bus_ids = count, name, malloc_s, bus_ids
        self.current = 0
        self.calls: list[tuple[Any, ...]] = []
        self._streams = [[FakeStream(self, i, 0)] for i in range(count)]
        self._current_stream = [s[0] for s in self._streams]
        self.allocated = [0] * count
        self.reserved = [0] * count
        self.peak_allocated = [0] * count
        self.peak_reserved = [0] * count

    # -- what a test's workload does ---------------------------------------------------
    def index(self, device: Any = None) -> int:
        if device is None:
            return self.current
        if isinstance(device, int):
            index = device
        else:
            device = torch.device(device)
            if device.type != "cuda":
                raise RuntimeError(f"fake GPU: expected a cuda device, got {device}")
            index = self.current if device.index is None else device.index
        if not 0 <= index < self.count:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        return index

    def kernel(
        self,
        seconds: float,
        device: Any = None,
        stream: FakeStream | None = None,
        alloc: int = 0,
        name: str = "fake_kernel",
    ) -> None:
        """Work of ``seconds`` on ``stream`` (else the current stream of ``device``, else of
        the current device), with ``alloc`` bytes allocated during it and freed after; the
        profiler lists it as ``name``."""
        stream = stream or self.current_stream(device)
        i = stream.device_index
        if alloc:
            if self.reserved[i] - self.allocated[i] < alloc:  # the cache cannot hold it
                self.reserved[i] = self.allocated[i] + alloc
                self.peak_reserved[i] = max(self.peak_reserved[i], self.reserved[i])
                stream.clock += self.malloc_s
                self.calls.append(("cudaMalloc", i, alloc))
            self.allocated[i] += alloc
            self.peak_allocated[i] = max(self.peak_allocated[i], self.allocated[i])
        stream.clock += seconds
        self.allocated[i] -= alloc
        self.calls.append(("kernel", i, stream.stream_id, seconds, name))

    def memcpy(self, nbytes: int, device: Any = None) -> None:
        """A host-to-device copy on the current stream (at 25 GB/s)."""
        stream = self.current_stream(device)
        stream.clock += nbytes / 25e9
        self.calls.append(("memcpy", stream.device_index, nbytes))

    def new_stream(self, device: Any = None) -> FakeStream:
        i = self.index(device)
        s = FakeStream(self, i, len(self._streams[i]))
        self._streams[i].append(s)
        return s

    @contextlib.contextmanager
    def stream(self, s: FakeStream) -> Iterator[None]:
        """``torch.cuda.stream(s)``: ``s`` current on its device within."""
        before = self._current_stream[s.device_index]
        self._current_stream[s.device_index] = s
        try:
            yield
        finally:
            self._current_stream[s.device_index] = before

    # -- torch.accelerator -------------------------------------------------------------
    def current_stream(self, device: Any = None) -> FakeStream:
        return self._current_stream[self.index(device)]

    def set_stream(self, s: FakeStream) -> None:
        self._current_stream[s.device_index] = s

    def set_device_index(self, device: Any) -> None:
        self.current = self.index(device)
        self.calls.append(("set_device", self.current))

    def synchronize(self, device: Any = None) -> None:
        i = self.index(device)
        for s in self._streams[i]:
            s.synchronize()
        self.calls.append(("synchronize", i))

    def empty_cache(self) -> None:
        self.reserved = list(self.allocated)
        self.calls.append(("empty_cache",))

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        i = self.index(device)
        self.peak_allocated[i], self.peak_reserved[i] = self.allocated[i], self.reserved[i]

    def properties(self, device: Any = None) -> SimpleNamespace:
        i = self.index(device)
        domain, bus, slot = self.bus_ids[i].split(".")[0].split(":")
        return SimpleNamespace(
            name=self.name, total_memory=80 * 2**30, major=9, minor=0,
            multi_processor_count=132, pci_domain_id=int(domain, 16),
            pci_bus_id=int(bus, 16), pci_device_id=int(slot, 16),
        )  # fmt: skip

    def profile(self, activities: Any = None, **kwargs: Any) -> FakeProfile:
        """``torch.profiler.profile``: the device-side events of the kernels run within."""
        return FakeProfile(self)

    # -- installing --------------------------------------------------------------------
    def install(self, mp: Any) -> FakeGPU:
        """Stand in for torch's CUDA API until ``mp`` (a ``pytest.MonkeyPatch``) undoes it;
        ``installed`` also clears what the plugin cached about the device, on both ends."""
        acc, cuda = torch.accelerator, torch.cuda
        index = self.index
        mp.setattr(torch, "Event", FakeEvent)
        mp.setattr(torch.profiler, "profile", self.profile)
        for name, fn in {
            "is_available": lambda: True,
            "current_accelerator": lambda check_available=False: torch.device("cuda"),
            "device_count": lambda: self.count,
            "current_device_index": lambda: self.current,
            "set_device_index": self.set_device_index,
            "current_stream": self.current_stream,
            "set_stream": self.set_stream,
            "synchronize": self.synchronize,
            "empty_cache": self.empty_cache,
            "reset_peak_memory_stats": self.reset_peak_memory_stats,
            "memory_allocated": lambda device=None: self.allocated[index(device)],
            "memory_reserved": lambda device=None: self.reserved[index(device)],
            "max_memory_allocated": lambda device=None: self.peak_allocated[index(device)],
            "max_memory_reserved": lambda device=None: self.peak_reserved[index(device)],
        }.items():
            mp.setattr(acc, name, fn)
        for name, fn in {
            "is_available": lambda: True,
            "device_count": lambda: self.count,
            "current_device": lambda: self.current,
            "set_device": self.set_device_index,
            "get_device_name": lambda device=None: self.name,
            "get_device_properties": self.properties,
            "get_device_capability": lambda device=None: (9, 0),
            "synchronize": self.synchronize,
            "current_stream": self.current_stream,
            "stream": self.stream,
            "Stream": lambda device=None, priority=0: self.new_stream(device),
            "empty_cache": self.empty_cache,
            "memory_allocated": lambda device=None: self.allocated[index(device)],
        }.items():
            mp.setattr(cuda, name, fn, raising=False)
        mp.setattr(sys.modules[__name__], "ACTIVE", [*ACTIVE, self])
        return self


class FakeProfile:
    """What ``torch.profiler.profile`` gives on CUDA: an event on the device per kernel and
    per copy the runtime made (``Memcpy HtoD ...``), and the CPU side's events."""

    def __init__(self, gpu: FakeGPU) -> None:
        self.gpu, self._start = gpu, 0
        self._events: list[Any] = []

    def __enter__(self) -> FakeProfile:
        self._start = len(self.gpu.calls)
        return self

    def __exit__(self, *exc: object) -> None:
        from torch.autograd import DeviceType

        for call in self.gpu.calls[self._start :]:
            if call[0] == "kernel":
                self._events.append(SimpleNamespace(name=call[4], device_type=DeviceType.CUDA))
            elif call[0] == "memcpy":
                name = "Memcpy HtoD (Pageable -> Device)"
                self._events.append(SimpleNamespace(name=name, device_type=DeviceType.CUDA))
        self._events.append(SimpleNamespace(name="aten::empty", device_type=DeviceType.CPU))

    def events(self) -> list[Any]:
        return self._events


def _forget_devices() -> None:
    """Drop what the plugin cached about the devices (found once per process)."""
    from pytest_llmperf.measure import device, energy

    device.current_device.cache_clear()
    energy._nvml_handle.cache_clear()


@contextlib.contextmanager
def installed(gpu: FakeGPU | None = None) -> Iterator[FakeGPU]:
    """``gpu`` (two fake H100s by default) in place of torch's CUDA API within."""
    with pytest.MonkeyPatch.context() as mp:
        # A session's --llmperf-device is left in the environment for its subprocesses.
        mp.setenv("LLMPERF_DEVICE", "")  # (undone: unset again)
        _forget_devices()
        try:
            yield (gpu or FakeGPU()).install(mp)
        finally:
            _forget_devices()
    _forget_devices()


@pytest.fixture
def fake_gpu() -> Iterator[FakeGPU]:
    """Two fake H100s, cuda:0 current (import this fixture into a test module)."""
    with installed() as gpu:
        yield gpu
