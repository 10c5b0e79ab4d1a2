"""The work signature: what a call asks PyTorch to do, counted rather than timed.

Time on a shared CPU is noise-bound; the work a PyTorch program does is not. One
call, in a pass of its own after the timed rounds, runs under a
``TorchDispatchMode`` (every ATen operator, with its tensors) and a
``TorchFunctionMode`` (the tensor methods that hand data to the host without an
operator on the CPU). From them: operator counts by name, FLOPs (the formulas of
``torch.utils.flop_counter``, plus the quantized matmuls it lacks), bytes read
and written, host-device synchronisations, copies between devices, the peak
of live tensor bytes allocated during the call and the bytes of those still alive
after it returns (``retained``: a tensor kept in a list, a cache, a logging hook).
Where a call retains any, a few more calls are watched (``GROWTH_CALLS``): memory
that grows after every one of them is a leak, its growth per call gated as
``growth`` (on accelerators the allocator's own count is read around the same
calls: ``allocator_growth``). ``torch._dynamo``'s own counters, read around the
warm-up and rounds (``measure.compiled``), give graphs, graph breaks and
recompilations; on CUDA the profiler counts kernel launches.

None of it depends on the CPU model, so a signature recorded on one machine
gates every machine of the same device type with the same torch version.
Python's cyclic collector is paused during the pass, so tensors are freed by
reference counting alone and the live-bytes peak is the same on every run. A
cold pass (the first of its kind in the process: it imported a module, or its
reference cycles held a tensor) is taken again and the next one kept, so a
signature does not depend on what ran before it in the process
(``signature_of``).
What cannot be counted (a tensor subclass without a storage, an operator
without a FLOP formula that looks like a matmul, a call that fails under the
modes) is named in ``uncounted``: never a crash, never a silent zero.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..units import quantity
from . import distributed
from .compiled import short
from .counters import Trace, dispatch_counter, host_reads


@dataclass
class WorkSignature:
    """What one call did, in counts; the totals are gated, the names explain a change."""

    #: Operator calls by name (``aten.mm``); views, which move no data, are left out.
    ops: Counter[str] = field(default_factory=Counter)
    flops: int = 0
    #: Bytes of the tensors each operator read and wrote.
    bytes: int = 0
    #: Host-device synchronisations by cause (operator or tensor method).
    syncs: Counter[str] = field(default_factory=Counter)
    #: Copies between devices by direction (``cuda->cpu``).
    copies: Counter[str] = field(default_factory=Counter)
    #: Peak of the bytes of tensors allocated during the call and still alive.
    tensor_peak: int = 0
    #: Bytes of the tensors allocated during the call and still alive after it returned.
    retained: int = 0
    #: ``retained`` by the operator that allocated each tensor.
    retained_by: Counter[str] = field(default_factory=Counter)
    #: A leak: what the retained tensors grew by after each of ``GROWTH_CALLS`` calls (the
    #: least step), 0 where they did not grow after every one; ``growth_held``: the bytes
    #: the watched calls' tensors held after each.
    growth: int = 0
    growth_held: list[int] = field(default_factory=list)
    #: The same read from an accelerator's allocator (None on the CPU): it also sees what
    #: an extension allocates outside PyTorch's operators.
    allocator_growth: int | None = None
    #: Under torch.compile, during warm-up and rounds (None: nothing was compiled).
    graphs: int | None = None
    graph_breaks: Counter[str] = field(default_factory=Counter)
    recompiles: Counter[str] = field(default_factory=Counter)
    #: Device kernels by name, where the profiler can see them (CUDA); else None.
    kernels: Counter[str] | None = None
    #: What could not be counted, in words.
    uncounted: list[str] = field(default_factory=list)
    #: False when the call failed under the counters: the counts are partial.
    complete: bool = True
    #: Totals that still moved between two passes after cold ones (``signature_of``), by
    #: name: (a pass's value, the next pass's, the one kept); reported, never gated exactly.
    unsteady: dict[str, tuple[float, float]] = field(default_factory=dict)

    def totals(self) -> list[tuple[str, float, str]]:
        """(name, value, unit) of every gated quantity this signature has (``TOTALS``)."""
        out = []
        for total in TOTALS:
            if total.needs is not None and getattr(self, total.needs) is None:
                continue
            value = getattr(self, total.name)
            if isinstance(value, dict):  # by-name counts: their sum is the total
                value = sum(value.values())
            out.append((total.name, float(value), total.unit))
        return out

    def detail(self) -> dict[str, Any]:
        """The by-name counts, JSON-ready, kept beside the totals to explain a diff."""
        out: dict[str, Any] = {"ops": dict(sorted(self.ops.items()))}
        for total in TOTALS:
            if total.detail is None or total.detail == "ops":
                continue
            counts = getattr(self, total.detail)
            if counts:
                out[total.detail] = dict(sorted(counts.items()))
        return out


@dataclass(frozen=True)
class WorkTotal:
    """One gated total of a signature: its field, its unit, the words a diff says it in,
    and the field of by-name counts that explains a change of it (None: no names do)."""

    name: str
    unit: str
    label: str
    detail: str | None
    #: A field that is None where this total was not taken (nothing compiled: no compile
    #: totals; no profiler on the device: no kernels); None: always taken.
    needs: str | None = None


#: Every total a signature gates, in the order they are listed and a diff words them: the
#: one list that ``WorkSignature`` and the verdict's wording (``judge.workdiff``) read.
TOTALS = (
    WorkTotal("ops", "", "ops", "ops"),
    WorkTotal("flops", "FLOP", "flops", None),
    WorkTotal("bytes", "B", "bytes", None),
    WorkTotal("syncs", "", "syncs", "syncs"),
    WorkTotal("copies", "", "device copies", "copies"),
    WorkTotal("tensor_peak", "B", "tensor peak", None),
    WorkTotal("retained", "B", "retained after the call", "retained_by"),
    WorkTotal("growth", "B", "leak per call", None),
    WorkTotal("allocator_growth", "B", "allocator leak per call", None, needs="allocator_growth"),
    WorkTotal("graphs", "", "graphs", None, needs="graphs"),
    WorkTotal("graph_breaks", "", "graph breaks", "graph_breaks", needs="graphs"),
    WorkTotal("recompiles", "", "recompiles", "recompiles", needs="graphs"),
    WorkTotal("kernels", "", "kernels", "kernels", needs="kernels"),
)


# --------------------------------------------------------------------------- the pass


#: Device-side profiler events that are the runtime's copies and fills, not kernels the
#: program launched: ``Memcpy HtoD (Pageable -> Device)``, ``Memset (Device)``. Counted in
#: ``copies`` at the operator level where the program asked for them.
NOT_KERNELS = ("Memcpy", "Memset")


def _kernels(call: Callable[[], Any], device: Any) -> Counter[str] | None:
    """Device kernels launched by one call, by name (CUDA, through the profiler): every
    device-side event but the runtime's memcpy and memset (``NOT_KERNELS``)."""
    if device.type != "cuda":
        return None
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize(device)
    return Counter(
        e.name
        for e in prof.events()
        if e.device_type == DeviceType.CUDA and not e.name.startswith(NOT_KERNELS)
    )


def signature_of(
    call: Callable[[], Any], device: Any, setup: Callable[[], Any] | None = None
) -> WorkSignature:
    """The call under the counters, in a pass of its own, taken again after a cold pass.

    The first call of its kind in a process does what later ones do not: the first
    operator dispatched to a Python mode imports ``torch._dynamo``, and the import
    leaves the calling frames in reference cycles, so the call's temporaries outlive
    their use until the cyclic collector (paused during a pass) runs. Counted then, a
    signature depended on what ran before it in the process (OPT's ``tensor_peak``
    +1 KiB when its file ran alone). So a cold pass (one that imported a module, or
    whose cycles held a counted tensor: ``_counted_pass``) is taken again, with what
    it built in place, and the next one kept. Where that one is cold too and moves
    again, a third decides: a total that the second and third differ in is in
    ``unsteady``, reported and never gated exactly, and named in a note. A warm pass
    is kept as it is: a second pass of every call would double the pass's cost.

    A call that retains tensors (or any call on an accelerator) is then watched for a
    leak over ``GROWTH_CALLS`` more calls (``_watch_growth``).

    A call that fails under the counters (an operator that refuses Python dispatch,
    say) leaves a partial signature marked incomplete, and says why."""
    sig, cold = _counted_pass(call, device, setup)
    for _ in range(2):
        # Every rank takes a pass that any rank takes: a collective in the call would
        # wait forever for the rank that did not.
        if not distributed.slowest([float(cold)], device)[0]:
            break
        before, (sig, cold) = sig, _counted_pass(call, device, setup)
        moved = _moved(before, sig)
        if not distributed.slowest([float(bool(moved))], device)[0]:
            break
    else:  # three passes, the last two after cold ones, and they still differ
        _unsteady(sig, moved)
    if not sig.ops and sig.complete:
        sig.uncounted.append(
            "no PyTorch operator was seen: the work gate sees nothing of this call "
            "(pure Python, or an extension that bypasses the dispatcher)"
        )
    _watch_growth(sig, call, device, setup)
    if sig.complete:
        try:
            if setup is not None:
                setup()
            sig.kernels = _kernels(call, device)
        except Exception as exc:  # the profiler is optional evidence
            sig.uncounted.append(f"kernel launches not counted ({type(exc).__name__}: {exc})")
    return sig


def _unsteady(sig: WorkSignature, moved: dict[str, tuple[float, float]]) -> None:
    """Totals that still moved after cold passes: reported, never gated, and said."""
    for name, (earlier, kept) in moved.items():
        if name == "complete":
            continue  # an incomplete pass is not gated anyway, and says why
        sig.unsteady[name] = (earlier, kept)
        unit = {n: u for n, _, u in sig.totals()}[name]
        sig.uncounted.append(
            f"{name} moved between two passes of the same call ({quantity(earlier, unit)}, "
            f"then {quantity(kept, unit)}): reported, not gated"
        )


def _moved(a: WorkSignature, b: WorkSignature) -> dict[str, tuple[float, float]]:
    """The totals (and completeness) in which two passes of one call differ."""
    other = {name: value for name, value, _ in b.totals()}
    moved = {
        name: (value, other.get(name, 0.0))
        for name, value, _ in a.totals()
        if value != other.get(name, 0.0)
    }
    if a.complete != b.complete:
        moved["complete"] = (float(a.complete), float(b.complete))
    return moved


#: Calls watched for a leak where a call retains tensors: the retained tensors must grow
#: after every one of them. A buffer of the last few calls' tensors (fewer than this)
#: frees one of its own within the watch; one that keeps more reads as a leak here.
GROWTH_CALLS = 4

#: The counter of the pass in progress (``operators_so_far``).
_ACTIVE: list[Any] = []


def operators_so_far() -> int | None:
    """Operators counted so far in the pass in progress; None outside one. A token mark
    taken during the work pass reads it: where a generation's marks fell in its work."""
    return _ACTIVE[-1].seen if _ACTIVE else None


@contextmanager
def trace_operators() -> Iterator[tuple[Trace, list[Any] | None]]:
    """Within it, each operator the pass in progress counts, as (name, first output's
    shape), in the list given (a generation's marks index it: ``first_mark_note``); on
    an accelerator each one's stream too (``stream_note``), else None."""
    counter = _ACTIVE[-1]
    counter.trace = trace = []
    counter.streams = [] if counter.device.type != "cpu" else None
    try:
        yield trace, counter.streams
    finally:
        counter.trace = counter.streams = None


@dataclass
class _Watch:
    """Calls under one counter: after each, the live bytes of the tensors they allocated;
    on an accelerator the allocator's allocated bytes, before the first and after each."""

    sig: WorkSignature
    held: list[int] = field(default_factory=list)
    allocated: list[int] = field(default_factory=list)
    #: Whether a call imported a module, or its reference cycles held a counted tensor.
    cold: bool = False
    by_operator: Counter[str] = field(default_factory=Counter)


def _allocated_reader(device: Any) -> Callable[[], int] | None:
    """The accelerator allocator's allocated bytes, read on the host (no synchronize: the
    caching allocator counts when the host allocates and frees); None on the CPU."""
    if device.type == "cpu":
        return None
    import torch

    return lambda: int(torch.accelerator.memory_allocated(device.index))


def _watched_calls(
    call: Callable[[], Any], device: Any, setup: Callable[[], Any] | None, n: int
) -> _Watch:
    """``n`` calls under one counter, the cyclic collector paused during each: tensors are
    freed by reference counting alone, at the same points in every pass. A call that
    fails leaves the counts partial (``complete`` False) and says why."""
    watch = _Watch(WorkSignature())
    sig, host_read = watch.sig, [False]
    counter = dispatch_counter(sig, host_read, device)
    live, read = counter.live, _allocated_reader(device)
    watch.allocated += [read()] if read else []
    collecting = gc.isenabled()
    _ACTIVE.append(counter.counter)
    try:
        for _ in range(n):
            if setup is not None:
                setup()
            modules = len(sys.modules)
            gc.disable()
            try:
                with host_reads(sig, host_read, device), counter:
                    call()
            finally:
                # With the collector paused, every cycle the call made is still in its
                # youngest generation: collecting that one is cheap, and frees what such a
                # cycle held.
                held = live.current
                gc.collect(0)
                watch.cold |= live.current < held or len(sys.modules) != modules
                watch.held.append(live.current)
                watch.allocated += [read()] if read else []
                if collecting:
                    gc.enable()
    except Exception as exc:
        sig.complete = False
        sig.uncounted.append(
            f"the call failed under the work counters ({type(exc).__name__}: "
            f"{short(exc)}): the counts are partial and not gated"
        )
    finally:
        _ACTIVE.pop()
        watch.by_operator = live.by_operator()
        live.stop()
    sig.tensor_peak = live.peak
    return watch


def _counted_pass(
    call: Callable[[], Any], device: Any, setup: Callable[[], Any] | None
) -> tuple[WorkSignature, bool]:
    """One call under the counters, with the bytes it retained; also whether the pass was
    cold: it imported a module, or left reference cycles that kept a counted tensor
    alive past its use (an import's frames do: ``signature_of``)."""
    watch = _watched_calls(call, device, setup, 1)
    sig = watch.sig
    sig.retained, sig.retained_by = (watch.held or [0])[0], watch.by_operator
    return sig, watch.cold


def _leak(held: list[int]) -> int:
    """The least step of bytes held after successive calls: a leak grows after every call
    (0 where one step did not grow)."""
    steps = [b - a for a, b in zip(held, held[1:], strict=False)]
    return min(steps) if steps and all(x > 0 for x in steps) else 0


def _watch_growth(
    sig: WorkSignature, call: Callable[[], Any], device: Any, setup: Callable[[], Any] | None
) -> None:
    """Whether what the call retains grows call after call (a leak) or stays (a cache, the
    last call's output kept): ``GROWTH_CALLS`` calls watched under one counter, each
    step the retained bytes it added less those of earlier watched calls it freed. On
    an accelerator the allocator is read around the same calls, always."""
    accelerated = device.type != "cpu"
    wanted = sig.complete and (sig.retained > 0 or accelerated)
    # Every rank watches if any does: a collective in the call would wait for the others.
    if not distributed.slowest([float(wanted)], device)[0]:
        return
    watch = _watched_calls(call, device, setup, GROWTH_CALLS)
    if not watch.sig.complete:
        sig.uncounted += [f"growth not watched: {text}" for text in watch.sig.uncounted]
        return
    sig.growth, sig.growth_held = _leak(watch.held), watch.held
    if accelerated:
        sig.allocator_growth = _leak(watch.allocated)


def leak_note(sig: WorkSignature) -> str:
    """The words for a leak the watch found ("" where none)."""
    if not sig.growth and not sig.allocator_growth:
        return ""
    held = ", ".join(quantity(x, "B") for x in sig.growth_held)
    made = ", ".join(f"{op} {quantity(b, 'B')}" for op, b in sig.retained_by.most_common(3))
    grew = (
        f"a leak: the tensors the call keeps after it returns grew after every one of "
        f"{GROWTH_CALLS} calls watched ({held}), {quantity(sig.growth, 'B')} per call"
        if sig.growth
        else f"a leak: the allocator's allocated bytes grew after each of {GROWTH_CALLS} "
        f"calls, {quantity(sig.allocator_growth or 0, 'B')} per call"
    )
    return grew + (f"; kept after one call: {made}" if made else "")
