"""The modes that count one call: every ATen operator with its tensors, and the tensor
methods that hand data to the host.

A ``TorchDispatchMode`` sees each operator with its arguments and results: its name,
FLOPs (``torch.utils.flop_counter``'s formulas, plus the quantized matmuls it lacks),
bytes read and written, syncs, copies between devices, and the storages it
allocated, whose lifetimes (``_LiveBytes``) give the live-bytes peak and what a call
keeps after it returns. A ``TorchFunctionMode`` sees ``.tolist()`` and its kin, which
dispatch no operator on the CPU. ``measure.work`` runs calls under them.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

#: Counted operators in order, each as (name, its first output's shape): where a
#: generation's token marks fell in its work (``work.trace_operators``).
Trace = list[tuple[str, tuple[int, ...]]]

#: Operators that hand a value to the host or whose output shape depends on the
#: data: on an accelerator each makes the host wait for the device. They are
#: counted on every device, so a sync added to a decode loop shows on the CPU.
SYNC_OPS = frozenset(
    {
        "aten._local_scalar_dense",  # .item(), bool(t), int(t), float(t), t as an index
        "aten.nonzero",
        "aten.masked_select",
        "aten.equal",
        "aten.unique_consecutive",
        "aten.unique_dim",
        "aten.unique_dim_consecutive",
        "aten._unique",
        "aten._unique2",
    }
)
#: Tensor methods that hand data to the host; on the CPU they dispatch no operator.
HOST_READS = frozenset({"tolist", "numpy", "cpu", "__repr__"})
#: Matmuls ``x @ W`` that ``torch.utils.flop_counter`` has no formula for
#: (quantized weights): 2 x (elements of x) x (output features).
_MATMUL_LIKE = frozenset(
    {
        "aten._int_mm",
        "aten._weight_int8pack_mm",
        "aten._weight_int4pack_mm",
        "aten._weight_int4pack_mm_for_cpu",
        "aten._weight_int4pack_mm_with_scales_and_zeros",
        "aten._dyn_quant_matmul_4bit",
    }
)
#: Operators that alias their input without being marked as views.
_ALIASING = frozenset({"aten._unsafe_view", "aten._reshape_alias"})


def _name(func: Any) -> str:
    """``aten.mm`` for ``aten.mm.default``: overloads are one operator to a reader."""
    return str(getattr(func, "overloadpacket", func))


def _tensors(tree: Any, out: list[Any] | None = None) -> list[Any]:
    """The tensors in an operator's arguments or results, in order (pytree's general
    flattening cost more than the counting itself)."""
    import torch

    out = [] if out is None else out
    if isinstance(tree, torch.Tensor):
        out.append(tree)
    elif isinstance(tree, (list, tuple)):
        for x in tree:
            _tensors(x, out)
    elif isinstance(tree, dict):
        for x in tree.values():
            _tensors(x, out)
    return out


def _storage_key(t: Any) -> tuple[Any, int] | None:
    """(storage, its id) of a plain tensor; None for a subclass without a storage."""
    try:
        storage = t.untyped_storage()
        storage.data_ptr()  # a wrapper subclass's placeholder storage raises here
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return storage, storage._cdata


class _LiveBytes:
    """Bytes of the storages first produced during the pass, freed by reference counting."""

    def __init__(self) -> None:
        self.live: dict[int, int] = {}
        #: The operator that allocated each live storage.
        self.made_by: dict[int, str] = {}
        self.current = 0
        self.peak = 0
        self.active = True
        self._finalizers: list[weakref.finalize] = []

    def allocated(self, storage: Any, key: int, op: str) -> None:
        size = storage.nbytes()
        old = self.live.get(key)
        if old is None:
            self._finalizers.append(weakref.finalize(storage, self._freed, key))
            self.made_by[key] = op
        elif size <= old:
            return
        self.live[key] = size
        self.current += size - (old or 0)
        self.peak = max(self.peak, self.current)

    def _freed(self, key: int) -> None:
        if self.active:
            self.current -= self.live.pop(key, 0)
            self.made_by.pop(key, None)

    def handed_over(self, key: int) -> None:
        """A storage handed to a collective leaves the count now: the communication
        library's thread may hold it past its last use, for as long as its timing says
        (a gloo all-reduce's buffer outlived the call in some runs and not in others)."""
        self._freed(key)

    def by_operator(self) -> Counter[str]:
        """The live bytes by the operator that allocated them."""
        out: Counter[str] = Counter()
        for key, size in self.live.items():
            out[self.made_by.get(key, "?")] += size
        return out

    def stop(self) -> None:
        self.active = False
        for f in self._finalizers:
            f.detach()
        self._finalizers.clear()


def _on_host(tensors: list[Any], device: Any) -> bool:
    """On an accelerator, a host read of a tensor that lives on the host (AdamW's step
    count, say) makes nothing wait; on the CPU every one counts, as the same program
    would sync on the device."""
    return device.type != "cpu" and all(t.device.type == "cpu" for t in tensors)


#: Whether an operator decomposes (``decomposes`` below): a fact of the operator, so kept
#: across signatures.
_COMPOSITE: dict[Any, bool] = {}


def _by_name(registry: dict[Any, Any]) -> dict[str, Any]:
    """torch's FLOP formulas by operator name, built once per registry size: rebuilt for
    every signature it was a fifth of the plugin's cost per test (scripts/evidence/scale.py)."""
    key = (id(registry), len(registry))
    if _REGISTRY[0] != key:
        _REGISTRY[:] = [key, {str(k): v for k, v in registry.items()}]
    return _REGISTRY[1]


_REGISTRY: list[Any] = [None, {}]


def _extra_flop_formulas() -> dict[str, Callable[..., int]]:
    """FLOP formulas for operators ``torch.utils.flop_counter`` has none for (the CPU's
    flash attention), by operator name."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    def _sdpa_cpu(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    def _sdpa_cpu_backward(grad: Any, query: Any, key: Any, value: Any, *a: Any, **k: Any) -> int:
        return sdpa_backward_flop_count(grad.shape, query.shape, key.shape, value.shape)

    return {
        "aten._scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu,
        "aten._scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_cpu_backward,
    }


def stream_key(device: Any) -> tuple[int, int]:
    """``device``'s current stream, as (device index, stream id): what an operator on the
    device runs on, and what an event recorded there waits for."""
    import torch

    stream = torch.accelerator.current_stream(device)
    return (stream.device_index, stream.stream_id)


class _OpCounter:
    """Counts one operator call into ``sig``: its name, FLOPs, syncs and copies, bytes and
    the live tensor bytes it allocated (built lazily: it imports torch)."""

    def __init__(self, sig: Any, host_read: list[bool], device: Any) -> None:
        import torch
        from torch.utils.flop_counter import flop_registry

        self.sig, self.host_read, self.device = sig, host_read, device
        self.live = _LiveBytes()
        #: Operators counted so far (``operators_so_far``: where a token mark fell).
        self.seen = 0
        #: Each counted operator's name and first output's shape, while a generation's
        #: marks ask for them (``work.trace_operators``); None otherwise.
        self.trace: Trace | None = None
        #: With the trace on an accelerator: each operator's stream (``stream_key``).
        self.streams: list[Any] | None = None
        self.registry = _by_name(flop_registry)
        self.extra_flops = _extra_flop_formulas()
        self._implicit = torch._C.DispatchKey.CompositeImplicitAutograd
        self._bool = torch.bool

    def decomposes(self, func: Any) -> bool:
        """A composite operator (``aten.linear``) reaches the mode undecomposed only under
        ``inference_mode``; decomposed, it counts as under ``no_grad`` (``aten.addmm``)."""
        composite = _COMPOSITE
        if func not in composite:
            composite[func] = _name(func) not in self.registry and (
                func.has_kernel_for_dispatch_key(self._implicit)
            )
        return composite[func]

    def count(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        name = _name(func)
        if func.is_view or name in _ALIASING:
            return
        self.sig.ops[name] += 1
        self.seen += 1
        inputs = _tensors((args, kwargs))
        outputs = _tensors(out)
        if self.trace is not None:
            self.trace.append((name, tuple(outputs[0].shape) if outputs else ()))
            if self.streams is not None:
                self.streams.append(stream_key(self.device))
        self._flops(name, args, kwargs, out, inputs, outputs)
        self._syncs(name, args, inputs)
        self._copies(name, kwargs, inputs, outputs)
        self._bytes(name, inputs, outputs)
        if name.startswith("c10d."):
            for t in inputs:
                key = _storage_key(t)
                if key is not None:
                    self.live.handed_over(key[1])

    def _flops(self, name, args, kwargs, out, inputs, outputs) -> None:  # noqa: ANN001
        sig, registry = self.sig, self.registry
        if name in registry:
            sig.flops += int(registry[name](*args, **kwargs, out_val=out))
        elif name in self.extra_flops:
            sig.flops += int(self.extra_flops[name](*args, **kwargs))
        elif name in _MATMUL_LIKE and inputs and outputs:
            sig.flops += 2 * inputs[0].numel() * outputs[0].shape[-1]
        elif not name.startswith(("aten.", "prims.")) and outputs:
            note = f"{name}: a custom operator, counted by name only (no FLOP formula)"
            if note not in sig.uncounted:
                sig.uncounted.append(note)

    def _syncs(self, name: str, args: Any, inputs: list[Any]) -> None:
        if _on_host(inputs, self.device):
            return
        if name in SYNC_OPS:
            self.sig.syncs[name] += 1
        elif name in ("aten.index", "aten.index_put", "aten.index_put_"):
            # A boolean mask makes the output's shape (or the write's) depend on the data.
            index = args[1] if len(args) > 1 else ()
            if any(t is not None and t.dtype == self._bool for t in _tensors(index)):
                self.sig.syncs[f"{name} (boolean mask)"] += 1

    def _copies(self, name: str, kwargs: Any, inputs: list[Any], outputs: list[Any]) -> None:
        if name in ("aten._to_copy", "aten.copy_") and inputs and outputs:
            src = inputs[-1] if name == "aten.copy_" else inputs[0]
            dst = outputs[0]
            if src.device.type != dst.device.type:
                self.sig.copies[f"{src.device.type}->{dst.device.type}"] += 1
                blocking = not kwargs.get("non_blocking", False)
                if dst.device.type == "cpu" and blocking and not self.host_read[0]:
                    self.sig.syncs["copy to host"] += 1

    def _bytes(self, name: str, inputs: list[Any], outputs: list[Any]) -> None:
        sig = self.sig
        seen = set()
        for t in inputs:
            key = _storage_key(t)
            if key is None:
                self._subclass(name, t)
                continue
            seen.add(key[1])
            sig.bytes += t.nbytes
        for t in outputs:
            key = _storage_key(t)
            if key is None:
                self._subclass(name, t)
                continue
            sig.bytes += t.nbytes
            if key[1] not in seen:  # not an input written in place: a new allocation
                self.live.allocated(*key, name)

    def _subclass(self, name: str, t: Any) -> None:
        note = f"{type(t).__name__} tensors (no storage) left out of bytes and tensor_peak"
        if note not in self.sig.uncounted:
            self.sig.uncounted.append(note)


def dispatch_counter(sig: Any, host_read: list[bool], device: Any) -> Any:
    """A TorchDispatchMode that counts into ``sig`` (built lazily: it imports torch)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counter = _OpCounter(sig, host_read, device)

    class DispatchCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live, self.counter = counter.live, counter

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            if counter.decomposes(func):
                with self:
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            out = func(*args, **kwargs)
            try:
                counter.count(func, args, kwargs, out)
            except Exception as exc:  # counting must never break the user's call
                sig.uncounted.append(f"{_name(func)}: not counted ({type(exc).__name__}: {exc})")
            return out

    return DispatchCounter()


def host_reads(sig: Any, host_read: list[bool], device: Any) -> Any:
    """A TorchFunctionMode that counts the tensor methods in HOST_READS."""
    import torch
    from torch.overrides import TorchFunctionMode

    class HostReads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            name = getattr(func, "__name__", "")
            tensors = [a for a in args[:1] if isinstance(a, torch.Tensor)]
            if name not in HOST_READS or not tensors or _on_host(tensors, device):
                return func(*args, **(kwargs or {}))
            sig.syncs[f"Tensor.{name}"] += 1
            host_read[0] = True  # its own copy to the host is this sync, not a second one
            try:
                return func(*args, **(kwargs or {}))
            finally:
                host_read[0] = False

    return HostReads()
